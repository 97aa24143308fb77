"""Forward passes on onnxruntime: provider choice and one session per model variant."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort

from .errors import OnnxFaultError
from .interrupts import raise_if_stopped, stoppable

if TYPE_CHECKING:
    from .data.preprocessing import Preprocessing

DEVICES = ("auto", "cpu", "cuda")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_NUMPY_TYPES = {"tensor(float16)": np.float16, "tensor(float)": np.float32, "tensor(double)": np.float64,
                "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(uint16)": np.uint16,
                "tensor(int16)": np.int16, "tensor(uint32)": np.uint32, "tensor(int32)": np.int32,
                "tensor(uint64)": np.uint64, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}
# Folding x / c into the next MatMul's alpha reorders the rounding: preprocessing in the graph must stay exact.
_EXACT_INPUT = ["MatMulScaleFusion"]


def records(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Arrays of one row per sample as one record array, a field per array (in the given order): how a batch
    for a model with several inputs travels (sliced, masked and joined as one array) until it is fed."""
    first = next(iter(arrays.values()))
    out = np.empty(len(first), [(name, a.dtype, a.shape[1:]) for name, a in arrays.items()])
    for name, a in arrays.items():
        out[name] = a
    return out


def providers_for(device: str) -> list[str]:
    """Execution providers for ``--device``; ``cuda`` without onnxruntime-gpu is an error."""
    if device not in DEVICES:
        raise OnnxFaultError(f"unknown device '{device}'; use one of {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    if device == "cpu":
        return [_CPU]
    if _CUDA in available:
        return [_CUDA, _CPU]
    if device == "cuda":
        raise OnnxFaultError(
            "`device` cuda needs onnxruntime's CUDA provider; install it with `pip install onnxfault[gpu]` "
            "(onnxruntime-gpu) or use `device` cpu"
        )
    return [_CPU]


class Session:
    """An onnxruntime session for one model variant, returning float32/int outputs as numpy arrays.

    ``fixed_batch`` (a model whose batch size could not be made dynamic) makes ``run`` feed the model
    chunks of exactly that size, padding the last one. ``preprocessing`` (a data set's
    :class:`~onnxfault.data.dataset.Preprocessing`) says that ``model`` starts with it as graph nodes
    (``graph.prepend_preprocessing``): ``scored`` then feeds the data set's batches as read.
    """

    def __init__(self, model: onnx.ModelProto, input_name: str, device: str = "auto",
                 fixed_batch: int | None = None, preprocessing: Preprocessing | None = None,
                 classes: int | None = None):
        providers = providers_for(device)
        options = ort.SessionOptions()
        options.log_severity_level = 4  # failures surface as OnnxFaultError, not log lines
        disabled = _EXACT_INPUT if preprocessing is not None else None
        try:
            self._session = ort.InferenceSession(model.SerializeToString(), options, providers=providers,
                                                 disabled_optimizers=disabled)
        except Exception as err:  # onnxruntime raises its own exception types
            raise OnnxFaultError(f"onnxruntime cannot run the model: {str(err).splitlines()[0]}") from err
        if device == "cuda" and _CUDA not in self._session.get_providers():
            raise OnnxFaultError("`device` cuda: no usable GPU is visible to onnxruntime; use `device` cpu")
        self.input_name = input_name
        self.classes = classes  # the class count the model declares, checked on the first batch ``scored`` runs
        self.output_names = [o.name for o in self._session.get_outputs()]
        self._dtypes = {i.name: _NUMPY_TYPES.get(i.type, np.float32) for i in self._session.get_inputs()}
        self._dtype = self._dtypes[input_name]
        self.fixed_batch = fixed_batch
        self.preprocessing = preprocessing

    @property
    def device(self) -> str:
        return "cuda" if self._session.get_providers()[0] == _CUDA else "cpu"

    def run(self, x: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """All outputs for the batch ``x`` (first axis = samples): an array for the session's input, or a
        record array (:func:`records`) with a field per model input; ``extra`` feeds further inputs whose
        first axis is also the sample axis (e.g. a neuron mask)."""
        if x.dtype.names:
            feeds = {name: np.ascontiguousarray(x[name], dtype=self._dtypes.get(name, x.dtype[name].base))
                     for name in x.dtype.names}
        else:
            feeds = {self.input_name: np.ascontiguousarray(x, dtype=self._dtype)}
        feeds.update(extra or {})
        if self.fixed_batch is None:
            return self._run(feeds)
        b = self.fixed_batch
        parts = []
        for start in range(0, len(x), b):
            chunk = {name: value[start:start + b] for name, value in feeds.items()}
            pad = b - len(x[start:start + b])
            if pad:
                chunk = {name: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for name, v in chunk.items()}
            outs = self._run(chunk)
            parts.append([o[: b - pad] for o in outs])
        return [np.concatenate([p[i] for p in parts]) for i in range(len(self.output_names))]

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        options = ort.RunOptions()
        try:
            with stoppable(lambda: setattr(options, "terminate", True)):  # a signal ends a long run (a Loop)
                return self._session.run(None, feeds, options)
        except Exception as err:  # onnxruntime's own exception types
            raise_if_stopped()
            shapes = ", ".join(f"{name} {value.shape}" for name, value in feeds.items())
            raise OnnxFaultError(f"onnxruntime failed to run the model on a batch of {shapes}: "
                                 f"{str(err).splitlines()[0]}") from err

    def scored(self, dataset, allow_nonfinite: bool = False):
        """``(x, y, outputs)`` for each batch of ``dataset``; ``outputs[0]`` are the class scores, which
        must be finite unless ``allow_nonfinite`` (else an error naming the first affected sample). ``x`` is
        what the session was fed: the batch as read when it was built with the data set's preprocessing,
        else the float batch."""
        done = 0
        for x, y in (dataset.batches() if self.preprocessing is None else dataset.feeds()):
            outputs = self.run(x)
            if done == 0 and self.classes is not None:
                check_width(outputs[0], self.classes, self.output_names[0], y)
            if not allow_nonfinite:
                check_scores(outputs[0], dataset.indices[done:done + len(y)])
            done += len(y)
            yield x, y, outputs

    def run_named(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for the batch ``x`` by tensor name."""
        return dict(zip(self.output_names, self.run(x)))


def check_width(scores: np.ndarray, declared: int, output: str, labels: np.ndarray) -> None:
    """The class scores a batch really has must be as many as the model declares (an exporter can declare a
    wrong shape): the error names both, and the labels' range."""
    width = int(scores.shape[-1]) if scores.ndim else 1
    if width != declared:
        most = f"; the data's labels go up to {int(labels.max())}" if len(labels) else ""
        raise OnnxFaultError(f"the model declares {declared} classes for its output '{output}' but computes {width} "
                             f"on the first batch{most}: its declared output shape is wrong; fix the model's "
                             "output shape (or its export)")


def check_scores(scores: np.ndarray, samples: np.ndarray) -> None:
    """Class scores must be finite; ``samples`` holds each row's index in the data (named in the error)."""
    if np.isfinite(scores).all():
        return
    finite = np.isfinite(scores.reshape(len(scores), -1)).all(axis=1)
    if not finite.all():
        first = int(samples[int(np.argmin(finite))])
        raise OnnxFaultError(f"the model's class scores for data sample {first} are NaN or infinite, so its "
                             "predictions mean nothing; check the model's weights (or pass `allow_nonfinite`)")
