"""One result in memory on its own: its part of the report as an HTML fragment, and its lead figure.

A result (``LocalizeResult``, ``EvaluateResult``, ``SynthesisResult``) turns itself into a :class:`Run`
through its ``_report_run()``, as ``result_run`` builds one from what the CLI writes; so the fragment and
the figure are the ones the page draws from the result's saved files.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import OnnxFaultError
from ..files import json_safe
from ..model_forms import IN_MEMORY  # also a result's path on the page until it is saved
from . import html, sections
from .runs import Run, number_runs, read_run

_ACCEPTED = ("a LocalizeResult, EvaluateResult, SynthesisResult, CompareResult or CoverageResult, or the path "
             "of a localize/evaluate/compare/coverage --json file or a synthesize --out folder")


def memory_run(kind: str, data: dict, arrays: dict | None = None) -> Run:
    """A result in memory as a run: ``data`` and ``arrays`` as :func:`~onnxfault.report.result_run` takes them,
    the path :data:`IN_MEMORY`, named after its model file, or by its model's description when that model was
    never a file (e.g. "torch module Net (in memory)"), or by its kind."""
    model = str(data.get("model") or "")
    name = model if model.endswith(IN_MEMORY) else Path(model).stem or kind
    return Run(kind, IN_MEMORY, json_safe(data), arrays, name)


def is_result(item) -> bool:
    """Whether ``item`` is a result that can draw itself (has ``_report_run``)."""
    return callable(getattr(item, "_report_run", None))


def as_run(item, argument: str = "runs") -> Run:
    """A result in memory, or the path of a saved one, as a :class:`Run`."""
    if is_result(item):
        return item._report_run()
    if isinstance(item, (str, os.PathLike)):
        return read_run(Path(item))
    raise OnnxFaultError(f"{argument}: {type(item).__name__} is not a result; give {_ACCEPTED}")


def section_of(run: Run) -> str:
    """``run``'s part of the page: its evaluation, suspiciousness or synthesis section."""
    build = {"localize": sections.suspiciousness, "evaluate": sections.evaluation, "synthesize": sections.synthesis,
             "compare": sections.comparison, "coverage": sections.coverage, "retrain": sections.retraining,
             "robustness": sections.robustness}
    return build[run.kind]([run])


def result_html(result) -> str:
    """``result``'s section of the report as one self-contained fragment (scoped CSS, PNG data URIs, no
    script): what a notebook shows."""
    return html.fragment(section_of(number_runs([as_run(result, "result")])[0]))


def result_figure(result):
    """The matplotlib figure ``result``'s section leads with (see :func:`~onnxfault.report.sections.lead_figure`)."""
    return sections.lead_figure(number_runs([as_run(result, "result")])[0])
