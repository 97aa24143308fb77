"""Where a result came from: the command line, package versions and the model's inputs and outputs.

Written into every ``localize --json`` file and ``synthesize`` report so that a report page can show
its model card without the model or the machine at hand.
"""
from __future__ import annotations

import platform
import shlex
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata

_PACKAGES = ("onnxfault", "onnx", "onnxruntime", "onnxruntime-gpu", "onnx-graphsurgeon", "numpy", "torch")


def command_line(argv: list[str] | None = None) -> str:
    """The CLI call as a shell line, with the program shown as ``onnxfault``."""
    argv = sys.argv if argv is None else argv
    return shlex.join(["onnxfault", *argv[1:]])


def versions() -> dict[str, str]:
    """Python and the installed versions of the packages a result depends on (absent ones left out)."""
    return dict(_versions())


@lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: reading package metadata costs about a millisecond per call."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return tuple(found.items())


def model_io(model) -> dict:
    """A :class:`~onnxfault.model.Model`'s opset, input and output (as ``inspect`` and a report's model card
    show them)."""
    several = len(model.inputs) > 1 or any(not i.is_float for i in model.inputs)
    return {"opset": model.opset, "input": {"name": model.input_name, "shape": ["N", *model.input_shape]},
            **({"inputs": [i.to_json() for i in model.inputs]} if several else {}),
            "output": {"name": model.declared_output or model.output_name, "classes": model.num_classes}}


def stamp(model, command: str | None = None) -> dict:
    """The provenance keys of a result file: ``command``, ``created``, ``versions``, ``platform``, ``model_io``."""
    return {"command": command, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(), "platform": f"{platform.system()} {platform.machine()}",
            "model_io": model_io(model)}
