"""The data pipeline at the runtime's speed: preprocessing as graph nodes fed the batches as read, memory-mapped
stored .npz members and raw IDX files, finiteness checked only where the data is float.

Every result of the new path is compared with the numpy path it replaces (``Dataset.batches()`` fed to the
plain model), byte for byte or to the integer."""
from __future__ import annotations

import gzip
import mmap
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, MNIST_IMAGES, init, make_model, save
from onnx import TensorProto, helper

from onnxfault import DataOptions, evaluate, load_model
from onnxfault.data import open_dataset, open_source
from onnxfault.data.idx import read_idx_array
from onnxfault.errors import OnnxFaultError
from onnxfault.evaluation import confusion_matrix
from onnxfault.graph import expose_activity
from onnxfault.spectrum import HELD_BYTES, HitTally, Outcome, count_hits, hit_spectrum, layer_order_columns, probe_axes
from onnxfault.synthesis.seeds import choose_seeds


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test images (uint8) and labels when ../shared/data is there, else the shipped 2,000."""
    if MNIST_IMAGES.is_file():
        labels = MNIST_IMAGES.with_name("t10k-labels-idx1-ubyte.gz")
        return read_idx_array(MNIST_IMAGES), read_idx_array(labels).astype(np.int64)
    with np.load(EXAMPLES / "mnist_sample.npz") as data:
        return data["x"], data["y"].astype(np.int64)


@pytest.fixture(scope="module")
def mnist_npz(mnist, tmp_path_factory) -> Path:
    """The images as a stored (uncompressed) .npz, as numpy.savez writes it."""
    path = tmp_path_factory.mktemp("data") / "mnist.npz"
    np.savez(path, x=mnist[0], y=mnist[1])
    return path


@pytest.fixture(scope="module")
def rgb_npz(mnist, tmp_path_factory) -> Path:
    """Three different uint8 channels per image, channels last (N, 28, 28, 3)."""
    x = mnist[0]
    path = tmp_path_factory.mktemp("rgb") / "rgb.npz"
    np.savez(path, x=np.stack([x, 255 - x, np.roll(x, 5, axis=2)], axis=-1), y=mnist[1])
    return path


def dense_model(path: Path, input_type: int, shape: list[int], hidden: int = 16) -> Path:
    """x (N, *shape) → [Cast to float] → Flatten → MatMul → Relu → MatMul → 10 logits (seeded weights)."""
    rng = np.random.default_rng(0)
    size = int(np.prod(shape))
    first = "x"
    nodes = []
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT))
        first = "xf"
    if len(shape) > 1:
        nodes.append(helper.make_node("Flatten", [first], ["flat"], axis=1))
        first = "flat"
    nodes += [helper.make_node("MatMul", [first, "W1"], ["pre"]), helper.make_node("Relu", ["pre"], ["h"]),
              helper.make_node("MatMul", ["h", "W2"], ["logits"])]
    weights = [init("W1", rng.normal(size=(size, hidden)) * 0.3), init("W2", rng.normal(size=(hidden, 10)))]
    model = make_model(nodes, [("x", input_type, ["N", *shape])], [("logits", TensorProto.FLOAT, ["N", 10])], weights)
    return save(model, path)


CASES = {  # model fixture, data fixture, options
    "lenet /255": ("lenet", "mnist_npz", DataOptions()),
    "lenet raw": ("lenet", "mnist_npz", DataOptions(raw=True)),
    "lenet mean/std": ("lenet", "mnist_npz", DataOptions(mean=[0.1307], std=[0.3081])),
    "flat MatMul /255": ("flat", "mnist_npz", DataOptions()),  # onnxruntime would fold / 255 into the MatMul
    "flat MatMul mean/std": ("flat", "mnist_npz", DataOptions(mean=[0.5], std=[0.3])),
    "3 channels, per-channel mean/std": ("rgb", "rgb_npz", DataOptions(mean=[0.485, 0.456, 0.406],
                                                                       std=[0.229, 0.224, 0.225])),
    "3 channels, mean only": ("rgb", "rgb_npz", DataOptions(mean=[0.2, 0.5, 0.7])),
    "float16 input": ("half", "mnist_npz", DataOptions(mean=[0.1], std=[0.3])),
    "float64 input": ("double", "mnist_npz", DataOptions()),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {"lenet": EXAMPLES / "mnist_lenet.onnx",
            "flat": dense_model(folder / "flat.onnx", TensorProto.FLOAT, [784]),  # x / 255 feeds MatMul directly
            "rgb": dense_model(folder / "rgb.onnx", TensorProto.FLOAT, [3, 28, 28]),
            "half": dense_model(folder / "half.onnx", TensorProto.FLOAT16, [1, 28, 28]),
            "double": dense_model(folder / "double.onnx", TensorProto.DOUBLE, [1, 28, 28])}


def case(request, models, name):
    model_key, data_key, options = CASES[name]
    model = load_model(models[model_key])
    return model, open_dataset(request.getfixturevalue(data_key), model.input_shape, options)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_graph_computes_what_batches_gives_byte_for_byte(request, models, name):
    model, dataset = case(request, models, name)
    session = model.session("cpu", [model.input_name], preprocessing=dataset.preprocessing)
    fed = [(x, outputs[1]) for x, _, outputs in session.scored(dataset)]
    assert all(x.dtype == np.uint8 for x, _ in fed)  # onnxruntime gets the batches as read
    want = np.concatenate([x for x, _ in dataset.batches()])
    got = np.concatenate([inside for _, inside in fed])
    dtype = {"half": np.float16, "double": np.float64}.get(CASES[name][0], np.float32)
    assert got.dtype == dtype and got.shape == want.shape == (len(dataset), *model.input_shape)
    assert got.tobytes() == want.astype(dtype).tobytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_scores_spectra_and_confusion_equal_the_numpy_path(request, models, name):
    model, dataset = case(request, models, name)
    layers = model.layers
    probes = [(layer.tensor, probe_axes(layer, "channel")) for layer in layers]
    proto, column_order = expose_activity(model.scores_only(), probes, 0.0)
    old = model.session_for(proto, "cpu")  # the numpy path: float batches into the plain graph
    counts, scores = np.zeros((4, sum(l.neurons() for l in layers)), np.int64), []
    for x, y in dataset.batches():
        logits, active = old.run(x)
        scores.append(logits)
        counts += count_hits(active.reshape(len(y), -1), logits.argmax(-1) != y)
    counts = counts[:, layer_order_columns(column_order, [l.neurons() for l in layers])]
    new = model.session_for(model.scores_only(), "cpu", dataset.preprocessing)
    new_scores = np.concatenate([outputs[0] for _, _, outputs in new.scored(dataset)])
    assert new_scores.tobytes() == np.concatenate(scores).tobytes()
    spectrum = hit_spectrum(model, dataset, layers, device="cpu")
    assert np.array_equal(spectrum.counts, counts) and spectrum.samples == len(dataset)
    confusion = confusion_matrix(dataset.labels, np.concatenate(scores).argmax(-1), model.num_classes)
    assert np.array_equal(evaluate(model, dataset, device="cpu").confusion, confusion)


@pytest.mark.parametrize("rows", [1, 300, 2**16 + 3])
def test_count_hits_equals_per_neuron_sums(rows):
    """(as, af, ns, nf) per column, against int64 sums of each cell of the 2×2 table; column 0 is active on
    every row, so a batch of 2¹⁶ + 3 rows would wrap a 16-bit count."""
    rng = np.random.default_rng(rows)
    active, failed = rng.random((rows, 5)) < 0.5, rng.random(rows) < 0.3
    active[:, 0] = True
    cells = [(active & ~failed[:, None]), (active & failed[:, None]), (~active & ~failed[:, None]),
             (~active & failed[:, None])]
    want = np.stack([c.astype(np.int64).sum(axis=0) for c in cells])
    got = count_hits(active, failed)
    assert got.dtype == np.int64 and np.array_equal(got, want)
    assert got[0, 0] + got[1, 0] == rows


@pytest.mark.parametrize("held_bytes", [1, 50_000, HELD_BYTES])
@pytest.mark.parametrize("outcome", [Outcome(), Outcome("target", target=2)])
def test_a_tally_of_held_batches_equals_counting_each_batch(held_bytes, outcome):
    """HitTally holds batches and counts them together (every batch when ``held_bytes`` is 1, some together at
    50,000, all of them at the default up to 2¹⁶ - 1 rows): (as, af, ns, nf), samples, failing and correct equal
    counts by hand over all 70,000 rows, in batches of uneven sizes."""
    rng = np.random.default_rng(held_bytes)
    sizes = rng.integers(1, 1_000, 69)  # and the rest in one batch
    sizes = np.append(sizes, 70_000 - sizes.sum())
    scores = rng.random((70_000, 4), dtype=np.float32)
    active, labels = rng.random((70_000, 3, 2)) < 0.4, rng.integers(0, 4, 70_000)
    tally = HitTally(6, outcome, held_bytes)
    for part in np.split(np.arange(70_000), np.cumsum(sizes)[:-1]):
        tally.add(scores[part], active[part], labels[part])
    predictions = scores.argmax(axis=1)
    failed = predictions == 2 if outcome.mode == "target" else predictions != labels
    assert np.array_equal(tally.counts(), count_hits(active.reshape(70_000, 6), failed))
    assert (tally.samples, tally.failing, tally.correct) == (70_000, failed.sum(), (predictions == labels).sum())


def test_seed_range_is_the_range_of_the_float_batches(request, models):
    model, dataset = case(request, models, "3 channels, per-channel mean/std")
    seeds = choose_seeds(model, dataset, samples=2, seed=0, device="cpu")
    x = np.concatenate([x for x, _ in dataset.batches()])
    assert seeds.data_range == (float(x.min()), float(x.max()))
    assert seeds.x.tobytes() == x[seeds.positions].tobytes()


# ---- finiteness: checked where the data is float; overflow from --std refused once, up front --------------------
def test_a_tiny_std_is_refused_when_the_data_set_is_built(models, mnist_npz):
    model = load_model(models["lenet"])
    with pytest.raises(OnnxFaultError, match=r"beyond float32's range .*check `mean`/`std`") as err:
        open_dataset(mnist_npz, model.input_shape, DataOptions(std=[1e-39]))
    assert "\n" not in str(err.value)
    open_dataset(mnist_npz, model.input_shape, DataOptions(std=[1e-37]))  # 255 / 255 / 1e-37 fits


@pytest.fixture
def float_npz(mnist, tmp_path):
    def write(x: np.ndarray) -> Path:
        np.savez(tmp_path / "float.npz", x=x, y=mnist[1][:len(x)])
        return tmp_path / "float.npz"
    return write


def test_float_data_with_nan_names_the_sample(models, mnist, float_npz):
    x = mnist[0][:600].astype(np.float32) / 255
    x[517, 3, 4] = np.nan
    dataset = open_dataset(float_npz(x), (1, 28, 28))
    for batches in (dataset.feeds, dataset.batches):
        with pytest.raises(OnnxFaultError, match="data sample 517 contains NaN or infinite values"):
            list(batches())


def test_float_data_that_overflows_once_normalized_is_refused(mnist, float_npz):
    x = mnist[0][:300].astype(np.float32)
    x[7, 0, 0] = 3e38
    dataset = open_dataset(float_npz(x), (1, 28, 28), DataOptions(mean=[-1e38]))
    with pytest.raises(OnnxFaultError, match=r"beyond float32's range \(to .* inf\)"):
        list(dataset.feeds())
    with pytest.raises(OnnxFaultError, match="data sample 7 contains NaN or infinite values"):
        list(dataset.batches())  # the float path finds the same sample


def test_float64_data_is_fed_as_float64_and_converted_in_the_graph(models, mnist, float_npz):
    x = mnist[0][:500].astype(np.float64) / 7
    model = load_model(models["lenet"])
    dataset = open_dataset(float_npz(x), model.input_shape, DataOptions(mean=[3.0], std=[11.0]))
    session = model.session("cpu", [model.input_name], preprocessing=dataset.preprocessing)
    fed = list(session.scored(dataset))
    assert fed[0][0].dtype == np.float64
    got = np.concatenate([outputs[1] for _, _, outputs in fed])
    assert got.tobytes() == np.concatenate([x for x, _ in dataset.batches()]).tobytes()


# ---- reading without copying: stored .npz members and raw IDX files are memory-mapped -----------------------------
def mapped(block: np.ndarray) -> bool:
    """True when ``block`` is a view of a memory map (no copy of the file's bytes)."""
    base = block
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def chunks(path: Path, rows: int, first: int = 0, labels: Path | None = None) -> list[np.ndarray]:
    return list(open_source(path, labels).chunks(rows, first))


@pytest.mark.parametrize("rows, first", [(256, 0), (7, 13), (1000, 9999 - 1000)])
def test_stored_npz_blocks_are_views_of_the_file_and_equal_the_data(mnist, mnist_npz, tmp_path, rows, first):
    x = mnist[0]
    first = min(first, len(x) - 1)
    blocks = chunks(mnist_npz, rows, first)
    assert all(mapped(b) for b in blocks)
    assert np.concatenate(blocks).tobytes() == x[first:].tobytes()
    np.savez_compressed(tmp_path / "deflated.npz", x=x, y=mnist[1])
    deflated = chunks(tmp_path / "deflated.npz", rows, first)
    assert not any(mapped(b) for b in deflated)
    assert [b.tobytes() for b in deflated] == [b.tobytes() for b in blocks]


def _maps(blocks: list[np.ndarray]) -> set[int]:
    """ids of the memory maps the blocks are views of."""
    found = set()
    for block in blocks:
        base = block
        while not isinstance(base, memoryview):
            base = base.base
        found.add(id(base.obj))
    return found


@pytest.mark.parametrize("rows, first", [(256, 0), (7, 13)])
def test_a_small_member_is_mapped_once_and_a_large_one_in_windows(mnist, mnist_npz, monkeypatch, rows, first):
    from onnxfault.data import source

    x = mnist[0][first:]
    whole = chunks(mnist_npz, rows, first)
    assert len(_maps(whole)) == 1 and np.concatenate(whole).tobytes() == x.tobytes()
    monkeypatch.setattr(source, "WHOLE_MAP_BYTES", 0)
    monkeypatch.setattr(source, "WINDOW_BYTES", 100_000)
    windows = chunks(mnist_npz, rows, first)
    assert len(_maps(windows)) == -(-len(x) // (rows * max(1, 100_000 // (rows * 784))))
    assert [b.tobytes() for b in windows] == [b.tobytes() for b in whole]


def test_a_stored_member_cut_short_after_opening_is_one_error(mnist, tmp_path):
    """A file cut short between opening and reading (headers checked, data gone) is an error naming the file."""
    path = tmp_path / "cut.npz"
    np.savez(path, x=mnist[0][:100], y=mnist[1][:100])
    source = open_source(path)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    with pytest.raises(OnnxFaultError, match=f"cannot read {path}: .*; the file was truncated or changed"):
        list(source.chunks(32, 0))


def test_a_big_endian_stored_npz_is_read_in_native_order(tmp_path):
    x = np.arange(60, dtype=">f4").reshape(5, 12) / 7
    np.savez(tmp_path / "be.npz", x=x, y=np.arange(5))
    (block,) = chunks(tmp_path / "be.npz", 8)
    assert block.dtype == np.dtype("<f4") and np.array_equal(block, x)


def local_header_offset(path: Path, member: str) -> int:
    with zipfile.ZipFile(path) as archive:
        return archive.getinfo(member).header_offset


def test_a_local_header_that_disagrees_is_not_mapped(mnist, tmp_path):
    """A stored member whose local header claims deflate (the central directory says stored) is left to
    zipfile, which reads it by the central directory: same samples, no memory map."""
    path = tmp_path / "odd.npz"
    np.savez(path, x=mnist[0][:100], y=mnist[1][:100])
    raw = bytearray(path.read_bytes())
    at = local_header_offset(path, "x.npy")
    assert raw[at:at + 4] == b"PK\x03\x04"
    raw[at + 8:at + 10] = struct.pack("<H", zipfile.ZIP_DEFLATED)
    path.write_bytes(bytes(raw))
    blocks = chunks(path, 32)
    assert not any(mapped(b) for b in blocks)
    assert np.concatenate(blocks).tobytes() == mnist[0][:100].tobytes()


@pytest.mark.parametrize("first", [0, 5])
def test_a_stored_member_is_not_crc_checked(mnist, tmp_path, first):
    """Stored members are mapped as they are (no CRC-32, as numpy.load(mmap_mode="r")): a flipped byte in
    sample 10 comes out flipped, whichever sample a shard starts from."""
    path = tmp_path / "bad.npz"
    x = mnist[0][:100]
    np.savez(path, x=x, y=mnist[1][:100])
    raw = bytearray(path.read_bytes())
    at = raw.find(x[10:11].tobytes()) + 300  # byte 300 of sample 10
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    want = x.copy()
    want.reshape(100, -1)[10, 300] ^= 0xFF
    assert np.concatenate(chunks(path, 16, first)).tobytes() == want[first:].tobytes()


def test_raw_idx_is_memory_mapped_and_equals_the_gz(mnist, tmp_path):
    images, labels = tmp_path / "t-images-idx3-ubyte", tmp_path / "t-labels-idx1-ubyte"
    x = mnist[0][:1000]
    images.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", *x.shape) + x.tobytes())
    labels.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", len(x)) + mnist[1][:1000].astype(np.uint8).tobytes())
    gz = tmp_path / "gz"
    gz.mkdir()
    for path in (images, labels):
        (gz / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
    raw = chunks(images, 100, 250)
    assert all(mapped(b) for b in raw)
    assert np.concatenate(raw).tobytes() == x[250:].tobytes()
    assert [b.tobytes() for b in chunks(gz / (images.name + ".gz"), 100, 250)] == [b.tobytes() for b in raw]


def test_feeds_are_views_of_the_file_when_nothing_needs_copying(models, mnist_npz):
    """Selecting every sample of a stored .npz and adding a channel axis copies nothing."""
    model = load_model(models["lenet"])
    dataset = open_dataset(mnist_npz, model.input_shape, DataOptions(batch_size=100))
    assert all(mapped(x) for x, _ in dataset.feeds())
    shard = dataset.shard(150, 420)
    assert np.concatenate([x for x, _ in shard.feeds()]).tobytes() == \
        np.concatenate([x for x, _ in dataset.feeds()])[150:420].tobytes()
