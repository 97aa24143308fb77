"""onnxfault: spectrum-based fault localization (DeepFault) for any ONNX classifier.

The public API mirrors the CLI: :func:`inspect_model`, :func:`evaluate`, :func:`localize`,
:func:`synthesize` and :func:`write_report`, plus :func:`compare`, :func:`coverage` and the building blocks :func:`load_model`,
:func:`as_model`, :func:`open_dataset`, :class:`Dataset`, :func:`hit_spectrum` and the measure registry. Models and
data may be files or objects in memory (a ModelProto, a torch module, a Keras model; arrays, a DataLoader).
Results are typed (their headline numbers are attributes) and show themselves in a notebook and a REPL,
``plot()`` and ``save()``; every saved file records its ``kind`` and ``format_version``, and :func:`load` reads
any of them back. ``onnxfault.report([...])`` makes the report page from results and saved files. Errors are
:class:`OnnxFaultError` (naming the parameter), notes are :class:`OnnxFaultWarning` warnings. ``ray=`` (:class:`onnxfault.distributed.RayOptions`) runs the
passes over the data on Ray. Names are imported lazily so that ``onnxfault --help`` stays instant.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "OnnxFaultError": "errors", "OnnxFaultWarning": "errors",
    "load": "results",
    "load_model": "model", "as_model": "model", "Model": "model", "Layer": "model",
    "DataOptions": "data", "Dataset": "data", "open_dataset": "data",
    "Outcome": "spectrum", "Spectrum": "spectrum", "hit_spectrum": "spectrum",
    "MEASURES": "measures", "get_measure": "measures", "score": "measures",
    "localize": "localization", "LocalizeResult": "localization", "SuspiciousNeuron": "localization",
    "evaluate": "evaluation", "EvaluateResult": "evaluation",
    "inspect_model": "inspection",
    "expose_outputs": "graph", "cut_at": "graph",
    "synthesize": "synthesis", "SynthesisResult": "synthesis", "METHODS": "synthesis", "Method": "synthesis",
    "register_method": "synthesis",
    "compare": "comparison", "CompareResult": "comparison",
    "coverage": "coverage", "CoverageResult": "coverage", "retrain": "retraining", "RetrainResult": "retraining",
    "robustness": "robustness", "RobustnessResult": "robustness",
    "build_report": "report", "write_report": "report", "report": "report", "Report": "report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return module if name == _EXPORTS[name] else getattr(module, name)  # report, coverage: callable modules
    raise AttributeError(f"module 'onnxfault' has no attribute '{name}'")


def __dir__() -> list[str]:
    """The public names (imported when first used), for tab completion."""
    return sorted({*__all__, "__version__"})
