"""How samples as read become model inputs: float32, ``/ 255`` for uint8 data (unless raw), then per-channel
mean and std; the same steps run as numpy (``Dataset.batches``) and, prepended by graph surgery, in the model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import OnnxFaultError
from .options import DataOptions


@dataclass(frozen=True, eq=False)
class Preprocessing:
    """How samples as read become model inputs, in float32: ``x.astype(float32) / divisor``, then ``- mean`` and
    ``/ std`` (arrays that broadcast over a batch) when given. ``dtype`` is the samples' type as read."""

    dtype: np.dtype
    divisor: float = 1.0
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x`` (as read, any shape that broadcasts with mean/std) preprocessed, as a new float32 array."""
        x = x.astype(np.float32)
        if self.divisor != 1.0:
            x /= np.float32(self.divisor)  # x / 255 in float32, exactly as Keras/PyTorch pipelines do
        if self.mean is not None:
            x -= self.mean
            x /= self.std
        return x

    def extremes(self, low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
        """The least and greatest preprocessed value of samples whose values lie in ``low`` … ``high`` (per
        channel when they are shaped like mean/std). Exact: every step is monotonic in each channel (IEEE
        rounding keeps order), so the extremes of the result are the preprocessed extremes of the input."""
        ndim = max([1] + [v.ndim for v in (self.mean, self.std) if v is not None])
        low, high = (np.asarray(v, self.dtype) for v in (low, high))
        ends = np.concatenate([v.reshape((1,) * (ndim - v.ndim) + v.shape) for v in (low, high)])  # (2, …)
        if self.mean is not None:  # room for mean/std's channel axis, so that apply works in place
            ends = np.broadcast_to(ends, np.broadcast_shapes(ends.shape, self.mean.shape, self.std.shape))
        with np.errstate(over="ignore"):  # an overflow is what the callers look for
            values = self.apply(ends)
        return float(values.min()), float(values.max())


def normalizer(options: DataOptions, shape: tuple[int, ...], axis: int | None):
    """Per-channel mean/std arrays that broadcast over a batch (applied after scaling to [0,1])."""
    if options.mean is None and options.std is None:
        return None, None
    mean = np.asarray(options.mean if options.mean is not None else [0.0], np.float32)
    std = np.asarray(options.std if options.std is not None else [1.0], np.float32)
    if np.any(std == 0):
        raise OnnxFaultError("`std` must not contain 0")
    channels = max(len(mean), len(std))
    if channels > 1 and axis is None:
        raise OnnxFaultError("`mean`/`std` give several channels but the model input has no channel axis; "
                             "give one value each")
    if channels > 1 and (shape[axis] != channels or min(len(mean), len(std)) not in (1, channels)):
        raise OnnxFaultError(f"`mean`/`std` give {channels} values but the model input has {shape[axis]} "
                             "channels; give one value per channel (or a single value)")
    view = [1] * len(shape)
    if axis is not None and channels > 1:
        view[axis] = -1
    return (mean.reshape(view) if mean.size > 1 else mean), (std.reshape(view) if std.size > 1 else std)
