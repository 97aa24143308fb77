"""The arithmetic behind a report: metrics and their better direction, best values, suspicious neurons per
layer, and runs that differ in one parameter (trade-off series)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

# (JSON path, column title, better: "max" | "min", shown as a percentage)
METRICS = (
    (("accuracy_after",), "accuracy after", "min", True),
    (("loss_after",), "loss after", "max", False),
    (("success_rate",), "success rate", "max", True),
    (("target_rate",), "target rate", "max", True),
    (("distance", "l0", "mean"), "L0 mean", "min", False),
    (("distance", "l1", "mean"), "L1 mean", "min", False),
    (("distance", "l2", "mean"), "L2 mean", "min", False),
    (("distance", "linf", "mean"), "L∞ mean", "min", False),
    (("activation_increase",), "activation increase", "max", True),
    (("seconds",), "seconds", "min", False),
    (("peak_memory_mb",), "peak MB", "min", False),
    (("method_peak_memory_mb",), "method peak MB", "min", False),
)
# A text model's results (the projected token ids), shown in a run's own table.
TEXT_METRICS = (
    (("tokens_changed", "mean"), "tokens changed (mean)", "min", False),
    (("embedding", "success_rate"), "success rate in embedding space", "max", True),
)


def method_metrics() -> tuple:
    """The metrics each registered synthesis method declares (its ``metrics``), then a text model's: what a
    run's own table shows when its report holds them."""
    from ..synthesis.methods import METHODS

    declared = [metric for method in METHODS.values() for metric in method.metrics]
    return tuple(dict.fromkeys(declared)) + TEXT_METRICS


TRADE_PARAMETERS = ("k", "iterations", "epsilon", "distance", "step", "cut")
_NOT_GROUPING = {*TRADE_PARAMETERS, "neurons_file", "time_limit"}


def lookup(data: dict, path: tuple[str, ...]):
    """``data[path[0]][path[1]]…``, or None where a key is missing."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def best_flags(values: list, better: str | None, rtol: float = 1e-6) -> list[bool]:
    """Which of ``values`` (None = missing) equal the best one, to ``rtol`` (float noise is a tie).

    Nothing is marked with fewer than two values, or when all of them tie."""
    present = np.array([v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)], np.float64)
    if better is None or len(present) < 2:
        return [False] * len(values)
    best = present.max() if better == "max" else present.min()
    if np.allclose(present, best, rtol=rtol, atol=0):
        return [False] * len(values)
    return [v is not None and not isinstance(v, bool) and bool(np.isclose(v, best, rtol=rtol, atol=0))
            for v in values]


def effectiveness(report: dict) -> tuple[float | None, str]:
    """The rate a run is judged by: target rate when targeted, else success rate (seeds now misclassified)."""
    if report.get("params", {}).get("target") is not None:
        return report.get("target_rate"), "target rate"
    return report.get("success_rate"), "success rate"


def neurons_per_layer(neurons: list[dict], layers: list[str]) -> list[int]:
    """How many of ``neurons`` lie in each of ``layers`` (DeepFault Fig. 3)."""
    position = {name: i for i, name in enumerate(layers)}
    counts = np.zeros(len(layers), np.int64)
    for neuron in neurons:
        if neuron["tensor"] in position:
            counts[position[neuron["tensor"]]] += 1
    return counts.tolist()


def active_fractions(neurons: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron: the share of failing samples that activate it (af/F) and of passing ones (as/P)."""
    counts = np.array([[n["as"], n["af"], n["ns"], n["nf"]] for n in neurons], np.float64).reshape(-1, 4)
    failing, passing = counts[:, 1] + counts[:, 3], counts[:, 0] + counts[:, 2]
    af = np.divide(counts[:, 1], failing, out=np.zeros(len(counts)), where=failing > 0)
    as_ = np.divide(counts[:, 0], passing, out=np.zeros(len(counts)), where=passing > 0)
    return af, as_


def channel_maps(scores: np.ndarray, shape: list[int], channel_axis: int, top: list[int]
                 ) -> tuple[np.ndarray, dict[int, list[tuple[int, int]]]]:
    """Element scores of a (C, H, W) or (H, W, C) layer as (C, H, W) maps, and the (row, column) of each top
    neuron (flat ``top`` indices into ``shape``) per channel."""
    maps = np.moveaxis(np.asarray(scores).reshape(shape), channel_axis, 0)
    marks: dict[int, list[tuple[int, int]]] = {}
    for index in top:
        coords = [int(c) for c in np.unravel_index(index, shape)]
        channel = coords.pop(channel_axis)
        marks.setdefault(channel, []).append((coords[0], coords[1]))
    return maps, marks


def channels_to_show(maps: np.ndarray, marks: dict[int, list], limit: int) -> list[int]:
    """At most ``limit`` channels, in channel order: those holding top neurons, then the highest-scoring."""
    by_peak = np.argsort(-maps.reshape(len(maps), -1).max(axis=1), kind="stable").tolist()
    return sorted(list(dict.fromkeys([*sorted(marks), *by_peak]))[:limit])


@dataclass
class Series:
    """Runs of one method and setting that differ only in ``parameter``, in the parameter's order."""

    label: str
    parameter: str
    values: list
    seconds: list[float]
    effectiveness: list[float | None]
    measure: str  # what effectiveness is: success rate or target rate
    tags: list[str]


def _order(members: list[tuple[str, dict]], parameter: str) -> list[tuple[str, dict]]:
    """Numbers ascending; other values (a cut tensor) keep the order the runs were given in."""
    def key(item):
        position, (_, report) = item
        value = report["params"].get(parameter)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (0, value, position) if numeric else (1, 0, position)

    return [member for _, member in sorted(enumerate(members), key=key)]


def trade_off_series(reports: list[tuple[str, dict]]) -> list[Series]:
    """Group synthesis reports (tag, report) that share every setting but one of :data:`TRADE_PARAMETERS`.

    A group with at least two runs and exactly one varying parameter becomes a :class:`Series`."""
    groups: dict[str, list[tuple[str, dict]]] = {}
    for tag, report in reports:
        params = report.get("params", {})
        key = json.dumps([report.get("method"), report.get("model"), report.get("data"),
                          {k: v for k, v in params.items() if k not in _NOT_GROUPING}], sort_keys=True, default=str)
        groups.setdefault(key, []).append((tag, report))
    series = []
    for members in groups.values():
        if len(members) < 2:
            continue
        varying = [p for p in TRADE_PARAMETERS
                   if len({json.dumps(r["params"].get(p), default=str) for _, r in members}) > 1]
        if len(varying) != 1:
            continue
        parameter = varying[0]
        members = _order(members, parameter)
        rates = [effectiveness(r) for _, r in members]
        first = members[0][1]
        measure = first["params"].get("measure")
        series.append(Series(f"{first['method']}" + (f" ({measure})" if measure else ""), parameter,
                             [r["params"].get(parameter) for _, r in members], [r["seconds"] for _, r in members],
                             [rate for rate, _ in rates], rates[0][1], [t for t, _ in members]))
    return series
