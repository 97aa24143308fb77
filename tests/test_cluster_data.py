"""Data as it lives on a cluster: a folder of .npz shards and Parquet files (image bytes or arrays), read as
the same samples as one .npz, from any first sample (shards of a data set start deep inside them)."""
from __future__ import annotations

import io

import numpy as np
import pytest

from onnxfault.data import DataOptions, open_dataset
from onnxfault.errors import OnnxFaultError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SHAPE = (1, 28, 28)  # LeNet's input


@pytest.fixture(scope="module")
def sample():
    from pathlib import Path

    data = np.load(Path(__file__).resolve().parents[1] / "examples" / "mnist_sample.npz")
    return data["x"][:600], data["y"][:600]


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(a).save(out, format="PNG")
    return out.getvalue()


def _arrays(x: np.ndarray):
    rows = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[2])
    return pa.ListArray.from_arrays(np.arange(0, len(rows) + 1, x.shape[1], dtype=np.int32), rows)


@pytest.fixture(scope="module")
def stores(sample, tmp_path_factory):
    x, y = sample
    root = tmp_path_factory.mktemp("stores")
    np.savez(root / "one.npz", x=x, y=y)
    (root / "shards").mkdir()
    for i, start in enumerate(range(0, len(x), 250)):  # 250, 250, 100
        np.savez_compressed(root / "shards" / f"part-{i}.npz", x=x[start:start + 250], y=y[start:start + 250])
    (root / "shards" / "README.txt").write_text("not a shard")  # other files are ignored
    pq.write_table(pa.table({"image": [_png(a) for a in x], "label": y}), root / "png.parquet", row_group_size=170)
    pq.write_table(pa.table({"x": _arrays(x), "y": y}), root / "arrays.parquet", row_group_size=90)
    hf = pa.StructArray.from_arrays([pa.array([_png(a) for a in x], pa.binary()), pa.array([None] * len(x), pa.string())],
                                    ["bytes", "path"])  # Hugging Face datasets' Image column
    pq.write_table(pa.table({"image": hf, "label": y}), root / "hf.parquet", row_group_size=600)
    return root


def _all(dataset) -> np.ndarray:
    return np.concatenate([x for x, _ in dataset.batches()])


@pytest.mark.parametrize("name", ["shards", "png.parquet", "arrays.parquet", "hf.parquet"])
def test_same_samples_as_one_npz(stores, name):
    options = DataOptions(batch_size=64)
    reference = open_dataset(stores / "one.npz", SHAPE, options)
    other = open_dataset(stores / name, SHAPE, options)
    assert np.array_equal(other.labels, reference.labels)
    assert _all(other).tobytes() == _all(reference).tobytes()
    for start, stop in ((0, 64), (192, 448), (448, 600), (256, 257)):  # inside, across files and row groups
        assert _all(other.shard(start, stop)).tobytes() == _all(reference.shard(start, stop)).tobytes()


def test_shard_folder_description_and_selection(stores):
    dataset = open_dataset(stores / "shards", SHAPE, DataOptions(classes=[3], batch_size=16))
    assert dataset.source.description == "3 npz shards in shards"
    reference = open_dataset(stores / "one.npz", SHAPE, DataOptions(classes=[3], batch_size=16))
    assert _all(dataset).tobytes() == _all(reference).tobytes() and len(dataset) == len(reference) > 0


def test_shards_of_different_samples_are_refused(sample, tmp_path):
    x, y = sample
    np.savez(tmp_path / "a.npz", x=x[:10], y=y[:10])
    np.savez(tmp_path / "b.npz", x=x[:10, :14], y=y[:10])
    with pytest.raises(OnnxFaultError, match="b.npz holds samples of shape \\(14, 28\\).*same kind of samples"):
        open_dataset(tmp_path, SHAPE)


def test_folder_without_shards_or_classes(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OnnxFaultError, match="without class sub-folders or .npz shards"):
        open_dataset(tmp_path, SHAPE)


def test_parquet_needs_its_columns(sample, tmp_path):
    x, y = sample
    pq.write_table(pa.table({"pixels": _arrays(x[:5]), "y": y[:5]}), tmp_path / "cols.parquet")
    with pytest.raises(OnnxFaultError, match="holds arrays pixels and labels but no 'x' \\(in Parquet: 'x' or 'image'\\)"):
        open_dataset(tmp_path / "cols.parquet", SHAPE)
    pq.write_table(pa.table({"y": y[:5]}), tmp_path / "labels.parquet")
    with pytest.raises(OnnxFaultError, match="needs a sample column named x or image"):
        open_dataset(tmp_path / "labels.parquet", SHAPE)
    pq.write_table(pa.table({"x": pa.array(["a"] * 5), "y": y[:5]}), tmp_path / "text.parquet")
    with pytest.raises(OnnxFaultError, match="has type string; store image bytes"):
        open_dataset(tmp_path / "text.parquet", SHAPE)


def test_parquet_bad_image_and_ragged_arrays(sample, tmp_path):
    x, y = sample
    pq.write_table(pa.table({"image": [b"not an image"] * 3, "label": y[:3]}), tmp_path / "junk.parquet")
    with pytest.raises(OnnxFaultError, match="cannot decode the image in column 'image'"):
        open_dataset(tmp_path / "junk.parquet", SHAPE)
    ragged = pa.array([[1.0, 2.0], [1.0]], pa.list_(pa.float32()))
    pq.write_table(pa.table({"x": ragged, "y": [0, 1]}), tmp_path / "ragged.parquet")
    with pytest.raises(OnnxFaultError, match="arrays of different shapes"):
        _all(open_dataset(tmp_path / "ragged.parquet", (2,)))


def test_corrupt_parquet_is_one_error(stores, tmp_path):
    data = (stores / "png.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxFaultError, match="cut.parquet"):
        open_dataset(tmp_path / "cut.parquet", SHAPE)
