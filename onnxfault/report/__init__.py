"""``onnxfault report``: one self-contained HTML page for one or more localize and synthesize runs.

Everything is inlined (PNG figures as data URIs, CSS in the page, no script), so the file opens in any
browser with no server and no network. :func:`build_report` is pure (runs → HTML text);
:func:`write_report` reads the runs and writes the page atomically.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..files import check_writable, json_safe, write_text
from . import html, sections
from .runs import Run, number_runs, read_run, read_runs

__all__ = ["Run", "build_report", "write_report", "read_run", "read_runs", "result_run"]


def build_report(runs: list[Run], title: str | None = None) -> str:
    """The HTML page for ``runs`` (tagged R1, R2, … in order): model card, suspiciousness, synthesis, trade-offs."""
    runs = number_runs(runs)
    kinds = [r.kind for r in runs]
    title = title or ("onnxfault report: " + ", ".join(r.name for r in runs[:4]) + (" …" if len(runs) > 4 else ""))
    lede = (f"{len(runs)} run{'s' if len(runs) > 1 else ''}: {kinds.count('localize')} localize, "
            f"{kinds.count('synthesize')} synthesize.")
    parts = [("model-card", "Model card", sections.model_card(runs)),
             ("suspiciousness", "Suspiciousness", sections.suspiciousness(runs)),
             ("synthesis", "Synthesis", sections.synthesis(runs)),
             ("trade-offs", "Trade-offs", sections.trade_offs(runs))]
    footer = (f"Made by onnxfault {__version__} on "
              f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from: "
              + "; ".join(f"{r.tag} {r.path}" for r in runs))
    return html.page(title, lede, [p for p in parts if p[2]], footer)


def write_report(paths, out: str | Path, title: str | None = None) -> Path:
    """Read the runs at ``paths`` and write their page to ``out`` (all or nothing)."""
    check_writable(out, "-o")
    page = build_report(read_runs(paths), title)
    return write_text(out, page)


def result_run(kind: str, path: str | Path, data: dict, arrays: dict | None = None) -> Run:
    """A run from results in memory: ``data`` is what localize writes to ``path`` (its --json file), with its
    ``arrays`` (``LocalizeResult.score_arrays()``, every score when ``data`` summarises its layers), or a
    synthesis report with its ``arrays`` for ``path`` (its --out folder)."""
    path = Path(path)
    return Run(kind, str(path), json_safe(data), arrays, path.name if kind == "synthesize" else path.stem)
