"""A folder of per-class image folders (``root/<class>/*.png``); class folders of sound files
(``root/<class>/*.wav``) are read by :mod:`.audio`. Classes are numbered in the order of ``class_names``
(``--class-names``) or of ``root/classes.txt`` (one folder name per line) when one is given, else in numeric
order when every folder name is a number (``2`` before ``10``), else in name order."""
from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import OnnxFaultError, regular_file
from .source import Source

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError as err:
        raise OnnxFaultError(f"cannot list {folder}: {err.strerror or err}; check the folder and its permissions") from None


CLASS_LIST = "classes.txt"


def class_folders(path: Path, names: tuple[str, ...] | None = None) -> list[Path]:
    """The class folders of ``path`` in class order (see the module docstring)."""
    folders = [p for p in _entries(path) if p.is_dir()]
    listed = _class_list(path)
    if names is not None and listed is not None and tuple(listed) != tuple(names):
        raise OnnxFaultError(f"`class_names` and {path / CLASS_LIST} give different class orders; give one of them")
    names = names if names is not None else listed
    if names is not None:
        where = "`class_names`" if listed is None else str(path / CLASS_LIST)
        by_name = {p.name: p for p in folders}
        missing = [n for n in names if n not in by_name]
        unlisted = sorted(set(by_name) - set(names))
        if missing or unlisted or len(set(names)) != len(names):
            what = (f"names {missing[0]!r}, which is no folder of {path}" if missing else
                    f"does not name the folder {unlisted[0]!r}" if unlisted else "names a folder twice")
            raise OnnxFaultError(f"{where} {what}; list every class folder once, in class order")
        return [by_name[n] for n in names]
    if folders and all(p.name.isdigit() for p in folders):
        return sorted(folders, key=lambda p: (int(p.name), p.name))
    return folders


def _class_list(path: Path) -> list[str] | None:
    """The folder names ``root/classes.txt`` lists, or None when there is none."""
    listed = path / CLASS_LIST
    if not os.path.lexists(listed):
        return None
    try:
        info = os.stat(listed)
    except OSError as err:
        raise OnnxFaultError(f"cannot read {listed}: {err.strerror or err}; fix or remove it") from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > 1 << 20:
        raise OnnxFaultError(f"{listed} is not a list of class folder names (a regular text file, one per line)")
    return [line.strip() for line in listed.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def is_image_folder(path: Path) -> bool:
    return path.is_dir() and any(p.is_dir() for p in _entries(path))


def _open_image(file: Path, mode: str | None) -> np.ndarray | str:
    """The image at ``file`` converted to ``mode`` (None: just its mode), as Pillow reads it with its
    decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) turned into an error."""
    import warnings

    from PIL import Image

    _check_image_file(file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                return image.mode if mode is None else np.asarray(image.convert(mode))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise OnnxFaultError(f"image {file} has more than {Image.MAX_IMAGE_PIXELS:,} pixels (Pillow's decompression-bomb "
                             "limit, PIL.Image.MAX_IMAGE_PIXELS); resize it") from None
    except Exception as err:  # Pillow's decoders raise many types for a malformed file
        raise OnnxFaultError(f"cannot read image {file}: {str(err).splitlines()[0] if str(err) else type(err).__name__}; "
                             "remove or fix it") from None


def _check_image_file(file: Path) -> None:
    """Refuse, before opening, what is not a regular file: a folder named ``x.png``, a FIFO, a broken link."""
    regular_file(file, "remove, rename or fix it", what="an image file", verb="open image")


def open_folder(path: Path, sample_rate: int | None = None, class_names: tuple[str, ...] | None = None) -> Source:
    """The images (or sound files) of the class folders of ``path``; ``sample_rate``: see :mod:`.audio`;
    ``class_names``: the folders in class order."""
    from .audio import AUDIO_SUFFIXES, open_audio_folder

    classes = class_folders(path, class_names)
    names = tuple(p.name for p in classes)
    found: dict[str, tuple[list[Path], list[int]]] = {"image": ([], []), "sound": ([], [])}
    for label, folder in enumerate(classes):
        for file in _entries(folder):
            kind = "image" if file.suffix.lower() in IMAGE_SUFFIXES else \
                "sound" if file.suffix.lower() in AUDIO_SUFFIXES else None
            if kind:
                found[kind][0].append(file)
                found[kind][1].append(label)
    (files, labels), (sounds, sound_labels) = found["image"], found["sound"]
    if files and sounds:
        raise OnnxFaultError(f"the class folders of {path} hold both images ({files[0]}) and sound files "
                             f"({sounds[0]}); keep one kind of sample")
    if sounds:
        return replace(open_audio_folder(path, sounds, sound_labels, len(classes), sample_rate), class_names=names)
    if sample_rate is not None:
        raise OnnxFaultError("`sample_rate` applies to sound files; the data holds images, so leave it out")
    if not files:
        raise OnnxFaultError(f"no images or sound files found in the class folders of {path}; expected "
                             f"{path}/<class>/<image>.png or {path}/<class>/<sound>.wav")
    grey = _open_image(files[0], None) in ("1", "L", "I", "I;16", "F")
    mode = "L" if grey else "RGB"
    shape = _open_image(files[0], mode).shape

    def chunks(rows: int, first: int = 0) -> Iterator[np.ndarray]:
        for start in range(first, len(files), rows):
            block = [_open_image(f, mode) for f in files[start:start + rows]]
            for f, image in zip(files[start:start + rows], block):
                if image.shape != shape:
                    raise OnnxFaultError(f"image {f} has size {image.shape}, unlike {files[0]} {shape}; "
                                         "resize all images to one size")
            yield np.stack(block)

    return Source(f"image folder {path.name} ({len(classes)} classes)", np.asarray(labels, np.int64),
                  tuple(shape), "hw" if grey else "hwc", np.dtype(np.uint8), chunks, class_names=names)
