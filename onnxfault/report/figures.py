"""The report's plots, drawn with matplotlib's object API (Agg, no pyplot state) and returned as PNG bytes."""
from __future__ import annotations

import io

import numpy as np

from ..console import shown

WIDTH = 10.5  # inches; at DPI this fills the page's main column
DPI = 110
COLOURS = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#57606a", "#0a7d91", "#bf3989")


def _figure(height: float, width: float = WIDTH):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def png(fig, tight: bool = False) -> bytes:
    """The figure as PNG bytes (no software tag); ``tight`` crops it to what is drawn."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None}, bbox_inches="tight" if tight else None,
                pad_inches=0.05)
    return buffer.getvalue()


def label(name: str) -> str:
    """A user-supplied name as figure text: control characters escaped, ``$`` not read as mathtext."""
    return shown(name).replace("$", r"\$")


def short(name: str, limit: int = 28) -> str:
    name = label(name)
    return name if len(name) <= limit else name[:limit // 2 - 1] + "…" + name[-(limit // 2):]


def layer_distribution(layers: list[str], counts: dict[str, list[int]]) -> bytes:
    """:func:`layer_distribution_figure` as PNG bytes."""
    return png(layer_distribution_figure(layers, counts))


def layer_distribution_figure(layers: list[str], counts: dict[str, list[int]]):
    """Grouped bars: suspicious neurons per layer, one bar per series (measure), as DeepFault's Fig. 3."""
    fig = _figure(3.6)
    ax = fig.add_subplot()
    x = np.arange(len(layers))
    width = 0.8 / max(1, len(counts))
    for i, (name, values) in enumerate(counts.items()):
        ax.bar(x + (i - (len(counts) - 1) / 2) * width, values, width, label=label(name), color=COLOURS[i % len(COLOURS)])
    ax.set_xticks(x, [short(l, 18) for l in layers], rotation=30 if len(layers) > 6 else 0, ha="right"
                  if len(layers) > 6 else "center")
    ax.set_ylabel("suspicious neurons")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(frameon=False, ncols=min(4, len(counts)))
    return fig


def score_rows(rows: list[tuple[str, np.ndarray, list[int]]], measure: str) -> bytes:
    """A heatmap row per layer (neurons left to right), one colour scale; ▼ marks the top-k neurons."""
    fig = _figure(0.55 * len(rows) + 1.1)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    values = np.concatenate([scores for _, scores, _ in rows])
    low, high = float(values.min()), float(values.max())
    image = None
    for ax, (name, scores, top) in zip(axes, rows):
        image = ax.imshow(scores[None, :], aspect="auto", cmap="viridis", vmin=low, vmax=high,
                          interpolation="nearest", extent=(-0.5, len(scores) - 0.5, 0, 1))
        if top:
            ax.plot(top, [1.0] * len(top), "v", color="#cf222e", markersize=6, clip_on=False)
        ax.set_yticks([0.5], [f"{short(name)} ({len(scores)})"])
        ax.tick_params(axis="x", labelsize=8)
    axes[-1].set_xlabel("neuron index within the layer")
    fig.colorbar(image, ax=list(axes), label=measure, fraction=0.02, pad=0.01)
    return png(fig)


def _mosaic(tiles: np.ndarray, columns: int, gap: tuple[int, int], fill) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Tiles (N, H, W[, 3]) laid out ``columns`` wide with (row, column) gaps of ``fill``; their top-left corners."""
    n, h, w = tiles.shape[:3]
    rows = -(-n // columns)
    out = np.full((rows * (h + gap[0]) - gap[0], columns * (w + gap[1]) - gap[1], *tiles.shape[3:]), fill,
                  np.float64)
    corners = []
    for i in range(n):
        top, left = (i // columns) * (h + gap[0]), (i % columns) * (w + gap[1])
        out[top:top + h, left:left + w] = tiles[i]
        corners.append((top, left))
    return out, corners


def _image_figure(image: np.ndarray, width: float, top_margin: float, left_margin: float, **imshow):
    """A figure holding one image, ``width`` inches wide, with margins (fractions of the image) for labels."""
    rows, cols = image.shape[:2]
    height = width * (rows * (1 + top_margin)) / (cols * (1 + left_margin))
    fig = _figure(max(height, 0.8), width)
    fig.set_layout_engine(None)
    ax = fig.add_axes((left_margin / (1 + left_margin), 0, 1 / (1 + left_margin), 1 / (1 + top_margin)))
    shown = ax.imshow(image, interpolation="nearest", aspect="equal", **imshow)
    ax.set_axis_off()
    return fig, ax, shown


def channel_grids(maps: np.ndarray, channels: list[int], tops: dict[int, list[tuple[int, int]]], measure: str,
                  low: float, high: float) -> bytes:
    """One small heatmap per channel of a conv layer (element granularity); red circles mark top-k neurons."""
    columns = min(8, len(channels))
    h, w = maps.shape[1:]
    gap = (max(2, round(h * 0.3)), max(1, round(w * 0.12)))
    image, corners = _mosaic(maps[channels], columns, gap, np.nan)
    fig, ax, shown = _image_figure(np.ma.masked_invalid(image), min(WIDTH, 1.25 * columns + 1.0), 0.04, 0.0,
                                   cmap="viridis", vmin=low, vmax=high)
    for c, (top, left) in zip(channels, corners):
        ax.text(left + w / 2, top - 0.5, f"channel {c}", ha="center", va="bottom", fontsize=8)
        for row, col in tops.get(c, []):
            ax.plot(left + col, top + row, "o", markerfacecolor="none", markeredgecolor="#cf222e", markersize=7)
    fig.colorbar(shown, ax=ax, label=measure, fraction=0.025, pad=0.01)
    return png(fig, tight=True)


def spectrum_bars(names: list[str], failing: np.ndarray, passing: np.ndarray) -> bytes:
    """Per top neuron: how often it is active on failing (af/F) and on passing (as/P) samples."""
    fig = _figure(0.32 * len(names) + 1.0)
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y - 0.2, failing, 0.4, label="active on failing samples (af / F)", color=COLOURS[1])
    ax.barh(y + 0.2, passing, 0.4, label="active on passing samples (as / P)", color=COLOURS[0])
    ax.set_yticks(y, [label(n) for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of samples")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(frameon=False, loc="outside upper center", ncols=2, fontsize=8)
    return png(fig)


def sample_grid(original: np.ndarray, synthesized: np.ndarray, captions: list[tuple[str, str, bool]],
                clip: tuple[float, float]) -> bytes:
    """:func:`sample_grid_figure` as PNG bytes, cropped to what is drawn."""
    return png(sample_grid_figure(original, synthesized, captions, clip), tight=True)


def sample_grid_figure(original: np.ndarray, synthesized: np.ndarray, captions: list[tuple[str, str, bool]],
                       clip: tuple[float, float]):
    """Rows: originals, synthesized inputs, and their difference ×10 (white = unchanged; red up, blue down).

    Images are (N, H, W) or (N, H, W, 3); ``captions`` per column: (original's, synthesized's, changed)."""
    from matplotlib import colormaps

    low, high = clip
    span = (high - low) or 1.0
    n, h, w = original.shape[:3]

    def rgb(images: np.ndarray, cmap: str = "gray") -> np.ndarray:
        images = np.clip(images, 0, 1)
        return images if images.ndim == 4 else colormaps[cmap](images)[..., :3]

    rows = [rgb((original - low) / span), rgb((synthesized - low) / span),
            rgb(0.5 + 10 * (synthesized - original) / span, "RdBu_r")]
    gap = (max(3, round(h * 0.32)), max(1, round(w * 0.1)))
    image, corners = _mosaic(np.concatenate(rows), n, gap, 1.0)
    fig, ax, _ = _image_figure(image, min(WIDTH, 1.0 * n + 1.0), 0.08, 0.06)
    from matplotlib.patches import Rectangle

    for i, (top, left) in enumerate(corners):
        row, col = divmod(i, n)
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, edgecolor="#8c959f", linewidth=0.6))
        if row == 2:
            continue
        first, second, changed = captions[col]
        ax.text(left + w / 2, top - 0.8, first if row == 0 else second, ha="center", va="bottom", fontsize=8,
                color="#cf222e" if row == 1 and changed else "black",
                fontweight="bold" if row == 1 and changed else "normal")
    for row, name in enumerate(("original", "synthesized", "change ×10")):
        ax.text(-1.5, row * (h + gap[0]) + h / 2, name, rotation=90, ha="right", va="center", fontsize=9)
    return fig


WAVE_COLUMNS = 4  # seeds drawn side by side as waveforms and spectrograms


def waveform_figure(original: np.ndarray, synthesized: np.ndarray, captions: list[tuple[str, str, bool]],
                    sample_rate: int | None = None):
    """Waveforms (N, T) of the first :data:`WAVE_COLUMNS` seeds, a column each. Rows: the original (grey) with the
    synthesized waveform over it (blue), the change (on its own scale), then the spectrograms (dB, Hann windows) of
    the original, the synthesized waveform and the change. ``captions`` as for :func:`sample_grid_figure`."""
    from scipy.signal import spectrogram

    n = min(WAVE_COLUMNS, len(original))
    rate = sample_rate or 1
    seconds = np.arange(original.shape[1]) / rate
    rows = ("waveform", "change", "original", "synthesized", "change")
    fig = _figure(7.2, min(WIDTH, 2.2 * n + 0.8))
    axes = np.asarray(fig.subplots(len(rows), n, squeeze=False))
    window = min(256, original.shape[1])
    for col in range(n):
        first, second, changed = captions[col]
        change = synthesized[col] - original[col]
        top = axes[0, col]
        top.plot(seconds, original[col], color="#8c959f", linewidth=0.6)
        top.plot(seconds, synthesized[col], color="#0969da", linewidth=0.5, alpha=0.8)
        top.set_title(f"{first}  →  {second}", fontsize=8, color="#cf222e" if changed else "black",
                      fontweight="bold" if changed else "normal")
        axes[1, col].plot(seconds, change, color="#cf222e", linewidth=0.5)
        for row, wave in zip(range(2, 5), (original[col], synthesized[col], change)):
            freqs, times, power = spectrogram(wave.astype(np.float64), fs=rate, nperseg=window,
                                              noverlap=window // 2)
            axes[row, col].pcolormesh(times, freqs, 10 * np.log10(power + 1e-12), shading="auto", cmap="magma")
    for row, name in enumerate(rows):
        axes[row, 0].set_ylabel(name if row < 2 else f"{name}\n{'Hz' if sample_rate else 'cycles/sample'}",
                                fontsize=8)
        for ax in axes[row]:
            ax.tick_params(labelsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("seconds" if sample_rate else "samples", fontsize=7)
    return fig


def confusion_figure(confusion: np.ndarray, annotate_up_to: int = 12):
    """The confusion matrix as a heatmap of each true class's shares (rows add up to 1), with the counts
    written in the cells up to ``annotate_up_to`` classes."""
    n = len(confusion)
    side = min(WIDTH * 0.62, 0.42 * n + 1.6)
    fig = _figure(side, side + 1.0)
    ax = fig.add_subplot()
    totals = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    if n <= annotate_up_to:
        for (true, predicted), count in np.ndenumerate(confusion):
            if count:
                ax.text(predicted, true, str(count), ha="center", va="center", fontsize=8,
                        color="white" if share[true, predicted] > 0.5 else "black")
    ticks = np.arange(n) if n <= 30 else np.linspace(0, n - 1, 11).round().astype(int)
    ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=8)
    ax.set_yticks(ticks, [str(t) for t in ticks], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, label="share of the true class's samples", fraction=0.04, pad=0.02)
    return fig


def class_accuracy_figure(accuracy: np.ndarray):
    """Accuracy per class as bars (classes without samples left empty), for too many classes for a matrix."""
    fig = _figure(3.4)
    ax = fig.add_subplot()
    shown = np.nan_to_num(accuracy, nan=0.0)
    ax.bar(np.arange(len(accuracy)), shown, 1.0 if len(accuracy) > 60 else 0.8, color=COLOURS[0])
    ax.set_xlim(-0.5, len(accuracy) - 0.5)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("class")
    ax.set_ylabel("accuracy")
    ax.grid(axis="y", alpha=0.3)
    return fig


def trade_off(series, parameter: str, ylabel: str) -> bytes:
    """Two panels, a line per series: effectiveness against the parameter, and against seconds (each point
    labelled with its parameter value). Non-numeric values (a cut tensor) are placed in the runs' order."""
    fig = _figure(3.8)
    by_value, by_time = fig.subplots(1, 2)
    for i, s in enumerate(series):
        points = [(t, e, v) for t, e, v in zip(s.seconds, s.effectiveness, s.values) if e is not None]
        if not points:
            continue
        seconds, rates, values = zip(*points)
        colour = COLOURS[i % len(COLOURS)]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        by_value.plot(values if numeric else [str(v) for v in values], rates, "o-", color=colour, label=label(s.label))
        by_time.plot(seconds, rates, "o", color=colour, label=label(s.label))
        for t, e, v in points:
            by_time.annotate(f"{parameter}={v}", (t, e), textcoords="offset points", xytext=(4, 4), fontsize=8)
    by_value.set_xlabel(parameter)
    by_time.set_xlabel("seconds")
    for ax in (by_value, by_time):
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
    by_value.legend(frameon=False, fontsize=8)
    return png(fig)


def comparison_figure(layers: list[tuple[str, float]], measures: list[tuple[str, float]]):
    """Two panels of a model comparison: per paired layer the share of neurons whose four counts are identical,
    and per measure the share of model A's top-k neurons in model B's."""
    fig = _figure(3.2)
    left, right = fig.subplots(1, 2, width_ratios=[max(2, len(layers)), max(2, len(measures))])
    for ax, items, colour, ylabel in ((left, layers, COLOURS[0], "identical counts"),
                                      (right, measures, COLOURS[2], "top-k shared")):
        x = np.arange(len(items))
        ax.bar(x, [v for _, v in items], 0.7, color=colour)
        ax.set_xticks(x, [short(n, 18) for n, _ in items], rotation=30 if len(items) > 6 else 0,
                      ha="right" if len(items) > 6 else "center")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    left.set_title("spectra per paired layer", fontsize=10)
    right.set_title("rankings per measure", fontsize=10)
    return fig


def coverage_figure(criteria: list[str], layers: list[tuple[str, list[float]]],
                    total: list[float], with_inputs: list[float] | None = None):
    """Coverage per criterion: a group of bars per layer and one for the whole net (and, with inputs, the whole
    net with them)."""
    groups = [*layers, ("all layers", total)] + ([("all + inputs", with_inputs)] if with_inputs is not None else [])
    fig = _figure(3.4)
    ax = fig.subplots()
    x = np.arange(len(groups))
    width = 0.8 / max(len(criteria), 1)
    for i, criterion in enumerate(criteria):
        ax.bar(x + (i - (len(criteria) - 1) / 2) * width, [values[i] for _, values in groups], width,
               color=COLOURS[i % len(COLOURS)], label=criterion)
    ax.set_xticks(x, [short(n, 18) for n, _ in groups], rotation=30 if len(groups) > 6 else 0,
                  ha="right" if len(groups) > 6 else "center")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("coverage")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=len(criteria))
    return fig
