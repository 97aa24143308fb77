"""``onnxfault report``: one self-contained HTML page for one or more evaluate, localize and synthesize runs.

Everything is inlined (PNG figures as data URIs, CSS in the page, no script), so the file opens in any
browser with no server and no network. :func:`build_report` is pure (runs → HTML text);
:func:`write_report` reads the runs and writes the page atomically; :func:`report` (also called as
``onnxfault.report(...)``) takes results in memory and saved ones alike.
"""
from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..errors import OnnxFaultError
from ..files import check_not_read, check_writable, json_safe, write_text
from . import html, sections
from .results import as_run, is_result, result_figure, result_html
from .runs import Run, files_read, number_runs, read_run, read_runs

__all__ = ["Report", "Run", "build_report", "write_report", "read_run", "read_runs", "report", "result_run",
           "result_figure", "result_html"]


def _parts(runs: list[Run], title: str | None) -> tuple[str, str, list[tuple[str, str, str]], str]:
    """Title, lede, non-empty (id, title, body) sections and footer of the page for numbered ``runs``."""
    kinds = [r.kind for r in runs]
    title = title or ("onnxfault report: " + ", ".join(r.name for r in runs[:4]) + (" …" if len(runs) > 4 else ""))
    lede = (f"{len(runs)} run{'s' if len(runs) > 1 else ''}: {kinds.count('localize')} localize, "
            f"{kinds.count('synthesize')} synthesize" + "".join(f", {kinds.count(k)} {k}" for k in
                                                               ("evaluate", "compare", "coverage", "retrain", "robustness") if k in kinds)
            + ".")
    parts = [("model-card", "Model card", sections.model_card(runs)),
             ("evaluation", "Evaluation", sections.evaluation(runs)),
             ("coverage", "Coverage", sections.coverage(runs)),
             ("retraining", "Retraining", sections.retraining(runs)),
             ("robustness", "Robustness", sections.robustness(runs)),
             ("model-comparison", "Model comparison", sections.comparison(runs)),
             ("suspiciousness", "Suspiciousness", sections.suspiciousness(runs)),
             ("synthesis", "Synthesis", sections.synthesis(runs)),
             ("trade-offs", "Trade-offs", sections.trade_offs(runs))]
    footer = (f"Made by onnxfault {__version__} on "
              f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from: "
              + "; ".join(f"{r.tag} {r.path}" for r in runs))
    return title, lede, [p for p in parts if p[2]], footer


def build_report(runs: list[Run], title: str | None = None) -> str:
    """The HTML page for ``runs`` (tagged R1, R2, … in order): model card, evaluation, suspiciousness,
    synthesis, trade-offs."""
    return html.page(*_parts(number_runs(runs), title))


def write_report(paths, out: str | Path, title: str | None = None) -> Path:
    """Read the runs at ``paths`` and write their page to ``out`` (all or nothing)."""
    check_writable(out, "-o")
    runs = read_runs(paths)
    check_not_read(out, "-o", [file for run in runs for file in files_read(run)])
    page = build_report(runs, title)
    return write_text(out, page)


def result_run(kind: str, path: str | Path, data: dict, arrays: dict | None = None, name: str | None = None) -> Run:
    """A run from results in memory: ``data`` is what localize writes to ``path`` (its --json file), with its
    ``arrays`` (``LocalizeResult.score_arrays()``, every score when ``data`` summarises its layers), what
    evaluate writes to ``path`` (its --json file), or a synthesis report with its ``arrays`` for ``path`` (its
    --out folder). ``name`` (default: from ``path``, as :func:`read_run` names the saved run) heads its part."""
    path = Path(path)
    name = name or (path.name if kind == "synthesize" else path.stem)
    return Run(kind, str(path), json_safe(data), arrays, name)


@dataclass(frozen=True)
class Report:
    """A report page: ``html`` is the whole document (``str(report)``), shown in a notebook as a fragment of
    the same markup; :meth:`save` writes the document."""

    html: str
    fragment: str
    runs: int

    def __str__(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<onnxfault Report: {self.runs} run{'s' if self.runs > 1 else ''}, {len(self.html):,} characters>"

    def _repr_html_(self) -> str:
        return self.fragment

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` (an .html file), atomically."""
        check_writable(path, "path")
        return write_text(path, self.html)


def report(runs, path: str | Path | None = None, title: str | None = None) -> Report:
    """The report page for ``runs``: results in memory (``LocalizeResult``, ``EvaluateResult``,
    ``SynthesisResult``, ``CompareResult``) and paths of saved ones (localize/evaluate/compare ``--json`` files,
    synthesize ``--out`` folders), mixed, tagged R1, R2, … in the order given; one result or path alone is fine. Writes the page to
    ``path`` when given. A saved result gives the same page as the result in memory, but for its name (the
    file's) and the footer's paths. Returns a :class:`Report` (``str()`` is the HTML)."""
    if is_result(runs) or isinstance(runs, (str, os.PathLike)):
        runs = [runs]
    try:
        items = list(runs)
    except TypeError:
        raise OnnxFaultError(f"runs: {type(runs).__name__} is not a list of results or paths") from None
    if not items:
        raise OnnxFaultError("runs is empty; give localize, evaluate or synthesize results or the paths of saved ones")
    if path is not None:
        check_writable(path, "path")
    numbered = number_runs([as_run(item) for item in items])
    title, lede, parts, footer = _parts(numbered, title)
    made = Report(html.page(title, lede, parts, footer),
                  html.fragment(html.content(title, lede, parts, footer, nav=False)), len(numbered))
    if path is not None:
        made.save(path)
    return made


class _CallableModule(types.ModuleType):
    """``onnxfault.report`` is this package and :func:`report` at once: ``onnxfault.report([...])`` builds a page,
    ``from onnxfault.report import build_report`` still works."""

    def __call__(self, runs, path: str | Path | None = None, title: str | None = None) -> Report:
        return report(runs, path, title)


sys.modules[__name__].__class__ = _CallableModule
