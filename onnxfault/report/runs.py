"""Reading runs for a report: a ``localize --json`` file (with the ``--spectra`` npz it names when it
summarises its layers), an ``evaluate --json`` file or a ``synthesize --out`` folder.

Arrays are read with ``allow_pickle=False``; a file of the wrong kind is one clear error naming it.
"""
from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data.source import check_npz
from ..errors import OnnxFaultError, read_json
from ..evaluation import confusion_of

ARRAYS = ("original", "synthesized", "labels", "predictions_before", "predictions_after")
SPECTRA_ARRAYS = ("tensors", "offsets", "scores")  # what the report reads from a localize --spectra npz
_NEEDS = {"localize": ("measure", "layers", "neurons", "samples", "failing", "accuracy"),
          "synthesize": ("method", "params", "neurons", "seeds", "accuracy_after", "success_rate", "distance",
                         "seconds"),
          "evaluate": ("samples", "correct", "accuracy", "classes", "per_class", "confusion"),
          "compare": ("model_a", "model_b", "samples", "layers", "measures", "params"),
          "coverage": ("samples", "coverage", "layers", "params"),
          "retrain": ("inputs", "before", "after", "changes", "params"),
          "robustness": ("clever", "attack_success_rate", "seeds", "params")}
_HINT = ("give a file written by `onnxfault localize --json`, `onnxfault evaluate --json`, "
         "`onnxfault compare --json`, `onnxfault coverage --json` or the retrain.json of `onnxfault retrain`, or a "
         "`onnxfault synthesize --out` folder")


@dataclass
class Run:
    """One result on the page: ``kind`` is localize, synthesize or evaluate, ``data`` its JSON, ``arrays`` its inputs
    (synthesize) or every neuron's ``scores`` and the layers' ``offsets`` (a localize JSON that summarises)."""

    kind: str
    path: str
    data: dict
    arrays: dict[str, np.ndarray] | None = None
    name: str = ""
    tag: str = ""  # R1, R2, … in the order given


def kind_of(data) -> str | None:
    """localize, synthesize, evaluate, or None when ``data`` is none of these results: the ``kind`` a file
    records, or for a file from before kinds were recorded, the one its keys show."""
    if not isinstance(data, dict):
        return None
    if "kind" in data:  # any JSON value: a list or an object is no kind
        return data["kind"] if isinstance(data["kind"], str) and data["kind"] in _NEEDS else None
    for kind, keys in _NEEDS.items():
        if all(key in data for key in keys):
            return kind
    return None


_NUMBER = (int, float)
_NEURON = {"rank": int, "tensor": str, "index": int, "score": _NUMBER}
_COUNTS = {"as": int, "af": int, "ns": int, "nf": int}
_LAYER = {"tensor": str, "op": str, "shape": list, "neurons": int}
_TOP = {"localize": {"measure": str, "samples": int, "failing": int, "accuracy": _NUMBER},
        "synthesize": {"method": str, "params": dict, "seeds": dict, "seconds": _NUMBER, "distance": dict},
        "evaluate": {"samples": int, "correct": int, "accuracy": _NUMBER, "classes": int},
        "compare": {"model_a": str, "model_b": str, "samples": int, "layers": list, "measures": dict,
                    "params": dict},
        "coverage": {"samples": int, "coverage": dict, "layers": list, "params": dict},
        "retrain": {"inputs": list, "before": dict, "after": dict, "changes": list, "params": dict, "samples": dict},
        "robustness": {"clever": list, "attack_success_rate": _NUMBER, "seeds": int, "params": dict}}


def _bad(value, kind) -> bool:
    return isinstance(value, bool) or not isinstance(value, kind)


def _check_items(items, fields: dict, where: str) -> str | None:
    if not isinstance(items, list):
        return f"{where} is not a list"
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return f"{where}[{i}] is not an object"
        for key, kind in fields.items():
            if _bad(item.get(key), kind):
                return f"{where}[{i}] has no valid '{key}'"
    return None


def content_problem(data: dict, kind: str) -> str | None:
    """What is wrong with a run's JSON for the page (None when nothing): the keys and types it relies on."""
    for key, type_ in _TOP[kind].items():
        if _bad(data.get(key), type_):
            return f"'{key}' is missing or of the wrong type"
    if kind == "evaluate":
        return _confusion_problem(data)
    if kind == "compare":
        return _check_items(data["layers"], {"tensor_a": str, "tensor_b": str, "neurons": int, "identical": int},
                            "layers")
    if kind == "coverage":
        return _coverage_problem(data)
    if kind == "retrain":
        return _retrain_problem(data)
    if kind == "robustness":
        if not 0 <= data["attack_success_rate"] <= 1:
            return "'attack_success_rate' is not a share in [0, 1]"
        if any(_bad(v, _NUMBER) for v in data["clever"]) or (data.get("fid") is not None and _bad(data["fid"], _NUMBER)):
            return "'clever' or 'fid' holds something that is not a number"
        return None
    problem = _check_items(data["neurons"], {**_NEURON, **(_COUNTS if kind == "localize" else {})}, "neurons")
    if problem:
        return problem
    if kind == "synthesize":
        return "seeds has no valid 'count'" if _bad(data["seeds"].get("count"), int) else None
    problem = _check_items(data["layers"], _LAYER, "layers")
    if problem:
        return problem
    for i, layer in enumerate(data["layers"]):
        scores = layer.get("scores")
        if scores is not None and (not isinstance(scores, list) or len(scores) != layer["neurons"]):
            return f"layers[{i}].scores does not hold one score per neuron"
    spectra = data.get("spectra")
    if spectra is not None and (not isinstance(spectra, str) or not spectra):
        return "'spectra' is not the name of an npz file"
    return None


def _retrain_problem(data: dict) -> str | None:
    """What is wrong with a retrain JSON's numbers: accuracies and attack success rates in [0, 1], per-class counts
    and changed tensors."""
    for side in ("before", "after"):
        found = data[side]
        for key in ("accuracy", "attack_success_rate"):
            value = found.get(key)
            if key == "accuracy" or value is not None:
                if _bad(value, _NUMBER) or not 0 <= value <= 1:
                    return f"'{side}.{key}' is not a share in [0, 1]"
        if _bad(found.get("samples"), int):
            return f"'{side}.samples' is missing or of the wrong type"
        problem = _check_items(found.get("per_class"), {"class": int, "samples": int, "correct": int},
                               f"{side}.per_class")
        if problem:
            return problem
    return _check_items(data["changes"], {"tensor": str, "trainable": int, "changed": int, "max_abs": _NUMBER,
                                          "l2": _NUMBER}, "changes")


def _coverage_problem(data: dict) -> str | None:
    """What is wrong with a coverage JSON's numbers: each criterion a pair 0 ≤ covered ≤ total."""
    def pairs_problem(found, where: str) -> str | None:
        if not isinstance(found, dict):
            return f"'{where}' is not an object"
        for criterion, pair in found.items():
            if not (isinstance(pair, list) and len(pair) == 2 and not any(_bad(v, int) for v in pair)
                    and 0 <= pair[0] <= pair[1]):
                return f"'{where}.{criterion}' is not a pair of whole counts, covered ≤ total"
        return None

    problem = pairs_problem(data["coverage"], "coverage")
    if problem is None and data.get("coverage_with_inputs") is not None:
        problem = pairs_problem(data["coverage_with_inputs"], "coverage_with_inputs")
    if problem is None:
        problem = _check_items(data["layers"], {"name": str, "neurons": int, "coverage": dict}, "layers")
    for i, layer in enumerate(data["layers"] if problem is None else []):
        problem = problem or pairs_problem(layer["coverage"], f"layers[{i}].coverage")
    return problem


def _confusion_problem(data: dict) -> str | None:
    try:
        confusion = confusion_of(data)
    except ValueError as err:
        return str(err)
    if confusion.sum() != data["samples"] or np.trace(confusion) != data["correct"]:
        return "'confusion' does not add up to its samples and correct"
    return None


def _spectra_problem(npz, data: dict) -> str | None:
    """How the npz ``npz`` (open) fails to be the one written with ``data``, judged on its small arrays."""
    missing = [key for key in SPECTRA_ARRAYS if key not in npz.files]
    if missing:
        return f"it has no '{missing[0]}' array"
    tensors, offsets = npz["tensors"], npz["offsets"]
    layers = data["layers"]
    if tensors.dtype.kind != "U" or tensors.tolist() != [l["tensor"] for l in layers]:
        return "its layers are not the JSON's"
    if offsets.dtype.kind not in "iu" or offsets.shape != (len(layers) + 1,) or offsets[0] != 0:
        return "its offsets are not one start per layer"
    sizes, expected = np.diff(offsets).tolist(), [l["neurons"] for l in layers]
    if sizes != expected:
        return (f"its layers hold {sum(sizes)} neurons, the JSON's {sum(expected)}" if sum(sizes) != sum(expected)
                else f"its layers hold {sizes} neurons, the JSON's {expected}")
    return None


def _top_k_problem(scores: np.ndarray, offsets: np.ndarray, data: dict) -> str | None:
    if scores.dtype.kind != "f" or scores.shape != (offsets[-1],):
        return f"its scores are not {int(offsets[-1])} numbers"
    start = {l["tensor"]: (int(a), l["neurons"]) for l, a in zip(data["layers"], offsets[:-1])}
    for n in data["neurons"]:
        first, size = start.get(n["tensor"], (0, -1))
        if not 0 <= n["index"] < size or scores[first + n["index"]] != n["score"]:
            return f"its score of neuron {n['index']} of {n['tensor']} is not the JSON's"
    return None


def read_scores(path: str | Path, data: dict) -> dict[str, np.ndarray]:
    """``scores`` and ``offsets`` (every neuron's score, and where each layer starts) from the npz that a
    summarised localize JSON at ``path`` names, checked against that JSON; only its tensors, offsets and
    scores are read."""
    npz_path = Path(path).parent / data["spectra"]
    fix = (f"keep {Path(data['spectra']).name} beside {Path(path).name} (move them together), or run "
           "`onnxfault localize --json` again")
    if not os.path.lexists(npz_path):
        raise OnnxFaultError(f"{path} keeps every neuron's score in {npz_path}, which does not exist; {fix}")
    check_npz(npz_path, "the localize --spectra npz")
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            problem = _spectra_problem(npz, data)
            if problem is None:
                offsets = npz["offsets"].astype(np.int64)
                scores = npz["scores"]
                problem = _top_k_problem(scores, offsets, data)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise OnnxFaultError(f"cannot read {npz_path} ({type(err).__name__}: {err}); {fix}") from err
    if problem:
        raise OnnxFaultError(f"{npz_path} does not match {path}: {problem}; {fix}")
    return {"scores": scores, "offsets": offsets}


def layer_scores(run: Run) -> list[np.ndarray] | None:
    """Each layer's scores in a localize run: from its JSON, or from the npz it names (``run.arrays``);
    None when neither holds them."""
    layers = run.data["layers"]
    if all("scores" in layer for layer in layers):
        return [np.asarray(layer["scores"], np.float64) for layer in layers]
    if run.arrays is not None and "scores" in run.arrays:
        scores, offsets = run.arrays["scores"], run.arrays["offsets"]
        return [scores[start:end] for start, end in zip(offsets[:-1], offsets[1:])]
    return None


def _read_arrays(path: Path, run_id: str | None = None) -> dict[str, np.ndarray] | None:
    """The sample arrays of a run's ``inputs.npz`` (None when it has none); ``run_id``: the report's, which the
    npz must carry too (a run being replaced while it is read would pair one run's report with another's inputs)."""
    if not os.path.lexists(path):
        return None
    check_npz(path, "the run's inputs.npz")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if run_id is not None and ("run_id" not in npz.files or str(npz["run_id"]) != run_id):
                raise OnnxFaultError(f"{path} does not come from the run its report.json describes (a run was being "
                                     "replaced while it was read?); read it again")
            arrays = {key: npz[key] for key in ARRAYS if key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise OnnxFaultError(f"cannot read {path} ({err}); write it again with `onnxfault synthesize --out`") from err
    return arrays if len(arrays) == len(ARRAYS) else None


def read_run(path: str | Path) -> Run:
    """The run at ``path``: a localize JSON file, a synthesize folder, or that folder's report.json."""
    path = Path(path)
    if path.is_dir():
        report = path / "report.json"
        if not os.path.lexists(report):
            raise OnnxFaultError(f"{path} has no report.json; {_HINT}")
        folder, data = path, read_json(report, _HINT)
    elif os.path.lexists(path):  # read_json refuses what is not a regular file
        folder, data = path.parent, read_json(path, _HINT)
    else:
        raise OnnxFaultError(f"{path} does not exist; {_HINT}")
    kind = kind_of(data)
    if kind is None:
        raise OnnxFaultError(f"{path} is neither a localize, evaluate, compare nor synthesize result; {_HINT}")
    problem = content_problem(data, kind)
    if problem:
        raise OnnxFaultError(f"{path} is not a result onnxfault wrote: {problem}; write it again with "
                             f"`onnxfault {kind}`")
    if kind == "synthesize":
        arrays = _read_arrays(folder / "inputs.npz", data.get("run_id"))
    elif kind == "localize":
        arrays = read_scores(path, data) if data.get("spectra") is not None else None
    else:
        arrays = None
    name = (folder.name if kind == "synthesize" else path.stem) or str(path)
    return Run(kind, str(path), data, arrays, name)


def files_read(run: Run) -> list[Path]:
    """The files a saved run is read from: its JSON (a run folder's report.json) and the arrays beside it."""
    path = Path(run.path)
    folder = path if path.is_dir() else path.parent
    json_file = folder / "report.json" if path.is_dir() else path
    arrays = [folder / "inputs.npz"] if run.kind == "synthesize" else []
    if run.kind == "localize" and run.data.get("spectra"):
        arrays = [folder / run.data["spectra"]]
    return [json_file, *arrays]


def number_runs(runs: list[Run]) -> list[Run]:
    """Copies of ``runs`` tagged R1, R2, … with names that are unique on the page."""
    seen: dict[str, int] = {}
    numbered = []
    for i, run in enumerate(runs):
        base = run.name or run.kind
        seen[base] = seen.get(base, 0) + 1
        numbered.append(replace(run, tag=f"R{i + 1}", name=base if seen[base] == 1 else f"{base} ({seen[base]})"))
    return numbered


def natural_key(text: str) -> list:
    """Sort key that compares digit runs as numbers: k5 before k10."""
    return [(int(part), part) if i % 2 else (0, part) for i, part in enumerate(re.split(r"(\d+)", text))]


def given_order(paths: list[str]) -> list[str]:
    """``paths`` with every stretch given in plain sorted order, as a shell glob expands one, put in natural
    order (``a.json runs/k* b``: k1, k5, k10, k20, not k1, k10, k20, k5); the order between stretches is the
    user's and is kept."""
    stretches: list[list[str]] = []
    for path in paths:
        if stretches and path >= stretches[-1][-1]:
            stretches[-1].append(path)
        else:
            stretches.append([path])
    return [path for stretch in stretches for path in sorted(stretch, key=natural_key)]


def read_runs(paths) -> list[Run]:
    """The runs at ``paths``, numbered later in the order :func:`given_order` keeps."""
    if not paths:
        raise OnnxFaultError(f"no run given; {_HINT}")
    return [read_run(p) for p in given_order([str(p) for p in paths])]
