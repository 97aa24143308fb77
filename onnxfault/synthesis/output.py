"""Writing a synthesis run: ``report.json``, ``inputs.npz``, ``samples.png`` (and ``report.html``), all or nothing."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import OnnxFaultError
from ..files import write_folder, write_json, write_npz, write_text
from ..report.images import as_images

COLUMNS = 10
MARKER = ".onnxfault-run"  # in every run folder: proof that onnxfault wrote it (and the run's id)
RUN_FILES = ("report.json", "inputs.npz", "samples.png", "report.html", MARKER)  # all a run folder may hold


def run_id_of(folder: Path) -> str | None:
    """The run id in ``folder``'s marker, or None when the folder has no valid marker (onnxfault did not write it)."""
    import json

    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    run_id = data.get("run_id") if isinstance(data, dict) else None
    return run_id if isinstance(run_id, str) and run_id else None


def check_out_dir(out: str | Path) -> Path:
    """The folder a run replaces as a whole: refused when it is a file, the current folder or above, not
    writable, or not empty and either without the marker an onnxfault run writes or holding anything a run does
    not write (so a user's own folder, or a file of theirs, is never deleted: ownership is proven by the marker,
    not by file names)."""
    out = Path(out)
    real = Path(os.path.realpath(out))  # a symlinked --out: the folder it points to is replaced
    if out.exists() and not out.is_dir():
        raise OnnxFaultError(f"`out` {out} is a file; give a folder")
    if real == Path.cwd().resolve() or real in Path.cwd().resolve().parents:
        raise OnnxFaultError(f"`out` {out} is the current folder or above it; give a folder for the run, e.g. `out` run1")
    if not os.access(real.parent, os.W_OK) or (real.is_dir() and not os.access(real, os.R_OK | os.W_OK)):
        raise OnnxFaultError(f"cannot write to `out` {out}: its folder is missing or not writable; choose another")
    held = sorted(p.name for p in real.iterdir()) if real.is_dir() else []
    foreign = [name for name in held if name not in RUN_FILES]
    if held and not foreign and run_id_of(real) is None:
        raise OnnxFaultError(f"`out` {out} holds {held[0]}{f' and {len(held) - 1} more' if len(held) > 1 else ''} "
                             f"but no {MARKER} marker, so onnxfault did not write it, and a run replaces the folder "
                             "as a whole; give a new or empty folder")
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise OnnxFaultError(f"`out` {out} holds {foreign[0]}{more}, not written by onnxfault, and a run replaces "
                             "the folder as a whole; give a new or empty folder")
    return real


def picture(original, synthesized, labels, before, after, clip, model_layout, sample_shape):
    """A grid of the first ``COLUMNS`` seeds: originals, synthesized inputs and their difference ×10 (grey = no
    change), with labels."""
    from PIL import Image, ImageDraw

    low, high = clip
    span = (high - low) or 1.0
    n = min(COLUMNS, len(original))  # only these are drawn: the others are never converted
    rows = [as_images(original[:n], model_layout, sample_shape), as_images(synthesized[:n], model_layout, sample_shape)]
    rows = [np.clip((r - low) / span, 0, 1) for r in rows]
    rows.append(np.clip(0.5 + 10 * (rows[1] - rows[0]), 0, 1))
    h, w = rows[0].shape[1:3]
    zoom = max(1, 84 // max(h, w))
    cell_w, cell_h, caption = w * zoom + 6, h * zoom + 6, 14
    sheet = Image.new("RGB", (92 + n * cell_w, 3 * (cell_h + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, row) in enumerate(zip(("original", "synthesized", "change x10"), rows)):
        top = r * (cell_h + caption)
        draw.text((4, top + caption + cell_h // 2 - 6), name, fill="black")
        for i in range(n):
            pixels = (row[i] * 255).round().astype(np.uint8)
            tile = Image.fromarray(pixels).resize((w * zoom, h * zoom), Image.NEAREST)
            left = 92 + i * cell_w
            sheet.paste(tile.convert("RGB"), (left + 3, top + caption + 3))
            text = {0: f"y={labels[i]} p={before[i]}", 1: f"p={after[i]}", 2: ""}[r]
            draw.text((left + 3, top + 1), text, fill="red" if r == 1 and after[i] != labels[i] else "black")
    return sheet


def write_run(out: Path, report: dict, arrays: dict[str, np.ndarray], sheet, page: str | None = None) -> str | None:
    """Write ``report.json``, ``inputs.npz``, ``samples.png`` (and ``report.html`` when ``page`` is given) and the
    run's marker into a staging folder beside ``out`` and swap it in whole; returns a note when an earlier run was
    replaced. The report, the arrays and the marker share the report's ``run_id`` (a new one when it has none), so
    a reader can tell they belong together."""
    import uuid

    real = check_out_dir(out)
    run_id = report.setdefault("run_id", uuid.uuid4().hex)

    def write(staging: Path) -> None:
        write_json(staging / "report.json", report)
        write_npz(staging / "inputs.npz", {**arrays, "run_id": np.array(run_id)})
        sheet.save(staging / "samples.png")
        if page is not None:
            write_text(staging / "report.html", page)
        write_json(staging / MARKER, {"run_id": run_id})

    if write_folder(real, write):
        return f"replaced the earlier run in {out} as a whole"
    return None


def waveform_picture(original, synthesized, labels, before, after, sample_rate):
    """``samples.png`` of waveforms: the report's waveform figure (waveforms and spectrograms) as an image."""
    import io

    from PIL import Image

    from ..report import figures

    captions = [(f"y={labels[i]} p={before[i]}", f"p={after[i]}", bool(after[i] != before[i])) for i in range(len(labels))]
    return Image.open(io.BytesIO(figures.png(figures.waveform_figure(original, synthesized, captions, sample_rate),
                                             tight=True)))


def save_result(result, out: str | Path, page: bool = False) -> str | None:
    """Write a :class:`~onnxfault.synthesis.SynthesisResult` into the folder ``out`` as ``synthesize --out`` does
    (with ``report.html`` when ``page``): see :func:`write_run`."""
    a = result.arrays
    if result.model_layout == "wave":
        sheet = waveform_picture(a["original"], a["synthesized"], a["labels"], a["predictions_before"],
                                 a["predictions_after"], result.report["input_layout"].get("sample_rate"))
    else:
        sheet = picture(a["original"], a["synthesized"], a["labels"], a["predictions_before"], a["predictions_after"],
                        result.clip, result.model_layout, result.sample_shape)
    html = None
    if page:
        from ..report import build_report, result_run

        html = build_report([result_run("synthesize", out, result.report, a)])
    import uuid

    result.report["run_id"] = uuid.uuid4().hex  # this saved run's: in report.json, inputs.npz and the marker
    return write_run(Path(out), result.report, a, sheet, html)
