"""Synthesis memory and work: metrics chunk by chunk equal to one pass over all seeds, methods without neurons
skip the spectrum, method modules (and scipy) imported only when used, the peak-memory keys."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxfault import load_model
from onnxfault.data import DataOptions
from onnxfault.errors import OnnxFaultError
from onnxfault.localization import SuspiciousNeuron
from onnxfault.loss import cross_entropy
from onnxfault.spectrum import probe_axes
from onnxfault.synthesis import synthesize
from onnxfault.synthesis.methods import METHODS
from onnxfault.synthesis.output import picture

from conftest import init, make_model, save


def one_pass_metrics(model, report: dict, arrays: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    """The metrics as computed before chunking: both passes over all seeds at once (the former ``measure``)."""
    neurons = [SuspiciousNeuron(n["rank"], n["tensor"], n["index"], n["score"], n["as"], n["af"], n["ns"], n["nf"])
               for n in report["neurons"]]
    tensors = list(dict.fromkeys(n.tensor for n in neurons))
    layers = {layer.tensor: layer for layer in model.select_layers(tensors)} if tensors else {}
    granularity, target = report["params"]["granularity"], report["params"]["target"]
    original, synthesized, labels = arrays["original"], arrays["synthesized"], arrays["labels"]
    session = model.session("cpu", tensors)
    before, after = session.run_named(original), session.run_named(synthesized)
    pred_before, pred_after = before[model.output_name].argmax(-1), after[model.output_name].argmax(-1)
    correct_before, correct_after = pred_before == labels, pred_after == labels

    def values(outputs):
        per_tensor = {}
        for t in tensors:
            axes = probe_axes(layers[t], granularity)
            v = outputs[t].mean(axis=axes, dtype=np.float64) if axes else outputs[t].astype(np.float64)
            per_tensor[t] = v.reshape(len(v), -1)
        return np.stack([per_tensor[n.tensor][:, n.index] for n in neurons], axis=1)

    def stats(v):
        return {"mean": float(v.mean()), "max": float(v.max())}

    delta = (synthesized.astype(np.float64) - original.astype(np.float64)).reshape(len(original), -1)
    metrics = {
        "accuracy_before": float(correct_before.mean()), "accuracy_after": float(correct_after.mean()),
        "loss_after": float(cross_entropy(after[model.output_name], labels, model.scores_are_probabilities).mean()),
        "success_rate": float((correct_before & ~correct_after).mean()),
        "target_rate": None if target is None else float((pred_after == target).mean()),
        "target_rate_before": None if target is None else float((pred_before == target).mean()),
        "distance": {"l0": stats(np.count_nonzero(delta, axis=1).astype(np.float64)),
                     "l1": stats(np.abs(delta).sum(axis=1)), "l2": stats(np.sqrt((delta ** 2).sum(axis=1))),
                     "linf": stats(np.abs(delta).max(axis=1))},
        "activation_increase": float((values(after) > values(before)).mean()) if neurons else None,
    }
    return metrics, pred_before, pred_after


RUNS = {"fgsm": {}, "pgd target 3": {"method": "pgd", "target": 3, "iterations": 3},
        "deepfault": {}, "hs element": {"method": "hs", "granularity": "element", "iterations": 2}}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_metrics_in_chunks_equal_one_pass_over_all_seeds(lenet_onnx, sample_npz, name):
    # 30 seeds per class on the shipped LeNet-5, in chunks of 64 (the last one partial): every report number
    # equals the former all-at-once computation exactly (==, not approximately), and so do the predictions
    settings = {"method": name, **RUNS[name]}
    result = synthesize(lenet_onnx, sample_npz, samples=30, device="cpu", data_options=DataOptions(batch_size=64),
                        **settings)
    r = result.report
    assert r["seeds"]["count"] == (270 if r["params"]["target"] is not None else 300)  # 4 or 5 chunks, one partial
    want, before, after = one_pass_metrics(load_model(lenet_onnx), r, result.arrays)
    assert {key: r[key] for key in want} == want
    assert np.array_equal(result.arrays["predictions_before"], before)
    assert np.array_equal(result.arrays["predictions_after"], after)
    assert r["accuracy_after"] < 1.0  # the runs change predictions: the comparison is not of constants


@pytest.mark.parametrize("method", ["fgsm", "pgd", "patch"])
def test_methods_without_neurons_skip_the_spectrum(dense_onnx, sample_npz, method):
    # localize reports each batch it reads through on_batch: without neurons nothing is read for a spectrum
    batches = []
    result = synthesize(dense_onnx, sample_npz, method=method, samples=1, **({"iterations": 2} if method == "pgd" else {}),
                        on_batch=batches.append)
    r = result.report
    assert batches == [] and r["neurons"] == [] and r["activation_increase"] is None
    assert (r["params"]["k"], r["params"]["measure"], r["params"]["layers"], r["params"]["granularity"]) == \
        (0, None, None, None)
    assert r["seeds"]["count"] == 10 and r["accuracy_before"] == 1.0  # the seed-selection pass still runs


def test_methods_with_neurons_still_rank_them(dense_onnx, sample_npz):
    batches = []
    r = synthesize(dense_onnx, sample_npz, method="deepfault", samples=1, on_batch=batches.append).report
    assert batches and r["params"]["k"] == len(r["neurons"]) == 10 and 0 <= r["activation_increase"] <= 1


def test_fgsm_runs_on_a_model_without_neuron_layers(tmp_path):
    # one Gemm from the input to the class scores: no layer to rank, so a spectrum would fail
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    model = save(make_model([helper.make_node("Gemm", ["x", "W"], ["logits"])], [("x", TensorProto.FLOAT, ["N", 4])],
                            [("logits", TensorProto.FLOAT, ["N", 3])], [init("W", w)]), tmp_path / "linear.onnx")
    x = rng.random((60, 4), dtype=np.float32)
    data = tmp_path / "d.npz"
    y = (x @ w).argmax(1)  # every sample correctly classified
    np.savez(data, x=x, y=y)
    with pytest.raises(OnnxFaultError, match="no neuron layers"):
        synthesize(model, data, method="deepfault", samples=2)
    r = synthesize(model, data, method="fgsm", samples=2, device="cpu").report
    assert r["neurons"] == [] and r["seeds"]["count"] == np.minimum(np.bincount(y), 2).sum() >= 3
    assert r["accuracy_before"] == 1.0


def test_neuron_options_of_a_method_without_neurons_are_an_error(cli, dense_onnx, sample_npz, tmp_path):
    ranking = tmp_path / "rank.json"
    assert cli("localize", dense_onnx, "--data", sample_npz, "-k", "3", "--json", ranking, "-q").exit_code == 0
    result = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "fgsm", "--samples", "1", "--neurons",
                 ranking, "--measure", "tarantula", "--out", tmp_path / "run", "-q")
    assert result.exit_code == 1 and not (tmp_path / "run").exists()
    assert result.stderr.strip() == ("error: fgsm uses no suspicious neurons, so it does not take --measure or "
                                     "--neurons; drop them")


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_fgsm_imports_neither_scipy_nor_other_methods(dense_onnx, sample_npz):
    code = f"""
import sys
from onnxfault.synthesis import synthesize
synthesize({str(dense_onnx)!r}, {str(sample_npz)!r}, method="fgsm", samples=1)
methods = sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.rsplit(".", 1)[-1] in {sorted(METHODS)!r})
print("scipy" in sys.modules, "torch" in sys.modules, methods)"""
    assert run_python(code) == "False True ['fgsm']"


def test_registry_lists_every_method_without_importing_a_framework():
    code = """
import sys
from onnxfault.synthesis.methods import METHODS
listed = [(m.name, m.summary, m.defaults(), m.option_specs(), m.uses_neurons) for m in METHODS.values()]
print(len(listed), [m for m in ("scipy", "torch") if m in sys.modules])"""
    assert run_python(code) == "13 []"


def test_registry_options_equal_the_modules_own_defaults():
    from onnxfault.synthesis import deepsensor, patch
    from onnxfault.synthesis.aigent import Settings

    assert METHODS["deepsensor"].defaults().inertia == deepsensor.INERTIA
    settings = patch.settings_from(METHODS["patch"].defaults(), None)
    assert settings == Settings()
    assert type(METHODS["fgsm"]).merge is type(METHODS["pgd"]).merge  # neither keeps statistics
    listed = ["fgsm", "pgd", "patch", "dlfuzz", "deepxplore", "deephunter", "art:AutoAttack", "art:DeepFool",
              "art:SquareAttack"]
    found = [name for name, m in METHODS.items() if not m.uses_neurons]
    # after them, the ART attacks other tests of this process asked for (art:HopSkipJump): the registry keeps them
    assert found[:len(listed)] == listed and all(name.startswith("art:") for name in found[len(listed):])


def test_peak_memory_keys(dense_onnx, sample_npz):
    r = synthesize(dense_onnx, sample_npz, method="hs", samples=2, device="cpu").report
    assert 0 < r["method_peak_memory_mb"] <= r["peak_memory_mb"]
    assert r["cuda_peak_memory_mb"] is None and r["device"] == "cpu"  # CPU RSS figures, never replaced by CUDA's


def test_picture_converts_only_the_seeds_it_draws(lenet_onnx, sample_npz):
    result = synthesize(lenet_onnx, sample_npz, method="fgsm", samples=3, device="cpu")
    a = result.arrays
    assert len(a["original"]) == 30
    whole = picture(a["original"], a["synthesized"], a["labels"], a["predictions_before"], a["predictions_after"],
                    result.clip, result.model_layout, result.sample_shape)
    first = picture(*(a[k][:10] for k in ("original", "synthesized", "labels", "predictions_before",
                                           "predictions_after")), result.clip, result.model_layout, result.sample_shape)
    assert whole.tobytes() == first.tobytes() and whole.size == first.size


def test_the_command_summarises_a_run_without_neurons(cli, dense_onnx, sample_npz, tmp_path):
    result = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "fgsm", "--samples", "1",
                 "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("fgsm: 10 seeds, accuracy 100.0 % → ") and "activation increase" not in result.stdout
