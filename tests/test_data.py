"""Data readers, preprocessing, layout fitting and streaming."""
from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from onnxfault.data import DataOptions, open_dataset, open_source
from onnxfault.errors import OnnxFaultError
from onnxfault.files import write_npz

rng = np.random.default_rng(0)
IMAGES = rng.integers(0, 256, (37, 5, 4), dtype=np.uint8)
LABELS = rng.integers(0, 3, 37).astype(np.uint8)


def write_idx(path, array, gz=True):
    code = {np.uint8: 0x08, np.float32: 0x0D}[array.dtype.type]
    data = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)
    return path


def collect(dataset):
    xs, ys = zip(*dataset.batches())
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_labels_found_beside_and_streamed(tmp_path, gz):
    suffix = ".gz" if gz else ""
    images = write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", IMAGES, gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", LABELS, gz)
    dataset = open_dataset(images, (1, 5, 4), DataOptions(batch_size=8))
    sizes = [len(x) for x, _ in dataset.batches()]
    assert sizes == [8, 8, 8, 8, 5]
    x, y = collect(dataset)
    assert x.dtype == np.float32 and x.shape == (37, 1, 5, 4)
    assert np.array_equal(x, IMAGES[:, None] / np.float32(255)) and np.array_equal(y, LABELS)


def test_idx_explicit_labels_and_count_mismatch(tmp_path):
    images = write_idx(tmp_path / "imgs.gz", IMAGES)
    with pytest.raises(OnnxFaultError, match="no labels file found beside .*pass `labels`"):
        open_source(images)
    short = write_idx(tmp_path / "short.gz", LABELS[:30])
    with pytest.raises(OnnxFaultError, match="holds 37 images but .* holds 30 labels"):
        open_source(images, short)
    good = write_idx(tmp_path / "y.gz", LABELS)
    assert len(open_source(images, good)) == 37


def test_selection_classes_then_limit(tmp_path):
    path = write_npz(tmp_path / "d.npz", {"x": IMAGES, "y": LABELS})
    dataset = open_dataset(path, (20,), DataOptions(classes=[0, 2], limit=5, batch_size=2))
    x, y = collect(dataset)
    keep = np.flatnonzero(np.isin(LABELS, [0, 2]))[:5]
    assert np.array_equal(y, LABELS[keep]) and np.array_equal(x, IMAGES[keep].reshape(5, -1) / np.float32(255))
    with pytest.raises(OnnxFaultError, match="no samples with class 7"):
        open_dataset(path, (20,), DataOptions(classes=[7]))


def test_raw_mean_std(tmp_path):
    rgb = rng.integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    path = write_npz(tmp_path / "rgb.npz", {"x": rgb, "y": np.zeros(4, np.int64)})
    x, _ = collect(open_dataset(path, (3, 6, 6), DataOptions(raw=True)))
    assert np.array_equal(x, rgb.transpose(0, 3, 1, 2).astype(np.float32))
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    x, _ = collect(open_dataset(path, (3, 6, 6), DataOptions(mean=mean, std=std)))
    want = (rgb.transpose(0, 3, 1, 2) / np.float32(255) - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None]
    assert np.allclose(x, want, atol=1e-6)
    with pytest.raises(OnnxFaultError, match="give 2 values but the model input has 3 channels"):
        open_dataset(path, (3, 6, 6), DataOptions(mean=[0.1, 0.2]))


@pytest.mark.parametrize("sample, model, expect", [
    ((28, 28), (784,), lambda a: a.reshape(len(a), -1)),
    ((28, 28), (1, 28, 28), lambda a: a[:, None]),
    ((28, 28), (28, 28, 1), lambda a: a[..., None]),
    ((28, 28, 1), (28, 28), lambda a: a[..., 0]),
    ((8, 8, 3), (3, 8, 8), lambda a: a.transpose(0, 3, 1, 2)),
    ((3, 8, 8), (8, 8, 3), lambda a: a.transpose(0, 2, 3, 1)),
    ((3, 8, 8), (3, None, None), lambda a: a),
])
def test_layout_adaptations(tmp_path, sample, model, expect):
    raw = rng.integers(0, 256, (3, *sample), dtype=np.uint8)
    path = write_npz(tmp_path / "d.npz", {"x": raw, "y": np.zeros(3, np.int64)})
    x, _ = collect(open_dataset(path, model, DataOptions(raw=True)))
    assert np.array_equal(x, expect(raw).astype(np.float32))


def test_layout_ambiguity_and_misfit(tmp_path):
    path = write_npz(tmp_path / "d.npz", {"x": np.zeros((2, 3, 3, 3), np.uint8), "y": np.zeros(2, np.int64)})
    assert open_dataset(path, (3, 3, 3)).adaptation.name == "as is"  # already the model's shape
    with pytest.raises(OnnxFaultError, match="several ways .* `layout` nchw\\|nhwc"):
        open_dataset(path, (3, None, None))
    chosen = open_dataset(path, (3, None, None), DataOptions(layout="nchw")).adaptation
    assert (chosen.name, chosen.model_layout) == ("as is", "nchw")
    with pytest.raises(OnnxFaultError, match=r"shape \(3, 3, 3\) fit no layout of the model input \(784\)"):
        open_dataset(path, (784,))


def test_cifar_batch_read_without_running_code(tmp_path):
    data = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": [3, 1, 4, 1, 5, 9],
             b"data": data, b"filenames": [b"a.png"] * 6}
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    x, y = collect(open_dataset(path, (3, 32, 32), DataOptions(raw=True)))
    assert np.array_equal(x, data.reshape(6, 3, 32, 32)) and y.tolist() == [3, 1, 4, 1, 5, 9]


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(OnnxFaultError, match=r"refused to load '(posix|os)\.system'"):
        open_source(path)
    assert not marker.exists()


def test_npz_rejects_object_arrays_and_missing_keys(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(OnnxFaultError, match="array 'x' .* has type object"):
        open_source(path)
    np.savez(path, x=np.zeros((1, 4)), y=np.array([{"a": 1}], dtype=object))
    with pytest.raises(OnnxFaultError, match="Object arrays cannot be loaded"):
        open_source(path)
    other = write_npz(tmp_path / "k.npz", {"images": np.zeros((2, 4)), "y": np.zeros(2)})
    assert open_source(other).dtype.names == ("images",)  # one array per input (a text model's), read as records
    with pytest.raises(OnnxFaultError, match="holds arrays images and labels but no 'x' .*; the model takes one float input"):
        open_dataset(other, (4,))
    alone = write_npz(tmp_path / "y.npz", {"y": np.zeros(2)})
    with pytest.raises(OnnxFaultError, match="needs 'x' \\(samples\\) and 'y'"):
        open_source(alone)


def test_image_folder(tmp_path):
    from PIL import Image

    pictures = rng.integers(0, 256, (5, 6, 7), dtype=np.uint8)
    for i, picture in enumerate(pictures):
        folder = tmp_path / "imgs" / ("cat" if i < 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(folder / f"{i}.png")
    x, y = collect(open_dataset(tmp_path / "imgs", (1, 6, 7), DataOptions(raw=True, batch_size=2)))
    assert y.tolist() == [0, 0, 1, 1, 1] and np.array_equal(x, pictures[:, None].astype(np.float32))


def test_nan_in_data_names_the_sample(tmp_path):
    x = np.zeros((10, 4), np.float32)
    x[7, 2] = np.nan
    path = write_npz(tmp_path / "nan.npz", {"x": x, "y": np.zeros(10, np.int64)})
    with pytest.raises(OnnxFaultError, match="data sample 7 contains NaN"):
        collect(open_dataset(path, (4,), DataOptions(batch_size=4)))


def test_unknown_format_and_missing_file(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world")
    with pytest.raises(OnnxFaultError, match="unknown data format"):
        open_source(junk)
    with pytest.raises(OnnxFaultError, match="does not exist"):
        open_source(tmp_path / "nope.npz")


@pytest.mark.parametrize("kind", ["idx", "npz", "npz-compressed"])
def test_streaming_memory_does_not_grow_with_data(tmp_path, kind):
    import tracemalloc

    images = rng.integers(0, 256, (20_000, 28, 28), dtype=np.uint8)  # 15.7 MB
    labels = rng.integers(0, 10, 20_000).astype(np.uint8)
    if kind == "idx":
        path = write_idx(tmp_path / "big-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / "big-labels-idx1-ubyte.gz", labels)
    elif kind == "npz":
        path = tmp_path / "big.npz"
        np.savez(path, x=images, y=labels)
    else:
        path = write_npz(tmp_path / "big.npz", {"x": images, "y": labels})
    del images
    dataset = open_dataset(path, (1, 28, 28), DataOptions(batch_size=256))
    tracemalloc.start()
    seen = 0
    for x, _ in dataset.batches():
        seen += len(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seen == 20_000
    assert peak < 4_000_000, f"peak {peak / 1e6:.1f} MB while streaming 15.7 MB of images"


@pytest.mark.parametrize("kind", ["idx.gz", "idx", "npz", "npz-compressed", "folder"])
def test_shards_are_disjoint_and_cover_the_selection(tmp_path, kind):
    """Shards of a selection (classes, then a limit) batch exactly the samples and labels of the whole."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (57, 6, 5), dtype=np.uint8)
    y = rng.integers(0, 4, 57)
    if kind.startswith("idx"):
        path = write_idx(tmp_path / "data-images-idx3-ubyte", x, gz=kind == "idx.gz")
        write_idx(tmp_path / "data-labels-idx1-ubyte", y.astype(np.uint8), gz=kind == "idx.gz")
    elif kind == "folder":
        from PIL import Image

        path = tmp_path / "images"
        for i, (image, label) in enumerate(zip(x, y)):
            (path / f"c{label}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path / f"c{label}" / f"{i:03d}.png")
    else:
        path = tmp_path / "data.npz"
        (np.savez_compressed if kind == "npz-compressed" else np.savez)(path, x=x, y=y)
    whole = open_dataset(path, (30,), DataOptions(classes=[0, 2, 3], limit=40, batch_size=7))
    xs, ys = collect(whole)
    for bounds in ([0, 40], [0, 1, 40], [0, 13, 14, 29, 40], [0, 7, 14, 21, 28, 35, 40]):
        parts = [collect(whole.shard(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
        assert np.array_equal(np.concatenate([p[0] for p in parts]), xs)
        assert np.array_equal(np.concatenate([p[1] for p in parts]), ys)
    with pytest.raises(OnnxFaultError, match="outside"):
        whole.shard(30, 41)
