"""Data in memory (issue 15): arrays, tensors and iterables of batches give what the file gives, to the byte."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnxfault
from onnxfault import DataOptions, Dataset, OnnxFaultError
from onnxfault.data import as_dataset
from onnxfault.data.memory import FORMS

torch = pytest.importorskip("torch")


SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist_sample.npz"


@pytest.fixture(scope="module")
def mnist():
    """The shipped sample: its path (the file route) and its arrays (2,000 uint8 images and labels)."""
    with np.load(SAMPLE) as data:
        return SAMPLE, data["x"], data["y"]


def _tf_dataset(x, y, size):
    tf = pytest.importorskip("tensorflow")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(size)


# Each form of the shipped sample, in batches of 97 (never the data set's own batch size, so that the
# batches are regrouped); the file route is the reference.
FORM_NAMES = ["numpy", "torch", "list", "generator", "dataloader", "tf.data", "from_arrays", "from_batches"]


def form(name: str, x: np.ndarray, y: np.ndarray):
    size = 97
    if name == "numpy":
        return x, y
    if name == "torch":
        return torch.from_numpy(x), torch.from_numpy(y)
    if name == "list":
        return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]
    if name == "generator":
        return ((x[i:i + size], y[i:i + size]) for i in range(0, len(x), size))
    if name == "dataloader":
        data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        return torch.utils.data.DataLoader(data, batch_size=size, shuffle=False)
    if name == "tf.data":
        return _tf_dataset(x, y, size)
    if name == "from_arrays":
        return Dataset.from_arrays(torch.from_numpy(x), y)
    return Dataset.from_batches(form("dataloader", x, y))


@pytest.mark.parametrize("name", FORM_NAMES)
def test_evaluate_equals_the_file(name, mnist, lenet_onnx):
    path, x, y = mnist
    options = DataOptions(classes=[1, 3, 7], limit=333, batch_size=50)
    reference = onnxfault.evaluate(lenet_onnx, path, data_options=options)
    result = onnxfault.evaluate(lenet_onnx, form(name, x, y), data_options=options)
    assert result.samples == 333
    np.testing.assert_array_equal(result.confusion, reference.confusion)
    assert result.confusion[[0, 2, 4, 5, 6, 8, 9]].sum() == 0  # only classes 1, 3 and 7 were read


@pytest.mark.parametrize("name", FORM_NAMES)
def test_localize_equals_the_file(name, mnist, lenet_onnx):
    path, x, y = mnist
    reference = onnxfault.localize(lenet_onnx, path, cls=3, k=20)
    result = onnxfault.localize(lenet_onnx, form(name, x, y), cls=3, k=20)
    np.testing.assert_array_equal(result.spectrum.counts, reference.spectrum.counts)
    assert result.spectrum.samples == reference.spectrum.samples == int(np.count_nonzero(y == 3))
    np.testing.assert_array_equal(result.scores, reference.scores)
    assert result.neurons == reference.neurons


@pytest.mark.parametrize("name", FORM_NAMES)
def test_fgsm_inputs_equal_the_file_to_the_byte(name, mnist, lenet_onnx):
    path, x, y = mnist
    options = DataOptions(limit=1500, batch_size=64)
    reference = onnxfault.synthesize(lenet_onnx, path, method="fgsm", samples=3, seed=4, data_options=options)
    result = onnxfault.synthesize(lenet_onnx, form(name, x, y), method="fgsm", samples=3, seed=4,
                                  data_options=options)
    assert result.report["seeds"] == reference.report["seeds"]
    for key, array in reference.arrays.items():
        assert result.arrays[key].dtype == array.dtype
        assert result.arrays[key].tobytes() == array.tobytes(), key


def test_neuron_guided_synthesis_reads_an_iterable_twice(mnist, dense_onnx):
    path, x, y = mnist
    reference = onnxfault.synthesize(dense_onnx, path, method="deepfault", cls=4, samples=2, k=3)
    result = onnxfault.synthesize(dense_onnx, form("dataloader", x, y), method="deepfault", cls=4, samples=2, k=3)
    assert result.report["neurons"] == reference.report["neurons"]
    for key, array in reference.arrays.items():
        assert result.arrays[key].tobytes() == array.tobytes(), key
    with pytest.raises(OnnxFaultError, match="read once and was read already") as err:
        onnxfault.synthesize(dense_onnx, form("generator", x, y), method="deepfault", cls=4, samples=2, k=3)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["numpy", "list", "dataloader"])
def test_batches_equal_the_files_batches(name, mnist, lenet_onnx):
    """classes, limit and batch_size select and group the same samples, fed as read (uint8 stays uint8)."""
    path, x, y = mnist
    options = DataOptions(classes=[0, 9], limit=150, batch_size=40)
    shape = onnxfault.load_model(lenet_onnx).input_shape
    reference = onnxfault.open_dataset(path, shape, options)
    dataset = as_dataset(form(name, x, y), shape, options)
    ours, theirs = list(dataset.feeds()), list(reference.feeds())
    assert [len(b) for b, _ in ours] == [40, 40, 40, 30]
    for (a, la), (b, lb) in zip(ours, theirs, strict=True):
        assert a.dtype == np.uint8 and a.shape[1:] == (1, 28, 28)
        assert a.tobytes() == b.tobytes() and la.tolist() == lb.tolist()
    np.testing.assert_array_equal(dataset.indices, reference.indices)
    assert len(dataset) == 150
    assert dataset.preprocessing.dtype == np.uint8 and dataset.preprocessing.divisor == 255.0


def test_arrays_are_streamed_as_views(mnist, lenet_onnx):
    _, x, y = mnist
    tensor = torch.from_numpy(x.copy())
    dataset = as_dataset((tensor, torch.from_numpy(y)), (1, 28, 28), DataOptions(batch_size=500))
    first, _ = next(dataset.feeds())
    assert np.shares_memory(first, tensor.numpy())  # a view of the tensor's memory, not a copy


def test_a_dataset_from_arrays_is_fitted_by_the_function(mnist, dense_onnx, lenet_onnx):
    path, x, y = mnist
    dataset = Dataset.from_arrays(x, y, DataOptions(limit=500))
    assert dataset.model_shape is None and next(dataset.batches())[0].shape == (256, 28, 28)
    for model in (dense_onnx, lenet_onnx):  # (784,) and (1, 28, 28): each fits the same Dataset its way
        reference = onnxfault.evaluate(model, path, data_options=DataOptions(limit=500))
        np.testing.assert_array_equal(onnxfault.evaluate(model, dataset).confusion, reference.confusion)
    with pytest.raises(OnnxFaultError, match="data_options: the Dataset was made with other options"):
        onnxfault.evaluate(dense_onnx, dataset, data_options=DataOptions(limit=7))


class Generated(torch.utils.data.Dataset):
    """200,000 MNIST-shaped uint8 samples (157 MB in all), each made when asked for."""

    images = [torch.full((28, 28), value, dtype=torch.uint8) for value in range(251)]

    def __len__(self):
        return 200_000

    def __getitem__(self, i):
        return self.images[i % 251], i % 10


def _peak_growth_mb(run) -> float:
    """How far ``run()`` raises the process's peak resident memory above its resident memory now (MB)."""
    from onnxfault.peak_memory import peak_rss_mb, peak_rss_reset

    peak_rss_reset()
    with open("/proc/self/status") as fh:
        resident = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024
    run()
    return peak_rss_mb() - resident


def test_a_large_dataloader_is_streamed_not_loaded(dense_onnx):
    if not _can_reset_peak():
        pytest.skip("needs Linux's /proc/self/clear_refs to measure a peak")
    model = onnxfault.load_model(dense_onnx)
    onnxfault.evaluate(model, [(np.zeros((8, 28, 28), np.uint8), np.zeros(8, np.int64))])  # session code loaded
    loader = torch.utils.data.DataLoader(Generated(), batch_size=1000, shuffle=False)
    results = []
    growth = _peak_growth_mb(lambda: results.append(onnxfault.evaluate(model, loader)))
    assert results[0].samples == 200_000
    np.testing.assert_array_equal(results[0].confusion.sum(axis=1), np.full(10, 20_000))
    assert growth < 157 / 4  # the data set is 157 MB; a stream holds a batch or two


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def test_stream_labels_are_checked_per_batch(mnist, dense_onnx):
    _, x, y = mnist
    bad = y[:300].copy()
    bad[250] = 10
    with pytest.raises(OnnxFaultError, match="the data has label 10 but the model has only 10 classes"):
        onnxfault.evaluate(dense_onnx, [(x[:200], y[:200]), (x[200:300], bad[200:])])
    with pytest.raises(OnnxFaultError, match="the data has label 10"):  # arrays: checked up front
        onnxfault.evaluate(dense_onnx, (x[:300], bad))


@pytest.mark.parametrize("data, cause", [
    ({"x": 1, "y": 2}, "got an object of type dict"),
    (42, "got an object of type int"),
    (np.zeros((4, 28, 28)), "got an object of type ndarray"),
    ("__tensor_dataset__", "got an object of type TensorDataset"),
    ((np.zeros((4, 28, 28), np.uint8), np.zeros(3, np.int64)), "x holds 4 samples but y 3 labels"),
    ([(np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.int64)), (np.zeros((2, 28, 28), np.uint8), np.zeros(3))],
     "x of batch 2 holds 2 samples but y of batch 2 3 labels"),
    ((np.zeros((4, 28, 28), np.uint8), np.array([0, 1, 2.5, 3])), "labels in y are not whole numbers"),
    ((np.zeros((4, 28, 28), np.uint8), np.array(["a", "b", "c", "d"])), "labels in y have type <U1"),
    ((torch.zeros(4, 28, 28), torch.tensor([0.5, 1, 2, 3])), "labels in y are not whole numbers"),
    ([np.zeros((4, 28, 28), np.uint8)], "batch 1 is a ndarray, not a pair"),
    ([], "the list holds no batches"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_bad_data_is_one_error_naming_the_forms(data, cause, dense_onnx):
    if isinstance(data, str):  # made here: torch objects in the parameter list would show in test ids
        data = torch.utils.data.TensorDataset(torch.zeros(4, 28, 28), torch.zeros(4))
    with pytest.raises(OnnxFaultError) as err:
        onnxfault.evaluate(dense_onnx, data)
    message = str(err.value)
    assert message.startswith("data: ") and cause in message and message.endswith(f"data takes {FORMS}")
    assert "\n" not in message


def test_a_second_pass_must_read_the_same_samples(mnist):
    path, x, y = mnist
    shape, positions = (784,), np.array([3, 150, 999, 1998])
    data = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    ordered = as_dataset(torch.utils.data.DataLoader(data, batch_size=97), shape)
    assert sum(len(b) for b, _ in ordered.batches()) == len(ordered) == 2000
    reference = onnxfault.open_dataset(path, shape)
    assert ordered.take(positions).tobytes() == reference.take(positions).tobytes()
    shuffled = as_dataset(torch.utils.data.DataLoader(data, batch_size=97, shuffle=True), shape)
    assert len(list(shuffled.batches())) == 8
    with pytest.raises(OnnxFaultError, match="is the iterable shuffled"):
        shuffled.take(positions)
