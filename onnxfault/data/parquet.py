"""Parquet files: a sample column (``x`` or ``image``) and a label column (``y`` or ``label``); or, for a model with
several inputs (token ids and an attention mask, …), the label column and one list column per input, named after
it, read as records with a field per column (:func:`~onnxfault.runtime.records`).

Samples are image bytes (PNG, JPEG, …: a binary column, or a struct with a ``bytes`` field as Hugging Face
datasets store images) or numeric arrays (a list column, nested once per axis, every row the same shape).
Labels are read whole (one number per sample); samples are streamed in record batches from the row group
that holds the first one wanted, so a shard starting deep in the file does not read what comes before.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import OnnxFaultError
from .source import MAX_SAMPLES, MAX_SAMPLE_ELEMENTS, Source, as_labels, guess_layout

SAMPLE_COLUMNS = ("x", "image")
LABEL_COLUMNS = ("y", "label")
MAGIC = b"PAR1"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise OnnxFaultError("reading Parquet needs pyarrow; install it with `pip install 'onnxfault[ray]'`") from None
    return pa, pq


def _column(names: list[str], wanted: tuple[str, ...], what: str, path: Path) -> str:
    found = [n for n in wanted if n in names]
    if not found:
        raise OnnxFaultError(f"{path} has columns {names}; it needs a {what} column named {' or '.join(wanted)}")
    return found[0]


def _image(data: bytes, where: str) -> np.ndarray:
    """Encoded image bytes as an (h, w) or (h, w, c) uint8 array, Pillow's decompression-bomb limit an error."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.mode not in ("L", "RGB", "RGBA"):
                    image = image.convert("RGB")
                return np.asarray(image)
    except Exception as err:  # Pillow's decoders raise many types for malformed bytes
        raise OnnxFaultError(f"cannot decode the image in {where}: {str(err).splitlines()[0] if str(err) else type(err).__name__}; "
                             "store PNG or JPEG bytes") from None


def _decoder(pa, kind, path: Path, column: str):
    """A function turning a column chunk into a (rows, …) numpy array, for the column's Arrow type."""
    where = f"column '{column}' of {path}"
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:  # {bytes, path}: datasets' Image
        inner = _decoder(pa, kind.field("bytes").type, path, column)
        return lambda chunk: inner(chunk.field("bytes"))
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        def images(chunk) -> np.ndarray:
            if chunk.null_count:
                raise OnnxFaultError(f"{where} has empty rows; every row needs an image")
            return np.stack([_image(v.as_py(), where) for v in chunk]) if len(chunk) else np.zeros((0,), np.uint8)
        return images
    depth, leaf = 0, kind
    while pa.types.is_list(leaf) or pa.types.is_large_list(leaf) or pa.types.is_fixed_size_list(leaf):
        depth, leaf = depth + 1, leaf.value_type
    if not depth or not (pa.types.is_integer(leaf) or pa.types.is_floating(leaf) or pa.types.is_boolean(leaf)):
        raise OnnxFaultError(f"{where} has type {kind}; store image bytes (PNG/JPEG) or lists of numbers")

    def arrays(chunk) -> np.ndarray:
        import pyarrow.compute as pc

        shape, values = [len(chunk)], chunk
        for _ in range(depth):
            if values.null_count:
                raise OnnxFaultError(f"{where} has empty rows; every row needs a sample")
            lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False) if len(values) else np.zeros(1, int)
            if lengths.min() != lengths.max():
                raise OnnxFaultError(f"{where} holds arrays of different shapes; every sample must have one shape")
            shape.append(int(lengths[0]))
            values = values.flatten()
        return values.to_numpy(zero_copy_only=False).reshape(shape)
    return arrays


def open_parquet(path: Path) -> Source:
    """Labels and the sample shape from ``path`` (the first sample decoded); samples streamed by batches."""
    pa, pq = _pyarrow()
    try:
        file = pq.ParquetFile(path)
        names = file.schema_arrow.names
        y_column = _column(names, LABEL_COLUMNS, "label", path)
        inputs = [n for n in names if n != y_column and n not in LABEL_COLUMNS]
        columns = [next(n for n in SAMPLE_COLUMNS if n in names)] if any(n in names for n in SAMPLE_COLUMNS) else inputs
        if not columns:
            _column(names, SAMPLE_COLUMNS, "sample", path)  # the error naming what is missing
        if file.metadata.num_rows > MAX_SAMPLES:
            raise OnnxFaultError(f"{path} holds {file.metadata.num_rows:,} samples, over onnxfault's limit of "
                                 f"{MAX_SAMPLES:,}; split it into smaller files")
        labels = as_labels(file.read(columns=[y_column]).column(0).to_numpy(zero_copy_only=False), str(path))
        decoders = [_decoder(pa, file.schema_arrow.field(c).type, path, c) for c in columns]
        head = next(file.iter_batches(batch_size=1, columns=columns)) if len(labels) else None
        first = _joined(columns, [d(head.column(i)) for i, d in enumerate(decoders)]) if head is not None else None
    except (OSError, pa.ArrowException) as err:
        raise OnnxFaultError(f"cannot read {path}: {str(err).splitlines()[0]}; the file is corrupt or not Parquet") from None
    if first is None:
        raise OnnxFaultError("the data set is empty; give a file with samples")
    sample_shape = tuple(first.shape[1:])
    if int(np.prod(sample_shape)) > MAX_SAMPLE_ELEMENTS:
        raise OnnxFaultError(f"samples in {path} have shape {sample_shape}, over onnxfault's limit of "
                             f"{MAX_SAMPLE_ELEMENTS:,} numbers per sample; resize them")
    group_rows = [file.metadata.row_group(i).num_rows for i in range(file.metadata.num_row_groups)]
    starts = np.cumsum([0] + group_rows)

    def chunks(rows: int, first_sample: int = 0) -> Iterator[np.ndarray]:
        group = int(np.searchsorted(starts, first_sample, side="right") - 1)
        if group >= len(group_rows):
            return
        skip = first_sample - int(starts[group])
        try:
            reader = pq.ParquetFile(path)
            for batch in reader.iter_batches(batch_size=rows, row_groups=range(group, len(group_rows)),
                                             columns=columns):
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                block = _joined(columns, [d(batch.column(i).slice(skip)) for i, d in enumerate(decoders)])
                skip = 0
                if block.shape[1:] != sample_shape or block.dtype != first.dtype:
                    raise OnnxFaultError(f"columns {', '.join(columns)} of {path} hold samples of shape "
                                         f"{block.shape[1:]} ({block.dtype}) besides {sample_shape} ({first.dtype}); "
                                         "every sample must have one shape")
                yield block
        except (OSError, pa.ArrowException) as err:
            raise OnnxFaultError(f"cannot read {path}: {str(err).splitlines()[0]}; the file is corrupt") from None

    layout = None if first.dtype.names else guess_layout(sample_shape)
    return Source(f"parquet {path.name}", labels, sample_shape, layout, first.dtype, chunks)


def _joined(columns: list[str], blocks: list[np.ndarray]) -> np.ndarray:
    """The sample column's block as it is, or one column per input as records (a field each)."""
    if len(columns) == 1 and columns[0] in SAMPLE_COLUMNS:
        return blocks[0]
    from ..runtime import records

    return records(dict(zip(columns, blocks)))
