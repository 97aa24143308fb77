"""The foreign-model table of the README: classifiers nobody here wrote, built from the model libraries' own code
with small seeded configs (nothing downloaded), run through onnxfault end to end and checked against their
source framework.

    python benchmarks/foreign_models.py [--only hf|keras] [--json results.json]

Hugging Face (transformers): exported with torch.onnx.export; inspect, localize, fgsm; FGSM compared with a plain
torch FGSM on the source module (text: in embedding space). Keras 3 (keras.applications, weights=None, 10
classes; the smallest model of every family): ``onnxfault convert``; outputs against Keras; the adapter's input
gradient against TensorFlow's, both in float64; inspect, localize, fgsm. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

KERAS_FAMILIES = {  # the smallest model of each keras.applications family, and an input size it accepts
    "ConvNeXtTiny": 32, "DenseNet121": 32, "EfficientNetB0": 32, "EfficientNetV2B0": 32, "InceptionResNetV2": 75,
    "InceptionV3": 75, "MobileNet": 32, "MobileNetV2": 32, "MobileNetV3Small": 32, "NASNetMobile": 32,
    "ResNet50": 32, "ResNet50V2": 32, "VGG16": 32, "Xception": 71,
}


def hugging_face(root: Path) -> list[dict]:
    import torch

    import foreign_models as fm
    import onnxfault
    import test_foreign_text as text_tests
    import test_foreign_vision_audio as vision_tests

    rows = []
    data = fm.token_data()
    np.savez(root / "tokens.npz", **data)
    for kind, names in (("image", fm.IMAGE_MODELS + ("mobilevitv2",)), ("text", fm.TEXT_MODELS),
                        ("audio", fm.AUDIO_MODELS)):
        for name in names:
            started, row = time.perf_counter(), {"library": "transformers", "kind": kind, "model": name}
            try:
                if kind == "text":
                    module = fm.text_classifier(name)
                    path = fm.export_text(module, root / f"{name}.onnx")
                    run = onnxfault.synthesize(path, root / "tokens.npz", method="fgsm", samples=4, distance=0.02)
                    a = run.arrays
                    ids, real = a["original_input_ids"], a["original_attention_mask"].astype(bool)
                    specials = np.unique(np.concatenate([ids[:, 0], ids[np.arange(len(ids)), real.sum(1) - 1],
                                                         ids[~real]]))
                    want = text_tests.plain_fgsm(module, data, np.asarray(run.report["seeds"]["indices"]), 0.02,
                                                 *run.clip, real & ~np.isin(ids, specials))
                    onnxfault.localize(path, root / "tokens.npz", k=3)
                else:
                    module = fm.audio_classifier(name) if kind == "audio" else _image_module(fm, name)
                    input_name = "input_values" if kind == "audio" else "pixel_values"
                    size = 64 if name == "mobilevitv2" else fm.IMAGE_SIZE  # its unfolding needs 64 × 64 at least
                    shape = (fm.AUDIO_SAMPLES,) if kind == "audio" else (3, size, size)
                    path = fm.export_single(module, root / f"{name}.onnx", torch.rand(2, *shape), input_name)
                    rng = np.random.default_rng(0)
                    x = (rng.uniform(-1, 1, (30, *shape)) if kind == "audio" else rng.random((30, *shape))).astype(np.float32)
                    with torch.no_grad():
                        labels = module(**{input_name: torch.from_numpy(x)}).logits.argmax(1).numpy()
                    onnxfault.localize(path, (x, labels), k=3)
                    low = -1.0 if kind == "audio" else 0.0
                    run = onnxfault.synthesize(path, (x, labels), method="fgsm", samples=2, distance=0.02,
                                               clip_min=low, clip_max=1.0)
                    seeds = np.asarray(run.report["seeds"]["indices"])
                    want = vision_tests._plain_fgsm(module, input_name, x[seeds], labels[seeds], 0.02)
                row.update(passed=True, fgsm_equal=float(np.mean(np.isclose(run.arrays["synthesized"], want, rtol=0,
                                                                            atol=1e-6))),
                           layers=len(onnxfault.load_model(path).layers))
            except Exception as err:  # a survey records every failure and goes on
                row.update(passed=False, error=f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}")
            row["seconds"] = round(time.perf_counter() - started, 1)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def _image_module(fm, name: str):
    if name != "mobilevitv2":
        return fm.image_classifier(name)
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.MobileViTV2Config(image_size=64, num_labels=fm.CLASSES, width_multiplier=0.25)
    return transformers.AutoModelForImageClassification.from_config(config).eval()


def keras_applications(root: Path) -> list[dict]:
    import test_foreign_keras as kt
    from conftest import run_cli

    import onnxfault

    k = kt.keras()
    rows = []
    for name, size in KERAS_FAMILIES.items():
        started, row = time.perf_counter(), {"library": "keras", "kind": "image", "model": name}
        try:
            build = lambda: getattr(k.applications, name)(weights=None, classes=10, input_shape=(size, size, 3))  # noqa: E731
            k.utils.set_random_seed(0)
            model = build()
            model.save(root / f"{name}.keras")
            begun = time.perf_counter()
            result = run_cli("convert", root / f"{name}.keras", "-o", root / f"{name}.onnx")
            if result.exit_code != 0:
                raise RuntimeError(result.output.strip().splitlines()[-1])
            row["convert_seconds"] = round(time.perf_counter() - begun, 1)
            path = root / f"{name}.onnx"
            x = np.random.default_rng(0).random((8, size, size, 3), dtype=np.float32)
            scores = onnxfault.load_model(path).session("cpu").run(x)[0]
            row["output_difference"] = float(np.abs(scores - model.predict(x, verbose=0)).max())
            row["gradient_difference"] = kt.gradients_agree(path, kt.float64_twin(build, model), x[:2].astype(np.float64))
            labels = scores.argmax(1)
            onnxfault.localize(path, (x, labels), k=3)
            run = onnxfault.synthesize(path, (x, labels), method="fgsm", samples=1, distance=0.03, clip_min=0.0,
                                       clip_max=1.0)
            seeds = np.asarray(run.report["seeds"]["indices"])
            want = kt.plain_fgsm(model, x[seeds], labels[seeds], 0.03, 0.0, 1.0)
            row.update(passed=True, fgsm_equal=float(np.mean(np.isclose(run.arrays["synthesized"], want, rtol=0,
                                                                        atol=1e-6))))
        except Exception as err:  # a survey records every failure and goes on
            row.update(passed=False, error=f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}")
            traceback.print_exc(limit=2)
        row["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    def cell(row: dict, key: str, form: str, scale: float = 1.0, unit: str = "") -> str:
        return "" if key not in row else format(scale * row[key], form) + unit

    lines = ["| library | kind | model | result | FGSM equal | output Δ | float64 gradient Δ (rel.) | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        result = "passes" if r["passed"] else "fails: " + r["error"]
        lines.append(f"| {r['library']} | {r['kind']} | {r['model']} | {result} | "
                     f"{cell(r, 'fgsm_equal', '.2f', 100, ' %')} | {cell(r, 'output_difference', '.1e')} | "
                     f"{cell(r, 'gradient_difference', '.1e')} | {r['seconds']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("hf", "keras"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as folder:
        rows = ([] if args.only == "keras" else hugging_face(Path(folder))) + \
               ([] if args.only == "hf" else keras_applications(Path(folder)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
