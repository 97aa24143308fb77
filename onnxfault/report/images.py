"""Model inputs as pictures: the layout the report's sample figures and ``samples.png`` draw them in."""
from __future__ import annotations

import numpy as np


def as_images(x: np.ndarray, model_layout: str, sample_shape: tuple[int, ...]) -> np.ndarray:
    """Model inputs → (N, H, W) or (N, H, W, C) pictures; a vector is a 1-pixel-high strip, and a sample of
    more than three axes a grey (rest, last axis) picture."""
    if x.ndim > 4:
        return x.reshape(len(x), -1, x.shape[-1])
    if model_layout == "nchw" or (x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3)):
        x = x.transpose(0, 2, 3, 1)
    elif x.ndim == 2:
        shape = sample_shape if int(np.prod(sample_shape)) == x.shape[1] else (1, x.shape[1])
        x = x.reshape(len(x), *shape)
        if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
            x = x.transpose(0, 2, 3, 1)
    if x.ndim == 4:
        x = x[..., 0] if x.shape[-1] not in (1, 3) else (x[..., 0] if x.shape[-1] == 1 else x)
    return x[:, None, :] if x.ndim == 2 else x
