"""Image and audio classifiers from Hugging Face ``transformers`` (seeded small configs, nothing downloaded),
exported as users export them: inspect, localize and FGSM run on each, FGSM equal to a plain torch FGSM on the
source module; and audio data as a folder of ``.wav`` files, read with soundfile, through localize, synthesize
and the report."""
from __future__ import annotations

import json

import numpy as np
import pytest

from foreign_models import (AUDIO_MODELS, AUDIO_SAMPLES, IMAGE_MODELS, IMAGE_SIZE, audio_classifier, export_single,
                            image_classifier)

pytest.importorskip("transformers", reason="the foreign-model tests build models with transformers (the dev extra)")
torch = pytest.importorskip("torch")

import onnxfault  # noqa: E402


def _plain_fgsm(module, input_name: str, x: np.ndarray, labels: np.ndarray, distance: float) -> np.ndarray:
    """One FGSM step on the source module in plain torch: the sign of the cross-entropy's input gradient, times
    ``distance``, clipped to [0, 1] for images and [-1, 1] for waveforms."""
    leaf = torch.from_numpy(x).requires_grad_(True)
    logits = module(**{input_name: leaf}).logits
    torch.nn.functional.cross_entropy(logits.double(), torch.from_numpy(labels), reduction="sum").backward()
    low = -1.0 if input_name == "input_values" else 0.0
    return np.clip(x + distance * np.sign(leaf.grad.numpy()), low, 1.0)


@pytest.mark.parametrize("name", IMAGE_MODELS + AUDIO_MODELS)
def test_classifier_end_to_end_with_fgsm_equal_to_plain_torch(name, tmp_path):
    audio = name in AUDIO_MODELS
    module = audio_classifier(name) if audio else image_classifier(name)
    input_name = "input_values" if audio else "pixel_values"
    shape = (AUDIO_SAMPLES,) if audio else (3, IMAGE_SIZE, IMAGE_SIZE)
    path = export_single(module, tmp_path / f"{name}.onnx", torch.rand(2, *shape), input_name)
    rng = np.random.default_rng(0)
    x = (rng.uniform(-1, 1, (30, *shape)) if audio else rng.random((30, *shape))).astype(np.float32)
    with torch.no_grad():
        labels = module(**{input_name: torch.from_numpy(x)}).logits.argmax(1).numpy()
    info = onnxfault.inspect_model(path)
    assert info["input"]["shape"] == ["N", *shape] and info["layers"]
    spectrum = onnxfault.localize(path, (x, labels), k=3).spectrum
    assert spectrum.samples == len(x) and (spectrum.counts.sum(axis=0) == len(x)).all()
    low = -1.0 if audio else 0.0
    run = onnxfault.synthesize(path, (x, labels), method="fgsm", samples=2, distance=0.02, clip_min=low, clip_max=1.0)
    seeds = np.asarray(run.report["seeds"]["indices"])
    want = _plain_fgsm(module, input_name, x[seeds], labels[seeds], 0.02)
    assert np.mean(np.isclose(run.arrays["synthesized"], want, rtol=0, atol=1e-6)) >= 0.999


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    """Class folders of .wav files (16 and 8 kHz, one stereo), a wav2vec2 classifier at 16 kHz, and what
    soundfile + scipy give for each file by hand: mono, resampled to 16 kHz, padded or cut to the model's length."""
    soundfile = pytest.importorskip("soundfile", reason="sound files need onnxfault[audio] (soundfile)")
    from scipy.signal import resample_poly

    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    expected, labels = [], []
    for label, word in enumerate(["down", "go", "up"]):
        (root / "wavs" / word).mkdir(parents=True)
        for i in range(5):
            rate = 8000 if i == 1 else 16000
            n = int(rate * rng.uniform(0.06, 0.14))
            wave = 0.3 * np.sin(2 * np.pi * (300 + 200 * label) * np.arange(n) / rate) + 0.05 * rng.standard_normal(n)
            wave = np.stack([wave, 0.5 * wave], axis=1) if i == 2 else wave
            soundfile.write(root / "wavs" / word / f"{i}.wav", wave.astype(np.float32), rate)
            read, _ = soundfile.read(root / "wavs" / word / f"{i}.wav", dtype="float32", always_2d=True)
            mono = read.mean(axis=1, dtype=np.float32)
            mono = resample_poly(mono, 2, 1).astype(np.float32) if rate == 8000 else mono
            fitted = np.zeros(AUDIO_SAMPLES, np.float32)
            fitted[:min(len(mono), AUDIO_SAMPLES)] = mono[:AUDIO_SAMPLES]
            expected.append(fitted)
            labels.append(label)
    model = export_single(audio_classifier("wav2vec2"), root / "wav2vec2.onnx", torch.rand(2, AUDIO_SAMPLES),
                          "input_values")
    return root / "wavs", model, np.stack(expected), np.asarray(labels)


def test_wav_folder_reads_as_soundfile_and_scipy_give_it(sounds):
    folder, model, expected, labels = sounds
    dataset = onnxfault.data.as_dataset(folder, (AUDIO_SAMPLES,), onnxfault.DataOptions(sample_rate=16000))
    x = np.concatenate([batch for batch, _ in dataset.batches()])
    assert np.array_equal(dataset.labels, labels)
    assert np.array_equal(x, expected)
    assert dataset.adaptation.model_layout == "wave"


def test_wav_folder_through_localize_synthesize_and_report(sounds, cli, tmp_path):
    folder, model, expected, labels = sounds
    from onnxruntime import InferenceSession

    logits = InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input_values": expected})[0]
    result = cli("localize", model, "--data", folder, "--sample-rate", "16000", "-k", "3", "--json", tmp_path / "l.json")
    assert result.exit_code == 0, result.output
    ranking = json.loads((tmp_path / "l.json").read_text())
    assert ranking["samples"] == len(labels)
    assert ranking["failing"] == int((logits.argmax(1) != labels).sum())
    run = tmp_path / "run"
    result = cli("synthesize", model, "--data", folder, "--sample-rate", "16000", "--method", "pgd", "--samples", "2",
                 "--out", run, "--report", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())
    assert (report["input_layout"]["model"], report["input_layout"]["sample_rate"]) == ("wave", 16000)
    page = (run / "report.html").read_text()
    assert "Waveforms of" in page and "spectrograms" in page
    from PIL import Image

    with Image.open(run / "samples.png") as picture:
        assert picture.size[0] > 300 and picture.size[1] > 500  # five rows of waveforms and spectrograms


@pytest.mark.parametrize("case, args, expected", [
    ("mixed rates", [], r"the sound files have sample rates 8000, 16000 Hz .*give --sample-rate R"),
    ("rate for an npz", ["--sample-rate", "16000", "--npz"], r"--sample-rate applies to a folder of sound files"),
    ("zero rate", ["--sample-rate", "0"], r"--sample-rate must be a whole number .* ≥ 1 \(got 0\)"),
    ("not a sound", ["--sample-rate", "16000", "--junk"], r"cannot read sound file .*junk\.wav"),
])
def test_bad_audio_input_is_one_error_line(sounds, cli, tmp_path, case, args, expected):
    import re
    import shutil

    folder, model, _, _ = sounds
    data = folder
    if "--npz" in args:
        args = [a for a in args if a != "--npz"]
        data = tmp_path / "d.npz"
        np.savez(data, x=np.zeros((2, AUDIO_SAMPLES), np.float32), y=np.zeros(2, np.int64))
    if "--junk" in args:
        args = [a for a in args if a != "--junk"]
        data = tmp_path / "wavs"
        shutil.copytree(folder, data)
        (data / "go" / "junk.wav").write_bytes(b"RIFF not really a wave file")
    result = cli("localize", model, "--data", data, *args, "--json", tmp_path / "out.json")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert re.search(expected, " ".join(result.output.split())), result.output
    assert not (tmp_path / "out.json").exists()
