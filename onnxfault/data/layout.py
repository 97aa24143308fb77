"""Fitting data samples to the model input: flatten, add/drop a channel axis, NHWC↔NCHW.

Data already shaped exactly like the (fully static) model input is used as is. Otherwise every
adaptation that turns the sample shape into the model's per-sample shape is a candidate; candidates with
the same effect count once, and exactly one must remain. ``--layout nchw|nhwc`` names the model input's
layout, and for samples whose own layout is unknown (3-D arrays from an .npz with no telling channel
axis) it states theirs too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import OnnxFaultError

MODEL_LAYOUTS = ("nchw", "nhwc")


@dataclass(frozen=True)
class Adaptation:
    """How a batch of samples becomes a batch of model inputs; ``model_layout`` names the result."""

    name: str
    model_layout: str  # flat, hw, nchw, nhwc, wave (waveforms), records (one field per input) or same
    apply: Callable[[np.ndarray], np.ndarray]


def _identity(x):
    return x


def _flatten(x):
    return x.reshape(len(x), -1)


_IDENTITY_LAYOUT = {"flat": "flat", "hw": "hw", "hwc": "nhwc", "chw": "nchw"}


def _candidates(layout: str, shape: tuple[int, ...]) -> list[Adaptation]:
    c_last, c_first = shape[-1], shape[0]
    table = {
        "hw": [Adaptation("flatten", "flat", _flatten),
               Adaptation("add a channel axis in front (NCHW)", "nchw", lambda x: x[:, None]),
               Adaptation("add a channel axis at the end (NHWC)", "nhwc", lambda x: x[..., None])],
        "hwc": [Adaptation("flatten", "flat", _flatten),
                Adaptation("NHWC → NCHW", "nchw", lambda x: x.transpose(0, 3, 1, 2))]
               + ([Adaptation("drop the channel axis", "hw", lambda x: x[..., 0])] if c_last == 1 else []),
        "chw": [Adaptation("flatten", "flat", _flatten),
                Adaptation("NCHW → NHWC", "nhwc", lambda x: x.transpose(0, 2, 3, 1))]
               + ([Adaptation("drop the channel axis", "hw", lambda x: x[:, 0])] if c_first == 1 else []),
    }
    return [as_is(layout), *table.get(layout, [])]


def as_is(layout: str | None) -> Adaptation:
    """The samples unchanged (declared ``layout``): what a data set not yet fitted to a model gives."""
    return Adaptation("as is", _IDENTITY_LAYOUT.get(layout, "same"), _identity)


def _fits(shape: tuple[int, ...], model_shape: tuple[int | None, ...]) -> bool:
    return len(shape) == len(model_shape) and all(m is None or m == s for s, m in zip(shape, model_shape))


def _fmt(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def plan_layout(sample_shape: tuple[int, ...], layout: str | None, model_shape: tuple[int | None, ...],
                choice: str | None = None) -> Adaptation:
    """The one adaptation from ``sample_shape`` (declared ``layout``) to ``model_shape``."""
    if choice is not None and choice not in MODEL_LAYOUTS:
        raise OnnxFaultError(f"unknown `layout` '{choice}'; use nchw or nhwc")
    if choice is None and None not in model_shape and tuple(sample_shape) == tuple(model_shape):
        return _candidates(layout, sample_shape)[0]
    if layout == "wave":
        return _fit_wave(sample_shape, model_shape)
    if layout:
        assumptions = [layout]
    elif len(sample_shape) == 3:
        assumptions = [{"nchw": "chw", "nhwc": "hwc"}[choice]] if choice else ["hwc", "chw"]
    else:
        assumptions = [None]
    probe = np.arange(int(np.prod(sample_shape)), dtype=np.int64).reshape((1, *sample_shape))
    distinct: list[tuple[Adaptation, np.ndarray]] = []
    for assumed in assumptions:
        for cand in _candidates(assumed, sample_shape):
            if choice and cand.model_layout in MODEL_LAYOUTS and cand.model_layout != choice:
                continue
            out = cand.apply(probe)
            if _fits(out.shape[1:], model_shape) and not any(np.array_equal(out, d) for _, d in distinct):
                distinct.append((cand, out))
    if len(distinct) == 1:
        return distinct[0][0]
    if not distinct:
        raise OnnxFaultError(f"data samples of shape {_fmt(sample_shape)} fit no layout of the model input "
                             f"{_fmt(model_shape)}; reshape the data"
                             + ("" if choice is None else " or try the other `layout`"))
    ways = "; ".join(c.name for c, _ in distinct)
    raise OnnxFaultError(f"data samples of shape {_fmt(sample_shape)} fit the model input {_fmt(model_shape)} "
                         f"in several ways ({ways}); choose with `layout` nchw|nhwc")


def _fit_wave(sample_shape: tuple[int, ...], model_shape: tuple[int | None, ...]) -> Adaptation:
    """Waveforms (N, L) for a model taking (T,) samples: cut to T, or zero-padded at the end to T (a dynamic T
    takes them as they are)."""
    if len(model_shape) != 1:
        raise OnnxFaultError(f"the data holds waveforms but the model input takes {_fmt(model_shape)} per sample; "
                             "a folder of sound files feeds models of (N, samples) waveforms")
    length = model_shape[0]
    if length is None or length == sample_shape[0]:
        return Adaptation("as is", "wave", _identity)

    def fit(x: np.ndarray) -> np.ndarray:
        if len(x[0]) >= length:
            return x[:, :length]
        return np.concatenate([x, np.zeros((len(x), length - x.shape[1]), x.dtype)], axis=1)

    verb = "cut" if sample_shape[0] > length else "zero-padded"
    return Adaptation(f"{verb} to {length} samples", "wave", fit)


def channel_axis_of(model_layout: str, ndim: int) -> int | None:
    """Batch-inclusive channel axis of adapted inputs, or None when there is no channel axis."""
    if model_layout == "nchw":
        return 1
    if model_layout == "nhwc":
        return ndim - 1
    return None


def plan_fields(dtype: np.dtype, inputs, raw: bool = False) -> Adaptation:
    """How records with fields ``dtype.names`` (one array per input, from an .npz's members or a dict) become a
    model's ``inputs`` (:class:`~onnxfault.model.ModelInput`): fields taken by input name, in the model's order,
    each of the input's per-sample shape (dynamic sizes take the data's) and of a type it takes (integers or bools
    for an integer input); uint8 fields of float inputs are scaled by 1/255 unless ``raw``, as images are."""
    fields = list(dtype.names)
    names = [i.name for i in inputs]
    missing = [n for n in names if n not in fields]
    if missing:
        raise OnnxFaultError(f"the data lacks model input '{missing[0]}'; it holds {', '.join(fields)} (give one "
                             f"array per model input: {', '.join(names)})")
    extra = [f for f in fields if f not in names]
    if extra:
        raise OnnxFaultError(f"the data holds '{extra[0]}', which is not an input of the model (inputs: "
                             f"{', '.join(names)}); remove it from the data or export the model with that input")
    scaled = []
    for spec in inputs:
        field = dtype[spec.name]
        shape, kind = field.shape, field.base.kind
        if not _fits(shape, spec.shape):
            raise OnnxFaultError(f"data array '{spec.name}' holds samples of shape {_fmt(shape)} but the model input "
                                 f"'{spec.name}' takes {_fmt(spec.shape)}; give it that shape")
        if not spec.is_float and kind not in "iub":
            raise OnnxFaultError(f"data array '{spec.name}' has type {field.base}, but model input '{spec.name}' "
                                 f"takes {spec.dtype} (integers); give whole numbers")
        if spec.is_float and kind == "u" and field.base.itemsize == 1 and not raw:
            scaled.append(spec.name)
    out = np.dtype([(n, np.float32 if n in scaled else dtype[n].base, dtype[n].shape) for n in names])
    if not scaled and names == fields:
        return Adaptation("as is", "records", _identity)

    def take(x: np.ndarray) -> np.ndarray:
        result = np.empty(len(x), out)
        for n in names:
            result[n] = x[n].astype(np.float32) / np.float32(255) if n in scaled else x[n]
        return result

    return Adaptation("one field per input" + (f" ({', '.join(scaled)} / 255)" if scaled else ""), "records", take)
