"""ONNX's own backend node test cases through the ONNX→torch adapter (the harness is tests/onnx_conformance.py).

Every case's expected outcome is kept in tests/onnx_conformance.txt: `pass`, or `skip` with an accepted
category. A case expected to pass must pass (every output compared), so a newly failing case fails here; at
least 85 % of the cases pass, and no case of an op a classifier uses is skipped (but for a random Dropout
mask, a quantized or string cast). A skip names an accepted category, or `onnxruntime` for the few cases
whose expected output onnxruntime does not give either (the adapter follows onnxruntime). Every differentiable op
also passes torch.autograd.gradcheck in float64 on one of its cases. Cases of a newer onnx that the file does
not list yet are run and reported, not failed.
"""
from __future__ import annotations

import pytest

from onnx_conformance import (ONNXRUNTIME_CASES, SKIP_CATEGORIES, float_input_cases, gradcheck_case,
                              onnxfault_converter, ops_of, read_expected, run_case)

CASES = float_input_cases()
EXPECTED = read_expected()
BY_NAME = {c.name: c for c in CASES}

# The ops a classifier is made of: none of their cases may be skipped, except for the categories named
# with each group (a Cast to a quantized type, a training-mode Dropout's random mask).
CLASSIFIER_OPS = {
    "convolution and pooling": """Conv ConvTranspose MaxPool AveragePool LpPool GlobalAveragePool GlobalMaxPool
        GlobalLpPool""",
    "normalization": """BatchNormalization InstanceNormalization LayerNormalization GroupNormalization
        RMSNormalization LRN LpNormalization MeanVarianceNormalization""",
    "activation": """Relu LeakyRelu PRelu Elu Selu Celu Sigmoid HardSigmoid Tanh Softplus Softsign HardSwish Gelu
        Mish Swish ThresholdedRelu Shrink Softmax LogSoftmax Hardmax Clip""",
    "elementwise": """Add Sub Mul Div Pow Mod Abs Neg Exp Log Sqrt Reciprocal Floor Ceil Round Sign Erf Sin Cos Tan
        Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Max Min Sum Mean IsNaN IsInf""",
    "reduction": """ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum
        ReduceLogSumExp ReduceSumSquare ArgMax ArgMin CumSum""",
    "shape": """Reshape Flatten Transpose Squeeze Unsqueeze Expand Tile Pad Shape Size Concat Split Slice
        DepthToSpace SpaceToDepth Identity Constant ConstantOfShape Range Trilu""",
    "indexing": "Gather GatherElements GatherND Scatter ScatterElements ScatterND TopK OneHot",
    "resampling": "Resize Upsample GridSample",
    "comparison and selection": "Where Equal Less LessOrEqual Greater GreaterOrEqual And Or Xor Not",
    "linear algebra and attention": "MatMul Gemm Einsum Attention",
    "casts": "Cast CastLike Dropout",
}
ALLOWED_FOR_CLASSIFIER_OPS = ("random", "quantized", "string")
# Where an op's smallest case cannot be gradchecked, the case used instead, and why.
GRADCHECK_CASE = {
    "Acosh": "test_acosh",  # test_acosh_example holds 1, acosh's domain edge (the jitter leaves the domain)
    "Mod": "test_mod_mixed_sign_float64",  # the fmod edge cases hold ±inf, NaN and zero divisors
}


def case_id(case) -> str:
    return case.name


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_case(case):
    outcome, reason = EXPECTED.get(case.name, ("unlisted", ""))
    if outcome == "skip":
        pytest.skip(reason)
    why = run_case(case, onnxfault_converter)
    if outcome == "unlisted" and why is not None:
        pytest.skip(f"not listed in onnx_conformance.txt (a newer onnx?), fails: {why}")
    assert why is None, why


def test_the_file_lists_the_cases_and_the_target_is_met():
    stale = sorted(set(EXPECTED) - set(BY_NAME))
    assert not stale, f"onnx_conformance.txt lists cases this onnx does not have: {stale[:5]}"
    passing = sum(EXPECTED.get(c.name, ("",))[0] == "pass" for c in CASES)
    assert passing / len(CASES) >= 0.85, f"{passing}/{len(CASES)} cases pass"


def test_skips_name_an_accepted_category():
    for name, (outcome, reason) in EXPECTED.items():
        assert outcome in ("pass", "skip"), name
        if outcome == "skip":
            assert reason.split(":")[0] in {*SKIP_CATEGORIES, "onnxruntime"}, f"{name}: {reason}"
            if reason.startswith("onnxruntime"):
                assert name in ONNXRUNTIME_CASES, name


def test_no_case_of_a_classifier_op_is_skipped():
    ops = {op for group in CLASSIFIER_OPS.values() for op in group.split()}
    skipped = [f"{name} ({reason})" for name, (outcome, reason) in EXPECTED.items()
               if outcome == "skip" and name in BY_NAME and ops_of(BY_NAME[name]) & ops
               and not reason.startswith(ALLOWED_FOR_CLASSIFIER_OPS)]
    assert not skipped, skipped


def gradcheck_cases():
    """Per op type: its smallest single-node case expected to pass that has a float output."""
    chosen = {}
    for case in CASES:
        if not case.single_node or EXPECTED.get(case.name, ("",))[0] != "pass":
            continue
        if not any(getattr(o, "dtype", None) is not None and o.dtype.kind == "f" for o in case.outputs):
            continue
        best = chosen.get(case.op)
        if best is None or case.inputs[0].size < best.inputs[0].size:
            chosen[case.op] = case
    chosen.update({op: BY_NAME[name] for op, name in GRADCHECK_CASE.items()})
    return [chosen[op] for op in sorted(chosen)]


@pytest.mark.parametrize("case", gradcheck_cases(), ids=lambda c: c.op)
def test_gradcheck(case):
    why = gradcheck_case(case)
    assert why in (None, "no float output", "no elements"), f"{case.name}: {why}"
