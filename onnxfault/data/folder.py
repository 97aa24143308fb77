"""A folder of per-class image folders (``root/<class>/*.png``), classes numbered in name order."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import OnnxFaultError
from .source import Source

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def is_image_folder(path: Path) -> bool:
    return path.is_dir() and any(p.is_dir() for p in path.iterdir())


def _load(file: Path, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            return np.asarray(image.convert(mode))
    except (OSError, UnidentifiedImageError) as err:
        raise OnnxFaultError(f"cannot read image {file}: {err}; remove or fix it") from err


def open_folder(path: Path) -> Source:
    classes = sorted(p for p in path.iterdir() if p.is_dir())
    files, labels = [], []
    for label, folder in enumerate(classes):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                files.append(file)
                labels.append(label)
    if not files:
        raise OnnxFaultError(f"no images found in the class folders of {path}; expected {path}/<class>/<image>.png")
    from PIL import Image

    with Image.open(files[0]) as first:
        grey = first.mode in ("1", "L", "I", "I;16", "F")
    mode = "L" if grey else "RGB"
    shape = _load(files[0], mode).shape

    def chunks(rows: int) -> Iterator[np.ndarray]:
        for start in range(0, len(files), rows):
            block = [_load(f, mode) for f in files[start:start + rows]]
            for f, image in zip(files[start:start + rows], block):
                if image.shape != shape:
                    raise OnnxFaultError(f"image {f} has size {image.shape}, unlike {files[0]} {shape}; "
                                         "resize all images to one size")
            yield np.stack(block)

    return Source(f"image folder {path.name} ({len(classes)} classes)", np.asarray(labels, np.int64),
                  tuple(shape), "hw" if grey else "hwc", np.dtype(np.uint8), chunks)
