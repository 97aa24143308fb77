"""``retrain``: fine-tune an ONNX classifier's weights on benign samples plus synthesized inputs (each labelled with
its seed's label), as DeepSensor's RQ2 retrains with 500 benign and 500 generated inputs (20 epochs, batches of
32), and write the same graph with new initializer values.

``only="all"`` lets every learned weight change (:func:`~onnxfault.weights.learned_weights`: kernels, biases,
BatchNormalization's scale and shift; never its running statistics); ``only="suspicious"`` only the slices of the
weights that compute the suspicious neurons (the runs' ``neurons``, or ``neurons``: a ``localize --json`` file):
each neuron's output channel of its layer's kernel and bias (after Arachne, Sohn et al., TOSEM 2023, which repairs
only the weights of the localized neurons). ``adversarial="pgd"`` adds each batch's PGD examples (Madry et al.'s
adversarial training, the paper's PGD-AT comparison). Before and after, on the held-out data: accuracy per class,
and the attack success rate of PGD (``attack_distance``, 20 steps of a tenth of it) on ``attack_samples``
correctly classified seeds per class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx

from .data import DataLike, DataOptions, as_dataset
from .errors import OnnxFaultError, check_arguments, check_finite, warn
from .model import Model, as_model
from .model_forms import ModelLike
from .provenance import stamp
from .results import header, provenance_of
from .weights import channel_of, feeding, learned_weights, weights_digest

ONLY = ("all", "suspicious")
ADVERSARIAL = ("none", "pgd")


@dataclass
class RetrainResult:
    """What ``retrain`` did: the model written (``proto``; :meth:`save_model` writes it), the training samples,
    accuracy (and per class) and PGD's attack success rate before and after on the held-out data, and per
    changed tensor how many entries changed and by how much (``changes``). ``to_json()`` is ``retrain.json``."""

    kind = "retrain"

    model: str
    data: str
    inputs: list[str]
    params: dict
    samples: dict  # benign, synthesized
    before: dict  # accuracy, per_class, attack_success_rate
    after: dict
    changes: list[dict]  # tensor, shape, trainable, changed, max_abs, l2
    proto: onnx.ModelProto | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {**header(self.kind), "model": self.model, "data": self.data, "inputs": list(self.inputs),
                "params": dict(self.params), "samples": dict(self.samples), "before": self.before,
                "after": self.after, "changes": self.changes, "warnings": list(self.warnings), **self.provenance}

    @classmethod
    def from_json(cls, data: dict) -> "RetrainResult":
        return cls(data["model"], data["data"], list(data["inputs"]), data["params"], data["samples"],
                   data["before"], data["after"], data["changes"], None, list(data.get("warnings", [])),
                   provenance_of(data))

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` whole (see :mod:`onnxfault.files`)."""
        from .files import write_json

        return write_json(path, self.to_json())

    def save_model(self, path: str | Path, json: str | Path | None = None) -> Path:
        """Write the retrained model to ``path`` (and with ``json``, :meth:`to_json` there: both or neither)."""
        from .files import json_writer, write_together

        if self.proto is None:
            raise OnnxFaultError("this result was read from retrain.json and holds no model; retrain again")
        data = self.proto.SerializeToString()
        outputs = [(path, lambda file: Path(file).write_bytes(data))]
        if json is not None:
            outputs.append((json, json_writer(self.to_json())))
        return write_together(outputs)[0]

    def lines(self) -> list[str]:
        """The result as the CLI prints it."""
        b, a = self.before, self.after
        changed = [c for c in self.changes if c["changed"]]
        out = [f"retrained on {self.samples['benign']} benign + {self.samples['synthesized']} synthesized inputs, "
               f"{self.params['epochs']} epochs ({self.params['only']} weights: {len(changed)} tensors, "
               f"{sum(c['changed'] for c in changed):,} values changed)",
               f"  accuracy {100 * b['accuracy']:.2f} % → {100 * a['accuracy']:.2f} % on {b['samples']} held-out "
               "samples"]
        if b.get("attack_success_rate") is not None:
            out.append(f"  PGD (L∞ {self.params['attack_distance']:g}) success {100 * b['attack_success_rate']:.1f} % → "
                       f"{100 * a['attack_success_rate']:.1f} % (ΔASR {100 * (b['attack_success_rate'] - a['attack_success_rate']):+.1f} points)")
        return out

    def _report_run(self):
        from .report.results import memory_run

        return memory_run("retrain", self.to_json())

    def _repr_html_(self) -> str:
        from .report import result_html

        return result_html(self)

    def __repr__(self) -> str:
        return (f"<RetrainResult accuracy {100 * self.before['accuracy']:.2f}% → {100 * self.after['accuracy']:.2f}%, "
                f"{sum(1 for c in self.changes if c['changed'])} tensors changed>")


def retrain(model: ModelLike, data: DataLike, inputs: Sequence, *, heldout: DataLike | None = None,
            only: str = "all", neurons=None, epochs: int = 20, batch_size: int = 32, lr: float = 1e-4,
            seed: int = 0, adversarial: str = "none", pgd: tuple[float, int, float] = (0.3, 10, 0.03),
            attack_distance: float = 0.3, attack_samples: int = 10, device: str = "cpu",
            data_options: DataOptions | None = None, output: str | None = None) -> RetrainResult:
    """Fine-tune ``model`` on ``data`` (benign samples) plus the synthesized inputs of the ``inputs`` runs
    (``synthesize --out`` folders or results), see the module docstring; ``heldout`` (default: ``data``) measures
    the accuracy and PGD's success before and after. ``pgd``: the adversarial training's (L∞ bound, steps, step
    size). Returns a :class:`RetrainResult`; its ``save_model`` writes the retrained model."""
    check_arguments(only=(only, str), epochs=(epochs, int, 1), batch_size=(batch_size, int, 1), lr=(lr, float),
                    seed=(seed, int, 0), adversarial=(adversarial, str), attack_distance=(attack_distance, float),
                    attack_samples=(attack_samples, int, 1), device=(device, str), output=(output, (str, None)))
    check_finite(lr=lr, attack_distance=attack_distance)
    if only not in ONLY:
        raise OnnxFaultError(f"`only` must be all or suspicious (got {only!r})", parameter="only")
    if neurons is not None and only != "suspicious":
        raise OnnxFaultError("`neurons` chooses the weights of `only` suspicious; with `only` all every weight "
                             "changes: leave `neurons` out or use `only` suspicious", parameter="neurons")
    if adversarial not in ADVERSARIAL:
        raise OnnxFaultError(f"`adversarial` must be none or pgd (got {adversarial!r})", parameter="adversarial")
    if not lr > 0 or not attack_distance > 0:
        raise OnnxFaultError("`lr` and `attack_distance` must be above 0", parameter="lr" if not lr > 0 else
                             "attack_distance")
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]  # one run
    if not inputs:
        raise OnnxFaultError("give at least one synthesize run as `inputs`", parameter="inputs")
    loaded = as_model(model, output)
    if not loaded.takes_one_float_input:
        raise OnnxFaultError("retrain fine-tunes a model with one float input (images, audio, features)")
    original = _original_proto(model, loaded)
    weights = learned_weights(original)
    if not weights:
        raise OnnxFaultError(f"{loaded.path} has no learned float weights (Conv, Gemm, MatMul kernels and biases, "
                             "BatchNormalization's scale and shift) as initializers; there is nothing to retrain")
    digest = weights_digest(loaded.proto)
    runs = [_run(run, loaded, digest) for run in inputs]
    benign = as_dataset(data, loaded.data_shape, data_options)
    bx, by = _all_samples(benign)
    _check_labels(by, loaded.num_classes, "the training data")
    masks = _masks(loaded, original, weights, runs, neurons) if only == "suspicious" else {n: None for n in weights}
    x = np.concatenate([bx, *[r.arrays["synthesized"] for r in runs]]).astype(np.float32)
    y = np.concatenate([by, *[r.arrays["labels"] for r in runs]]).astype(np.int64)
    held = heldout if heldout is not None else data
    before = _measure(loaded, held, data_options, attack_distance, attack_samples, seed, device)

    from .adapters.training import Schedule, fine_tune

    clip = tuple(float(v) for v in runs[0].clip)
    schedule = Schedule(epochs, batch_size, lr, seed, pgd if adversarial == "pgd" else None, clip)
    new = fine_tune(loaded.scores_only(), masks, x, y, schedule, loaded.scores_are_probabilities, device)
    from . import graph

    fixed = graph.with_initializers(original, new)
    after = _measure(_checked(fixed, loaded, output), held, data_options, attack_distance,
                     attack_samples, seed, device)
    result = RetrainResult(
        loaded.path, benign.path, [_name(r) for r in inputs],
        {"only": only, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "adversarial": adversarial,
         "pgd": list(pgd) if adversarial == "pgd" else None, "attack_distance": attack_distance,
         "attack_samples": attack_samples, "heldout": _name(heldout) if heldout is not None else None},
        {"benign": int(len(bx)), "synthesized": int(len(x) - len(bx))}, before, after,
        _changes(original, new, masks), fixed, list(loaded.notes), stamp(loaded))
    warn(result.warnings)
    return result


def _original_proto(model, loaded: Model) -> onnx.ModelProto:
    """The model as stored (onnxfault's loading may reshape its batch axis or add shapes); a model given in
    memory as onnxfault loaded it."""
    if isinstance(model, (str, Path)):
        from .model import _read_proto

        return _read_proto(Path(model))
    return loaded.proto


def _run(run, model: Model, digest: str):
    """A synthesize run (a folder or a result) whose seeds this model predicts as the run's model did."""
    from .results import load
    from .synthesis import SynthesisResult

    result = run if isinstance(run, SynthesisResult) else load(run)
    if not isinstance(result, SynthesisResult):
        raise OnnxFaultError(f"{_name(run)} is a {result.kind} result, not a synthesize run", parameter="inputs")
    recorded = result.report.get("model_weights")
    if recorded is not None and recorded != digest:
        raise OnnxFaultError(f"{_name(run)} was made on another model (its weights differ from this model's); give "
                             "runs made on this model", parameter="inputs")
    seeds = result.arrays["original"]
    wanted = tuple(model.input_shape)
    if len(seeds.shape) - 1 != len(wanted) or any(d is not None and d != n for d, n in zip(wanted, seeds.shape[1:])):
        raise OnnxFaultError(f"the inputs of {_name(run)} have shape {tuple(seeds.shape[1:])} per sample; this model "
                             f"takes {wanted}: they were made on another model", parameter="inputs")
    predicted = model.session("cpu").run(seeds)[0].argmax(-1)
    differ = int(np.count_nonzero(predicted != result.arrays["predictions_before"]))
    if differ:
        raise OnnxFaultError(f"this model predicts {differ} of the {len(seeds)} seeds of {_name(run)} otherwise than "
                             "the model the run was made on; give runs made on this model", parameter="inputs")
    return result


def _all_samples(dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for x, y in dataset.batches():
        xs.append(np.array(x, np.float32))
        ys.append(np.asarray(y))
    return np.concatenate(xs), np.concatenate(ys)


def _check_labels(labels: np.ndarray, classes: int, what: str) -> None:
    bad = labels[(labels < 0) | (labels >= classes)]
    if len(bad):
        raise OnnxFaultError(f"{what} has samples of class {int(bad[0])}, but the model has classes 0–{classes - 1}; "
                             "give data labelled for this model")


def _masks(model: Model, original: onnx.ModelProto, weights: dict, runs, neurons) -> dict[str, np.ndarray]:
    """Per weight that feeds a suspicious neuron, the entries of those neurons' output channels."""
    from onnx import numpy_helper

    chosen, granularity = _suspicious(runs, neurons, model)
    values = {i.name: numpy_helper.to_array(i) for i in original.graph.initializer if i.name in weights}
    layers = {layer.tensor: layer for layer in model.select_layers("all")}
    masks: dict[str, np.ndarray] = {}
    for tensor, index in chosen:
        if tensor not in layers:
            raise OnnxFaultError(f"suspicious neuron {tensor}[{index}] is not a layer of this model", parameter="neurons")
        channel = channel_of(layers[tensor], index, granularity)
        for weight in feeding(original, tensor):
            mask = masks.setdefault(weight.name, np.zeros(values[weight.name].shape, np.bool_))
            where = [slice(None)] * mask.ndim
            where[weight.axis] = channel
            mask[tuple(where)] = True
    if not masks:
        raise OnnxFaultError("no learned weight computes the suspicious neurons (their layers are not the output "
                             "of a Conv, Gemm or MatMul); use `only` all", parameter="only")
    return masks


def _suspicious(runs, neurons, model: Model) -> tuple[list[tuple[str, int]], str]:
    if neurons is not None:
        from .synthesis import _given_neurons

        found, granularity, _ = _given_neurons(neurons, model)
        return [(n.tensor, n.index) for n in found], granularity
    chosen, granularity = [], "channel"
    for run in runs:
        granularity = run.report["params"].get("granularity") or granularity
        chosen += [(n["tensor"], n["index"]) for n in run.report.get("neurons", [])]
    if not chosen:
        raise OnnxFaultError("the runs name no suspicious neurons (their method uses none); give `neurons`, a "
                             "localize --json file, or use `only` all", parameter="neurons")
    return list(dict.fromkeys(chosen)), granularity


def _measure(model: Model, data, data_options, distance: float, samples: int, seed: int, device: str) -> dict:
    """Accuracy (overall and per class) and PGD's attack success rate on ``data``."""
    import warnings

    from .evaluation import evaluate
    from .synthesis import synthesize

    evaluated = evaluate(model, data, data_options=data_options, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attacked = synthesize(model, data, method="pgd", samples=samples, seed=seed, distance=distance,
                              step=distance / 10, iterations=20, device=device, data_options=data_options)
    return {"accuracy": evaluated.accuracy, "samples": evaluated.samples,
            "per_class": [{"class": row["class"], "samples": row["samples"], "correct": row["correct"]}
                          for row in evaluated.per_class()],
            "attack_success_rate": attacked.success_rate, "attacked_seeds": attacked.report["seeds"]["count"]}


def _checked(proto: onnx.ModelProto, loaded: Model, output: str | None) -> Model:
    """The retrained model, loaded, once it passes onnx's checker and runs on onnxruntime with finite scores."""
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise OnnxFaultError(f"the retrained model fails onnx's checker ({str(err).splitlines()[0]})") from None
    fixed = as_model(proto.SerializeToString(), output)
    scores = fixed.session("cpu").run(loaded.example_feeds(2))[0]
    if not np.isfinite(scores).all():
        raise OnnxFaultError("the retrained model gives non-finite scores; lower `lr`")
    return fixed


def _changes(original: onnx.ModelProto, new: dict[str, np.ndarray], masks: dict) -> list[dict]:
    from onnx import numpy_helper

    out = []
    for init in original.graph.initializer:
        if init.name not in new:
            continue
        old = numpy_helper.to_array(init).astype(np.float64)
        delta = new[init.name].astype(np.float64) - old
        out.append({"tensor": init.name, "shape": list(old.shape),
                    "trainable": int(old.size if masks[init.name] is None else np.count_nonzero(masks[init.name])),
                    "changed": int(np.count_nonzero(delta)), "max_abs": float(np.abs(delta).max(initial=0.0)),
                    "l2": float(np.sqrt(np.sum(delta ** 2)))})
    return out


def _name(data) -> str:
    return str(data) if isinstance(data, (str, Path)) else type(data).__name__
