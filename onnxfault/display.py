"""How results look in a terminal: the lines and rich tables the CLI prints, which a result also shows in a
REPL (its ``__rich__``). Every text from a result goes in as :class:`rich.text.Text`, so any console prints
it as given (no markup read from a tensor name, control characters escaped)."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .console import shown

WORST_SHOWN = 20  # evaluate's table shows this many worst classes when there are more classes


def _text(value) -> Text:
    return Text(shown(value))


# ---- localize ---------------------------------------------------------------------------------------
def ranking_line(info: dict) -> str:
    """The summary line of a ``localize --json`` dict: samples, failing, accuracy, neurons and layers."""
    failing = {"all": "misclassified", "class": f"of class {info['class']} misclassified",
               "target": f"predicted as target {info['target']}"}[info["mode"]]
    return (f"{info['samples']} samples, {info['failing']} {failing}, accuracy "
            f"{100 * info['accuracy']:.2f} %; {sum(l['neurons'] for l in info['layers'])} neurons in "
            f"{len(info['layers'])} layers ({info['granularity']})")


def ranking_table(info: dict) -> Table:
    """The top-k table of a ``localize --json`` dict: rank, tensor, index, score (6 significant digits) and
    the neuron's counts."""
    table = Table(title=f"top {len(info['neurons'])} by {info['measure']}")
    for column in ("rank", "tensor", "index", "score", "as", "af", "ns", "nf"):
        table.add_column(column, justify="left" if column == "tensor" else "right", overflow="fold",
                         no_wrap=column != "tensor")
    for n in info["neurons"]:
        table.add_row(str(n["rank"]), _text(n["tensor"]), str(n["index"]), f"{n['score']:.6g}",
                      *(str(n[c]) for c in ("as", "af", "ns", "nf")))
    return table


def localize_view(info: dict) -> Group:
    """A localize result in a REPL: its summary line over its top-k table."""
    return Group(_text(ranking_line(info)), ranking_table(info))


# ---- evaluate ---------------------------------------------------------------------------------------
def accuracy_line(result, on: str) -> str:
    """``accuracy 98.75 % (1975/2000) on`` ``on`` (the data's description) of an ``EvaluateResult``."""
    return f"accuracy {100 * result.accuracy:.2f} % ({result.correct}/{result.samples}) on {on}"


def per_class_table(result, all_classes: bool = False) -> Table:
    """Samples, correct and accuracy per class of an ``EvaluateResult``: the :data:`WORST_SHOWN` worst classes
    when there are more, unless ``all_classes``."""
    rows, title = result.per_class(), "per class"
    if len(rows) > WORST_SHOWN and not all_classes:
        rows = result.worst_classes(WORST_SHOWN)
        title = f"the {len(rows)} worst of {len(result.confusion)} classes (all: --all-classes)"
    table = Table(title=title)
    for column in ("class", "samples", "correct", "accuracy"):
        table.add_column(column, justify="right")
    for row in rows:
        acc = "-" if row["accuracy"] is None else f"{100 * row['accuracy']:.2f} %"
        table.add_row(str(row["class"]), str(row["samples"]), str(row["correct"]), acc)
    return table


def evaluation_view(result) -> Group:
    """An ``EvaluateResult`` in a REPL: its accuracy line over its per-class table."""
    return Group(_text(accuracy_line(result, result.data)), per_class_table(result))


# ---- synthesize -------------------------------------------------------------------------------------
def synthesis_lines(r: dict, wrote=None) -> list[str]:
    """The summary lines of a synthesis report: rates, distance and time (``; wrote FOLDER/`` when ``wrote``
    is given), then the method's own lines (its ``summary_lines``), and a text model's tokens, when the report
    has them."""
    lines = [f"{r['method']}: {r['seeds']['count']} seeds, accuracy {100 * r['accuracy_before']:.1f} % → "
             f"{100 * r['accuracy_after']:.1f} %, success {100 * r['success_rate']:.1f} %"
             + ("" if r["target_rate"] is None else f", target rate {100 * r['target_rate']:.1f} %")
             + f", L∞ mean {r['distance']['linf']['mean']:.4g}"
             + ("" if r["activation_increase"] is None
                else f", activation increase {100 * r['activation_increase']:.1f} %")
             + f", {r['seconds']:.2f} s" + ("" if wrote is None else f"; wrote {wrote}/")]
    lines += _method_lines(r)
    if "tokens_changed" in r:  # a text model: the rates above are the projected token ids'
        embedding = r["embedding"]
        lines.append(f"tokens changed mean {r['tokens_changed']['mean']:.2f} (max {r['tokens_changed']['max']}); "
                     f"in embedding space before projection: accuracy {100 * embedding['accuracy_after']:.1f} %, "
                     f"success {100 * embedding['success_rate']:.1f} % (L∞ is in embedding space)")
    return lines


def _method_lines(r: dict) -> list[str]:
    """The registered method's own summary lines for report ``r`` (none for a method not registered here)."""
    from .synthesis.methods import METHODS

    method = r.get("method")
    return METHODS[method].summary_lines(r) if isinstance(method, str) and method in METHODS else []


def metrics_table(r: dict) -> Table:
    """The metrics of a synthesis report that it holds, as the report's metrics table lists them."""
    from .report.compare import METRICS, lookup, method_metrics

    table = Table(title=f"{r['method']} metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for path, name, _, percent in METRICS + method_metrics():
        value = lookup(r, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            table.add_row(name, f"{100 * value:.2f} %" if percent else str(value) if isinstance(value, int)
                          else f"{value:.4g}")
    return table


def synthesis_view(r: dict) -> Group:
    """A synthesis report in a REPL: its summary lines over its metrics table."""
    return Group(*(_text(line) for line in synthesis_lines(r)), metrics_table(r))
