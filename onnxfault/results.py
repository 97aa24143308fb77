"""Saved results: every file a run writes records its ``kind`` and ``format_version``, and :func:`load` reads
any of them back into its class (:class:`~onnxfault.LocalizeResult`, :class:`~onnxfault.EvaluateResult`,
:class:`~onnxfault.SynthesisResult`, :class:`~onnxfault.CompareResult`).

Files written before kinds were recorded (format 0) are recognised by their keys. Arrays are read with
``allow_pickle=False``: loading never runs code from a file.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from .errors import OnnxFaultError, read_json

__all__ = ["FORMAT_VERSION", "KINDS", "header", "load", "PROVENANCE_KEYS", "run_inputs"]

FORMAT_VERSION = 1  # of every result file; 0 is a file from before kinds were recorded
KINDS = ("localize", "evaluate", "synthesize", "compare", "coverage", "retrain", "robustness")
PROVENANCE_KEYS = ("command", "created", "versions", "platform", "model_io", "class_names")
_HINT = ("give a file written by `onnxfault localize --json`, `onnxfault evaluate --json`, "
         "`onnxfault compare --json`, `onnxfault coverage --json` or the retrain.json of `onnxfault retrain`, or a "
         "`onnxfault synthesize --out` folder")


def header(kind: str) -> dict:
    """The keys that open every result file: its ``kind`` and ``format_version``."""
    return {"kind": kind, "format_version": FORMAT_VERSION}


def provenance_of(data: dict) -> dict:
    """The provenance keys of a result file's JSON (command, created, versions, platform, model_io)."""
    return {key: data[key] for key in PROVENANCE_KEYS if key in data}


def load(path: str | Path):
    """The result saved at ``path`` (a ``--json`` file, a ``synthesize --out`` folder or its ``report.json``) as
    its class: the same object as the one that was saved (its ``to_json()`` equal, its arrays equal)."""
    path = Path(path)
    if path.is_dir():
        folder, path = path, path / "report.json"
        if not os.path.lexists(path):
            raise OnnxFaultError(f"{folder} has no report.json; {_HINT}", parameter="path")
    elif not os.path.lexists(path):
        raise OnnxFaultError(f"{path} does not exist; {_HINT}", parameter="path")
    folder = path.parent
    from .report.runs import content_problem, kind_of

    data = read_json(path, _HINT)
    kind = kind_of(data)
    if kind is None:
        found = data.get("kind") if isinstance(data, dict) else None
        raise OnnxFaultError(f"{path} is not a result onnxfault wrote" + (f" (kind {found!r})" if found else "")
                             + f"; {_HINT}", parameter="path")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise OnnxFaultError(f"{path} has format_version {version!r}, which is no format version; {_HINT}",
                             parameter="path")
    if version > FORMAT_VERSION:
        raise OnnxFaultError(f"{path} has format_version {version!r}, newer than this onnxfault reads "
                             f"({FORMAT_VERSION}); upgrade onnxfault", parameter="path")
    problem = content_problem(data, kind)
    if problem:
        raise OnnxFaultError(f"{path} is not a result onnxfault wrote: {problem}; write it again with "
                             f"`onnxfault {kind}`", parameter="path")
    try:
        if kind == "localize":
            from .localization import LocalizeResult

            spectra = _arrays(folder / data["spectra"]) if data.get("spectra") else None
            return LocalizeResult.from_json(data, spectra)
        if kind == "evaluate":
            from .evaluation import EvaluateResult

            return EvaluateResult.from_json(data)
        if kind == "synthesize":
            from .synthesis import SynthesisResult

            arrays = _arrays(folder / "inputs.npz")
            if data.get("run_id") is not None and str(arrays.pop("run_id", "")) != data["run_id"]:
                raise OnnxFaultError(f"{folder / 'inputs.npz'} does not come from the run its report.json describes "
                                     "(a run was being replaced while it was read?); read it again", parameter="path")
            return SynthesisResult.from_json(data, arrays)
        if kind == "coverage":
            from .coverage import CoverageResult

            return CoverageResult.from_json(data)
        if kind == "retrain":
            from .retraining import RetrainResult

            return RetrainResult.from_json(data)
        if kind == "robustness":
            from .robustness import RobustnessResult

            return RobustnessResult.from_json(data)
        from .comparison import CompareResult

        return CompareResult.from_json(data)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise OnnxFaultError(f"cannot read {path} as a {kind} result ({type(err).__name__}: {err}); write it again "
                             f"with `onnxfault {kind}`", parameter="path") from err


def _arrays(path: Path) -> dict:
    """Every array of the npz at ``path`` (no pickled objects)."""
    if not path.is_file():
        raise OnnxFaultError(f"{path} is missing: a saved result reads its arrays from it; keep it beside the JSON",
                             parameter="path")
    import numpy as np

    from .data.source import check_npz

    check_npz(path, "path")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise OnnxFaultError(f"cannot read {path} ({type(err).__name__}: {err})", parameter="path") from err


def run_inputs(data, options=None):
    """``data`` as ``(data, options, description)``: a ``synthesize --out`` folder, or its ``inputs.npz``, becomes
    its synthesized inputs labelled as their seeds (the model's inputs already: no preprocessing again, only the
    batch size of ``options``) described as "the synthesized inputs of RUN"; any other data is returned as it is,
    with no description."""
    folder = None
    if isinstance(data, (str, Path)):
        path = Path(data)
        folder = path if path.is_dir() else path.parent if path.name == "inputs.npz" else None
    if folder is None or not (folder / "report.json").is_file():
        return data, options, None
    from .data import DataOptions

    arrays = load(folder).arrays
    batch = (options or DataOptions()).batch_size
    return ((arrays["synthesized"], arrays["labels"]), DataOptions(batch_size=batch),
            f"the synthesized inputs of {folder}")
