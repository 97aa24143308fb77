"""``art:NAME``: attacks of the Adversarial Robustness Toolbox on the model's torch module. DeepFool's inputs equal
ART's own DeepFool on the same net written by hand in torch; SquareAttack repeats with its seed; AutoAttack runs;
the standard report and inputs.npz; an unknown attack, parameter or a targeted DeepFool is one error line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("art")
import torch  # noqa: E402

import onnxfault  # noqa: E402

from test_dlfuzz import B1, W1, W2, torch_twin, two_layer_net  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def seeds() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).random((40, 3)).astype(np.float32)
    return x, (np.maximum(x @ W1 + B1, 0) @ W2).argmax(1)


def test_deepfool_equals_arts_own_on_the_same_net_in_torch(tmp_path):
    from art.attacks.evasion import DeepFool
    from art.estimators.classification import PyTorchClassifier

    x, y = seeds()
    result = onnxfault.synthesize(two_layer_net(tmp_path / "two.onnx"), (x, y), method="art:DeepFool", samples=3,
                                  clip_min=0.0, clip_max=1.0)
    net = torch_twin()
    classifier = PyTorchClassifier(net, loss=torch.nn.CrossEntropyLoss(), input_shape=(3,), nb_classes=6,
                                   clip_values=(0.0, 1.0))
    original = result.arrays["original"]
    want = DeepFool(classifier, verbose=False).generate(original, y=np.eye(6, dtype=np.float32)[result.arrays["labels"]])
    assert np.abs(result.arrays["synthesized"] - np.clip(want, 0, 1)).max() < 1e-5
    assert result.success_rate > 0.5


def test_square_attack_repeats_with_its_seed_and_autoattack_runs(tmp_path):
    np.random.seed(11)
    torch.manual_seed(11)
    callers = np.random.get_state()[1].copy(), torch.random.get_rng_state().clone()
    runs = [onnxfault.synthesize(EXAMPLES / "mnist_dense.onnx", EXAMPLES / "mnist_sample.npz",
                                 method="art:SquareAttack", samples=1, seed=3, art_param="eps=0.2,max_iter=30")
            for _ in range(2)]
    assert np.array_equal(runs[0].arrays["synthesized"], runs[1].arrays["synthesized"])
    assert np.abs(runs[0].arrays["synthesized"] - runs[0].arrays["original"]).max() <= 0.2 + 1e-6
    assert np.array_equal(np.random.get_state()[1], callers[0])  # the caller's generators are given back
    assert torch.equal(torch.random.get_rng_state(), callers[1])
    model, (x, y) = two_layer_net(tmp_path / "two.onnx"), seeds()
    auto = onnxfault.synthesize(model, (x, y), method="art:AutoAttack", samples=2, art_param="eps=0.3")
    assert auto.params["art_param"] == "eps=0.3" and auto.success_rate > 0
    with pytest.raises(onnxfault.OnnxFaultError, match="art:SquareAttack: ART cannot run it on this model"):
        onnxfault.synthesize(model, (x, y), method="art:SquareAttack", samples=1)  # images only


def test_a_black_box_attack_that_predicts_in_float64_runs(tmp_path):
    """HopSkipJump asks the classifier about float64 arrays; the float32 model gets them as float32."""
    model, (x, y) = two_layer_net(tmp_path / "two.onnx"), seeds()
    result = onnxfault.synthesize(model, (x, y), method="art:HopSkipJump", samples=1, clip_min=0.0, clip_max=1.0,
                                  art_param="norm=inf,max_iter=3,max_eval=100,init_eval=10")
    assert result.success_rate > 0 and result.arrays["synthesized"].dtype == np.float32


def test_an_art_attack_from_the_cli_writes_the_standard_run(tmp_path, cli):
    out = tmp_path / "run"
    done = cli("synthesize", EXAMPLES / "mnist_dense.onnx", "--data", EXAMPLES / "mnist_sample.npz", "--method",
               "art:DeepFool", "--art-param", "max_iter=20", "--samples", "1", "--out", out)
    assert done.exit_code == 0, done.output
    assert "DeepFool:" not in done.stderr  # ART's progress bars stay quiet
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "art:DeepFool" and report["params"]["art_param"] == "max_iter=20"
    with np.load(out / "inputs.npz") as arrays:
        assert arrays["synthesized"].shape == arrays["original"].shape == (report["seeds"]["count"], 1, 28, 28)


@pytest.mark.parametrize("args, message", [
    (["--method", "art:DeepFol"], "error: unknown ART evasion attack 'DeepFol'; did you mean DeepFool"),
    (["--method", "art:DeepFool", "--art-param", "bogus=1"], "error: art:DeepFool has no parameter 'bogus'; it takes max_iter"),
    (["--method", "art:DeepFool", "--art-param", "max_iter"], "is not key=value"),
    (["--method", "art:DeepFool", "--target", "3"], "error: art:DeepFool cannot be targeted"),
    (["--method", "fgsm", "--art-param", "eps=1"], "error: fgsm does not take --art-param"),
])
def test_bad_art_input_is_one_line_and_writes_nothing(tmp_path, cli, args, message):
    done = cli("synthesize", EXAMPLES / "mnist_dense.onnx", "--data", EXAMPLES / "mnist_sample.npz", *args,
               "--samples", "1", "--out", tmp_path / "run")
    lines = done.stderr.strip().splitlines()
    assert done.exit_code != 0 and len(lines) == 1 and message in lines[0] and "Traceback" not in done.output
    assert not (tmp_path / "run").exists()
    assert "art:DeepFol" not in list(onnxfault.METHODS)  # a name that failed is never listed afterwards
