"""Which reader opens a data path: chosen by content (IDX, .npz, Parquet, CIFAR batch) or by what a folder holds
(class folders of images, .npz shards)."""
from __future__ import annotations

import stat
from pathlib import Path

from ..errors import OnnxFaultError
from .cifar import is_pickle, open_cifar
from .folder import is_image_folder, open_folder
from .idx import is_idx, open_idx
from .npz import open_npz
from .parquet import MAGIC as PARQUET_MAGIC, open_parquet
from .shards import is_shard_folder, open_shards
from .source import READ_ERRORS, Source, check_input_path


def open_source(path: str | Path, labels: str | Path | None = None, sample_rate: int | None = None,
                text=None, class_names: tuple[str, ...] | None = None) -> Source:
    """Pick the reader by content: IDX (raw or gzip), .npz, Parquet, CIFAR pickle batch, a folder of class folders
    (images, or sound files at ``sample_rate``, in the order of ``class_names``) or a folder of .npz shards; with
    ``text`` (a :class:`~onnxfault.data.text.TextOptions`), texts in a .csv, .jsonl or Parquet file."""
    path = Path(path)
    info = check_input_path(path)
    if class_names is not None and not (stat.S_ISDIR(info.st_mode) and is_image_folder(path)):
        raise OnnxFaultError(f"`class_names` orders class folders (root/<class>/…), and {path} holds none; "
                             "leave it out")
    if text is not None:
        from .text import TEXT_SUFFIXES, open_text

        if stat.S_ISDIR(info.st_mode) or path.suffix.lower() not in TEXT_SUFFIXES:
            raise OnnxFaultError(f"`tokenizer` reads texts from a .csv, .jsonl or .parquet file, not {path}; leave it "
                                 "out for other data")
        return open_text(path, text)
    if path.suffix.lower() in (".csv", ".jsonl"):
        raise OnnxFaultError(f"{path} holds texts: give `tokenizer` tokenizer.json (and `text_column`, "
                             "`label_column` when they are not 'text' and 'label')")
    if stat.S_ISDIR(info.st_mode):
        if is_image_folder(path):
            return open_folder(path, sample_rate, class_names)
        if is_shard_folder(path):
            return open_shards(path)
        raise OnnxFaultError(f"{path} is a folder without class sub-folders or .npz shards; give a data file, "
                             "root/<class>/ images or a folder of .npz shards")
    if sample_rate is not None:
        raise OnnxFaultError("`sample_rate` applies to a folder of sound files (root/<class>/*.wav); leave it out")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head[:2] == b"\x1f\x8b":
            import gzip

            with gzip.open(path, "rb") as fh:
                head = fh.read(4)
    except READ_ERRORS as err:
        raise OnnxFaultError(f"cannot read data file {path}: {err}; check that it is readable and not corrupt") from err
    if is_idx(head):
        return open_idx(path, Path(labels) if labels else None)
    if head[:2] == b"PK":
        return open_npz(path)
    if is_pickle(head):
        return open_cifar(path)
    if head == PARQUET_MAGIC:
        return open_parquet(path)
    raise OnnxFaultError(f"{path}: unknown data format; give IDX (*-ubyte[.gz]), .npz with x and y, "
                         "Parquet with x/image and y/label columns, a CIFAR python batch, a folder of class "
                         "folders or a folder of .npz shards")
