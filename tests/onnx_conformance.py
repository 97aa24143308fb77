"""ONNX's own backend node test cases, run through an ONNX→torch converter.

The cases come from the installed ``onnx`` package (``onnx.backend.test.case.node.collect_testcases``):
nothing is downloaded. A case counts when its first input is a float tensor (float16/32/64): the input a
classifier's gradient is taken with respect to. Its other inputs are given to the converter as constants,
and every output is compared with the case's expected values.

Used by tests/test_onnx_conformance.py (with the expected outcome of every case kept in
tests/onnx_conformance.txt) and by benchmarks/conformance.py (the same measure on other converters).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

EXPECTED = Path(__file__).with_name("onnx_conformance.txt")
RTOL, ATOL = 1e-3, 1e-4  # the tolerances every output is compared at
_FLOATS = (np.float16, np.float32, np.float64)


@dataclass(frozen=True)
class Case:
    name: str
    model: object  # onnx.ModelProto
    inputs: tuple  # numpy arrays (or sequences/optionals for the cases that use them)
    outputs: tuple

    @property
    def op(self) -> str:
        """The op under test: the single node's type, or the name's stem for expanded (multi-node) cases."""
        nodes = self.model.graph.node
        if len(nodes) == 1:
            return nodes[0].op_type
        return re.sub(r"^test_", "", self.name)

    @property
    def single_node(self) -> bool:
        return len(self.model.graph.node) == 1


@lru_cache(maxsize=1)
def float_input_cases() -> tuple[Case, ...]:
    """Every node test case with a float first input, one Case per data set, in name order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case.node import collect_testcases

        collected = collect_testcases()
    cases = []
    for case in collected:
        if case.kind != "node" or case.model is None:
            continue
        for i, (inputs, outputs) in enumerate(case.data_sets):
            if not len(inputs) or not isinstance(inputs[0], np.ndarray) or inputs[0].dtype not in _FLOATS:
                continue
            name = case.name if len(case.data_sets) == 1 else f"{case.name}_{i}"
            cases.append(Case(name, case.model, tuple(inputs), tuple(outputs)))
    return tuple(sorted(cases, key=lambda c: c.name))


def constants_of(case: Case) -> dict[str, object]:
    """The case's inputs after the first, by graph input name (omitted optional inputs left out)."""
    names = [i.name for i in case.model.graph.input]
    return {name: value for name, value in zip(names[1:], case.inputs[1:])}


def compare(got: list, want: tuple) -> str | None:
    """None when every output matches (shape, dtype kind, values at RTOL/ATOL), else why not."""
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if isinstance(w, np.generic):
            w = np.asarray(w)
        if not isinstance(w, np.ndarray):
            return f"output {i} is a {type(w).__name__}"
        g = np.asarray(g)
        if g.shape != w.shape:
            return f"output {i} has shape {g.shape}, expected {w.shape}"
        if w.dtype.kind in "fc":
            if g.dtype.kind not in "fc":
                return f"output {i} has dtype {g.dtype}, expected {w.dtype}"
            if not np.allclose(g.astype(np.float64), w.astype(np.float64), rtol=RTOL, atol=ATOL, equal_nan=True):
                diff = np.nanmax(np.abs(g.astype(np.float64) - w.astype(np.float64))) if g.size else 0
                return f"output {i} differs (max abs diff {diff:.3g})"
        elif not np.array_equal(g, w):
            return f"output {i} differs ({g.dtype} vs {w.dtype})"
    return None


def run_case(case: Case, convert: Callable[[Case], Callable[[np.ndarray], list]]) -> str | None:
    """None when ``convert(case)`` (a callable from the first input to the list of outputs, as numpy)
    reproduces the case, else a one-line reason (an exception counts as a failure)."""
    try:
        fn = convert(case)
        got = fn(case.inputs[0])
    except Exception as err:  # any failure of the converter is the case's outcome
        text = str(err).splitlines()[0] if str(err) else ""
        return f"{type(err).__name__}: {text}"[:200]
    return compare(got, case.outputs)


def onnxfault_converter(case: Case) -> Callable[[np.ndarray], list]:
    """onnxfault's adapter: the other inputs as constants (buffers), outputs back as numpy."""
    import torch

    from onnxfault.adapters.onnx2torch import to_torch

    module = to_torch(case.model, constants_of(case))

    def run(x: np.ndarray) -> list:
        with torch.no_grad():
            outputs = module(torch.from_numpy(np.array(x)))
        return [o.numpy() if isinstance(o, torch.Tensor) else o for o in outputs]

    return run


# Why a case may be skipped: the categories the reviewed file may give, each with the ops that put a case in it.
SKIP_CATEGORIES = {
    "training": ({"Adagrad", "Adam", "Momentum", "Gradient"}, "an optimizer update (ai.onnx.preview.training)"),
    "random": ({"Bernoulli", "RandomUniformLike", "RandomNormalLike", "RandomUniform", "RandomNormal", "Multinomial"},
               "draws random numbers"),
    "quantized": ({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul"},
                  "integer quantization"),
    "sequence": ({"SplitToSequence", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceInsert",
                  "SequenceErase", "SequenceLength", "ConcatFromSequence", "SequenceMap"}, "a tensor sequence"),
    "optional": ({"Optional", "OptionalGetElement", "OptionalHasElement"}, "an optional-typed value"),
    "control flow": ({"If", "Loop", "Scan"}, "a subgraph"),
    "string": ({"StringNormalizer", "StringConcat", "StringSplit", "RegexFullMatch"}, "string tensors"),
    "image-decoding": ({"ImageDecoder"}, "decodes an image file"),
}
# Cases whose op is supported but whose expected output is random (training-mode Dropout masks).
RANDOM_CASES = re.compile(r"^test_training_dropout")
# Cases whose expected output onnxruntime does not give either: the adapter follows onnxruntime, which runs
# onnxfault's forward passes (the gradient must be of the same function), and torch, where such models come from.
ONNXRUNTIME_CASES = {
    "test_maxunpool_export_with_output_shape": "MaxUnpool indices address the whole output_shape tensor, as in "
                                               "onnxruntime and torch; the test's reference scatters into the "
                                               "inferred shape and pads",
}


def ops_of(case: Case) -> set[str]:
    """Every op type of the case's graph, subgraphs included."""
    found: set[str] = set()

    def walk(graph) -> None:
        for node in graph.node:
            found.add(node.op_type)
            for attribute in node.attribute:
                for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    walk(sub)

    walk(case.model.graph)
    return found


def skip_category(case: Case) -> str | None:
    """``category: why`` when the case falls in an accepted skip category, else None."""
    if RANDOM_CASES.search(case.name):
        return "random: a training-mode Dropout mask"
    if case.name in ONNXRUNTIME_CASES:
        return f"onnxruntime: {ONNXRUNTIME_CASES[case.name]}"
    ops = ops_of(case)
    for category, (members, why) in SKIP_CATEGORIES.items():
        if ops & members:
            return f"{category}: {why} ({', '.join(sorted(ops & members))})"
    return None


def baked(case: Case):
    """The case's model with its inputs after the first turned into initializers (for converters that take
    one input and no constants; a sequence or optional input cannot be baked and raises)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    values = constants_of(case)
    kept = [i for i in model.graph.input if i.name not in values]
    for name, value in values.items():
        value = np.asarray(value) if isinstance(value, np.generic) else value
        if not isinstance(value, np.ndarray):
            raise TypeError(f"input {name} is a {type(value).__name__}, not a tensor")
        model.graph.initializer.append(numpy_helper.from_array(value, name))
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return model


def read_expected(path: Path = EXPECTED) -> dict[str, tuple[str, str]]:
    """``{case: (outcome, reason)}`` from the reviewed file: ``name pass`` or ``name skip category: reason``."""
    expected = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, outcome, *reason = line.split(None, 2)
        expected[name] = (outcome, reason[0] if reason else "")
    return expected


def gradcheck_case(case: Case, jitter: float = 1e-3, seed: int = 0) -> str | None:
    """``torch.autograd.gradcheck`` in float64 of every float output of the converted case with respect
    to its first input (jittered by ``jitter``·(|x|+1) so that ties and kinks of the test data do not sit
    exactly under the finite differences). None when it passes, else why not."""
    import torch

    from onnxfault.adapters.onnx2torch import to_torch

    module = to_torch(case.model, constants_of(case)).double()
    x0 = case.inputs[0].astype(np.float64)
    if not x0.size:
        return "no elements"
    x0 = np.asarray(x0 + jitter * (np.abs(x0) + 1) * np.random.default_rng(seed).uniform(-1, 1, x0.shape))
    x = torch.from_numpy(x0).requires_grad_(True)

    def floats_out(x):
        return tuple(o for o in module(x) if isinstance(o, torch.Tensor) and o.is_floating_point())

    try:
        if not floats_out(x.detach()):
            return "no float output"
        ok = torch.autograd.gradcheck(floats_out, (x,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=x.numel() > 256,
                                      raise_exception=True)
    except Exception as err:  # gradcheck raises GradcheckError with the mismatching Jacobians
        return f"{type(err).__name__}: {str(err).splitlines()[0]}"[:200]
    return None if ok else "gradcheck failed"
