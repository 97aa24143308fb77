"""``evaluate``: accuracy, per-class accuracy and the confusion matrix of a model on labelled data."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .data import DataLike, DataOptions, Dataset, as_dataset
from .data.source import class_notes, class_record
from .distributed.sums import counted
from .errors import check_arguments, warn
from .results import header, provenance_of, run_inputs
from .model import Model, as_model
from .model_forms import ModelLike
from .provenance import stamp
from .spectrum import check_labels


SPARSE_ABOVE = 100  # evaluate --json writes the confusion matrix as triples above this many classes


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``m[true, predicted]`` counts (int64)."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def confusion_of(data: dict) -> np.ndarray:
    """The dense confusion matrix ``[true, predicted]`` of an ``evaluate --json`` dict, stored as nested lists
    or (``confusion_format`` sparse) as ``[true, predicted, count]`` triples; ValueError when it is neither."""
    n, sparse = data["classes"], data.get("confusion_format", "dense") == "sparse"
    cells = np.array(data["confusion"])
    if cells.size == 0:
        cells = cells.astype(np.int64).reshape(0, 3 if sparse else n)
    if cells.dtype.kind not in "iu" or (cells < 0).any():
        raise ValueError("'confusion' does not hold whole counts ≥ 0")
    if not sparse:
        if cells.shape != (n, n):
            raise ValueError(f"'confusion' is not {n} × {n}")
        return cells.astype(np.int64)
    if cells.ndim != 2 or cells.shape[1] != 3 or (cells[:, :2] >= n).any():
        raise ValueError(f"'confusion' does not hold [true, predicted, count] triples of {n} classes")
    dense = np.zeros((n, n), np.int64)
    np.add.at(dense, (cells[:, 0], cells[:, 1]), cells[:, 2])
    return dense


@dataclass
class EvaluateResult:
    """What ``evaluate`` found: the ``confusion`` matrix ``[true, predicted]``, and from it ``accuracy``,
    ``samples``, ``correct`` and :meth:`per_class`. ``to_json()`` is the ``--json`` file, ``from_json`` (or
    :func:`onnxfault.load`) reads it back."""

    kind = "evaluate"

    model: str
    data: str
    confusion: np.ndarray  # [true, predicted]
    device: str = "cpu"
    warnings: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)  # command, created, versions, platform, model_io

    @property
    def samples(self) -> int:
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def accuracy(self) -> float:
        return self.correct / self.samples

    def per_class(self) -> list[dict]:
        rows = []
        for c, row in enumerate(self.confusion):
            n = int(row.sum())
            rows.append({"class": c, "samples": n, "correct": int(row[c]),
                         "accuracy": (int(row[c]) / n) if n else None})
        return rows

    def worst_classes(self, n: int) -> list[dict]:
        """The ``n`` classes with the lowest accuracy among those with samples (ties: lower class first)."""
        rows = [r for r in self.per_class() if r["samples"]]
        return sorted(rows, key=lambda r: (r["accuracy"], r["class"]))[:n]

    @property
    def sparse(self) -> bool:
        """Whether ``--json`` stores the confusion matrix as triples (above ``SPARSE_ABOVE`` classes)."""
        return len(self.confusion) > SPARSE_ABOVE

    def confusion_json(self):
        """The confusion matrix as nested lists, or when ``sparse`` as ``[true, predicted, count]`` triples of
        its non-zero cells (row-major order)."""
        if not self.sparse:
            return self.confusion
        true, predicted = np.nonzero(self.confusion)
        return np.stack([true, predicted, self.confusion[true, predicted]], axis=1)

    def to_json(self) -> dict:
        return {**header("evaluate"), "model": self.model, "data": self.data, "samples": self.samples,
                "correct": self.correct,
                "accuracy": self.accuracy, "classes": len(self.confusion), "per_class": self.per_class(),
                "confusion": self.confusion_json(),
                "confusion_format": "sparse" if self.sparse else "dense",
                "device": self.device, **self.provenance}

    @classmethod
    def from_json(cls, data: dict) -> "EvaluateResult":
        """The result :meth:`to_json` wrote."""
        return cls(data["model"], data["data"], confusion_of(data), data.get("device", "cpu"), [],
                   provenance_of(data))

    def save(self, json: str | Path) -> Path:
        """Write the ``--json`` file (:meth:`to_json`), atomically."""
        from .files import write_json

        return write_json(json, self.to_json())

    def plot(self):
        """The report's figure of this result: the confusion matrix (the accuracy per class above 30 classes)."""
        from .report import result_figure

        return result_figure(self)

    def _report_run(self):
        from .report.results import memory_run

        return memory_run("evaluate", self.to_json())

    def _repr_html_(self) -> str:
        from .report import result_html

        return result_html(self)

    def __rich__(self):
        from .display import evaluation_view

        return evaluation_view(self)

    def __repr__(self) -> str:
        return (f"<EvaluateResult accuracy {100 * self.accuracy:.2f} % ({self.correct}/{self.samples}), "
                f"{len(self.confusion)} classes, on {self.data}>")


def evaluate(model: ModelLike, data: DataLike, *, device: str = "auto",
             data_options: DataOptions | None = None, on_batch: Callable[[int], None] | None = None,
             output: str | None = None, allow_nonfinite: bool = False, ray=None,
             example_input=None) -> EvaluateResult:
    """Run the model over ``data`` (streamed in batches) and compare predictions with labels; ``output``
    names the class-score output of a model with several. NaN or infinite class scores are an error
    unless ``allow_nonfinite``. ``ray`` (a :class:`~onnxfault.distributed.RayOptions`) counts shards of the
    data on Ray workers and adds their confusion matrices. ``model`` is any form :func:`~onnxfault.as_model`
    takes (a torch module with ``example_input``). ``data`` is a path, a pair ``(x, y)`` of numpy arrays or
    torch tensors, an iterable of ``(x, y)`` batches (read once, batch by batch) or a :class:`Dataset`
    (see :func:`~onnxfault.data.as_dataset`)."""
    check_arguments(device=(device, str), output=(output, (str, None)), allow_nonfinite=(allow_nonfinite, bool))
    model = as_model(model, output, example_input)
    data, data_options, transferred = run_inputs(data, data_options)
    dataset = as_dataset(data, model.data_shape, data_options, num_classes=model.num_classes)
    check_labels(dataset, model.num_classes, model)
    counter = ConfusionCounter(model.num_classes, device, allow_nonfinite)
    (confusion,), used = counted(counter, model, dataset, ray, on_batch)
    result = EvaluateResult(model.path, transferred or dataset.path, confusion, used,
                            [*model.notes, *class_notes(dataset.source)],
                            {**stamp(model), **class_record(dataset.source)})
    warn(result.warnings)
    return result


@dataclass(frozen=True)
class ConfusionCounter:
    """One evaluation pass: ``prepare`` builds the session once, ``count`` counts one data set (or shard)
    into ``(confusion,)``; confusion matrices of disjoint shards add up."""

    num_classes: int
    device: str
    allow_nonfinite: bool

    def prepare(self, model: Model, dataset: Dataset):
        return model.session(self.device, preprocessing=dataset.preprocessing)

    def device_of(self, session) -> str:
        return session.device

    def count(self, session, dataset: Dataset, on_batch: Callable[[int], None] | None = None):
        confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        for _, y, (scores, *_) in session.scored(dataset, self.allow_nonfinite):
            confusion += confusion_matrix(y, scores.argmax(axis=-1), self.num_classes)
            if on_batch is not None:
                on_batch(len(y))
        return (confusion,)
