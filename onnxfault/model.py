"""Loading an ONNX classifier: validation, input/output discovery, dynamic batch, neuron layers."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from . import graph as g
from . import layers as lay
from .errors import OnnxFaultError, close_matches_hint
from .model_forms import ModelLike, in_memory_onnx
from .runtime import Session, records

if TYPE_CHECKING:
    from .data.preprocessing import Preprocessing

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
_INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
              onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}
_INPUT_TYPES = _FLOAT_TYPES | _INT_TYPES | {onnx.TensorProto.BOOL}
GRANULARITIES = ("channel", "element")


@dataclass(frozen=True)
class ModelInput:
    """One input of a model: its name, numpy dtype and per-sample shape (batch axis dropped; None: dynamic)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]
    vocabulary: int | None = None  # token ids: the rows of the embedding they look up (ids 0..vocabulary-1)

    @property
    def is_float(self) -> bool:
        return self.dtype.kind == "f"

    def example(self, batch: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """A batch of valid values: random in [0, 1) for floats (zeros without ``rng``), ones for integers
        and bools (a token id 1 and a mask of ones are valid for any text model)."""
        shape = (batch, *(1 if d is None else d for d in self.shape))
        if self.is_float:
            return rng.random(shape).astype(self.dtype) if rng is not None else np.zeros(shape, self.dtype)
        return np.ones(shape, self.dtype)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype.name, "shape": ["N", *self.shape]}


@dataclass(frozen=True)
class Layer:
    """A tensor that holds neurons.

    ``shape`` is per sample (batch axis dropped); ``channel_axis`` indexes ``shape`` and is None for
    1-D tensors, where channel and element granularity coincide.
    """

    tensor: str
    op: str
    shape: tuple[int, ...]
    channel_axis: int | None

    def neurons(self, granularity: str = "channel") -> int:
        if granularity == "channel" and self.channel_axis is not None:
            return self.shape[self.channel_axis]
        return int(np.prod(self.shape, dtype=np.int64))

    def to_json(self, granularity: str = "channel") -> dict:
        return {"tensor": self.tensor, "op": self.op, "shape": list(self.shape),
                "neurons": self.neurons(granularity)}


@dataclass
class Model:
    """A validated ONNX classifier, ready to run (batch axis dynamic when that could be arranged)."""

    path: str
    proto: onnx.ModelProto
    input_name: str  # the first input (for a model with one, its only input)
    input_shape: tuple[int | None, ...]  # per sample
    output_name: str
    num_classes: int
    opset: int
    fixed_batch: int | None = None  # set when the batch could not be made dynamic
    notes: list[str] = field(default_factory=list)
    declared_output: str = ""  # the graph output holding the scores (output_name may be its flattened copy)
    inputs: tuple[ModelInput, ...] = ()  # every input the data feeds, in graph order
    _layers: list[Layer] | None = field(default=None, repr=False)
    _shapes: dict[str, tuple[int, ...] | None] = field(default_factory=dict, repr=False)  # per tensor, measured once

    def session(self, device: str = "auto", outputs: list[str] | None = None,
                preprocessing: Preprocessing | None = None) -> Session:
        """A session whose outputs are the class scores followed by the tensors ``outputs`` (for
        ``preprocessing``, see :meth:`session_for`)."""
        if not outputs:  # no surgery needed
            return self.session_for(self.scores_only(), device, preprocessing)
        names = list(dict.fromkeys([self.output_name, *outputs]))
        return self.session_for(_only_outputs(g.expose_outputs(self.proto, names), names), device, preprocessing)

    def session_for(self, proto: onnx.ModelProto, device: str = "auto",
                    preprocessing: Preprocessing | None = None) -> Session:
        """A session for a variant of this model (same input), e.g. one made by graph surgery. With a data
        set's ``preprocessing`` (``dataset.preprocessing``), the session takes that data set's batches as
        read and converts them in the graph (``graph.prepend_preprocessing``); its ``scored`` feeds them."""
        if preprocessing is None or not self.takes_one_float_input:
            return Session(proto, self.input_name, device, self.fixed_batch, classes=self.num_classes)
        fed = g.prepend_preprocessing(proto, self.input_name, preprocessing.dtype, preprocessing.divisor,
                                      preprocessing.mean, preprocessing.std)
        return Session(fed, g.RAW_INPUT, device, self.fixed_batch, preprocessing, self.num_classes)

    def computed_classes(self) -> int | None:
        """How many class scores the model computes for one example sample (None when its input sizes are
        dynamic, so no example can be made)."""
        if self._dynamic_sizes():
            return None
        return int(self.session("cpu").run(self.example_feeds(1))[0].shape[-1])

    @property
    def takes_one_float_input(self) -> bool:
        """One float input (images, audio, features): the data may be scaled (``/ 255``, ``--mean/--std``)
        and the gradient methods differentiate with respect to it."""
        return len(self.inputs) == 1 and self.inputs[0].is_float

    @property
    def data_shape(self):
        """What a data set is fitted to (:func:`~onnxfault.data.as_dataset`): the per-sample shape of a model
        with one float input, else the inputs themselves (integer inputs are fed as read; several inputs take
        one array each)."""
        return self.input_shape if not self.inputs or self.takes_one_float_input else self.inputs

    @property
    def token_input(self) -> ModelInput | None:
        """The input of token ids: the first integer input of per-sample shape (T,) that looks up an
        embedding (a text model's ``input_ids``); None for other models."""
        return next((i for i in self.inputs if i.vocabulary and len(i.shape) == 1), None)

    @property
    def attention_mask(self) -> ModelInput | None:
        """The token ids' attention mask (1 = real token, 0 = padding): the integer or bool input of the same
        shape whose name says ``mask``; None when there is none (then every token is real)."""
        tokens = self.token_input
        if tokens is None:
            return None
        return next((i for i in self.inputs if i is not tokens and i.dtype.kind in "iub"
                     and i.shape == tokens.shape and "mask" in i.name.lower()), None)

    def is_sequence_layer(self, layer: Layer) -> bool:
        """A (N, T, H) tensor of a text model: one row of H features per token of the token input."""
        tokens = self.token_input
        return (tokens is not None and len(layer.shape) == 2 and layer.channel_axis == 1
                and tokens.shape[0] is not None and layer.shape[0] == tokens.shape[0])

    def example_feeds(self, batch: int, rng: np.random.Generator | None = None):
        """A batch of valid inputs (:meth:`ModelInput.example`): an array for one input, else a record array
        with one field per input (what a data set of several inputs gives, see ``Session.run``)."""
        if len(self.inputs) <= 1:
            return (self.inputs[0] if self.inputs else ModelInput(self.input_name, np.dtype(np.float32),
                                                                  self.input_shape)).example(batch, rng)
        return records({i.name: i.example(batch, rng) for i in self.inputs})

    def scores_only(self) -> onnx.ModelProto:
        """The model with the class scores as its only output."""
        return _only_outputs(self.proto, [self.output_name])

    @property
    def scores_are_probabilities(self) -> bool:
        """True when the class scores come out of a Softmax, maybe reshaped (else they are logits)."""
        return g.producing_op(self.proto, self.output_name, through=g.RESHAPING) == "Softmax"

    @property
    def layers(self) -> list[Layer]:
        """Candidate neuron layers (``--layers auto``)."""
        if self._layers is None:
            graph = lay.sorted_graph(self.proto)
            self._layers = self._describe(lay.candidate_layers(graph, self.output_name), graph=graph)
        return self._layers

    def all_layers(self) -> list[Layer]:
        """Every intermediate float tensor before the class-score layer (``--layers all``)."""
        graph = lay.sorted_graph(self.proto)
        return self._describe(lay.upstream_tensors(graph, self.output_name), graph=graph)

    def named_layers(self, names: list[str]) -> list[Layer]:
        """Layers for explicit tensor names (unknown names fail with close matches)."""
        g.require_tensors(self.proto, names)
        graph = lay.sorted_graph(self.proto)
        return self._describe([lay.CandidateTensor(n, getattr(graph.producer(n), "op", "input")) for n in names],
                              named=True, graph=graph)

    def select_layers(self, spec: str | list[str] = "auto") -> list[Layer]:
        """``auto``, ``all`` or a comma-separated list / list of tensor names."""
        if isinstance(spec, str) and spec == "auto":
            layers = self.layers
        elif isinstance(spec, str) and spec == "all":
            layers = self.all_layers()
        else:
            names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
            layers = self.named_layers([n for n in names if n])
        if not layers:
            raise OnnxFaultError("the model has no neuron layers before its class-score layer; "
                                 "name tensors with `layers` T1,T2 (see `onnxfault inspect`)")
        return layers

    def _describe(self, candidates: list[lay.CandidateTensor], named: bool = False,
                  graph: lay.GraphView | None = None) -> list[Layer]:
        """Layers for the candidates whose first axis indexes samples (for ``named`` tensors, any other is
        an error); ``graph``: the model's ``layers.sorted_graph`` when already read."""
        names = [c.tensor for c in candidates]
        shapes = self._per_sample_shapes(names)
        strays = [n for n in names if shapes[n] is None]
        if named and strays:
            raise OnnxFaultError(f"tensor '{strays[0]}' does not hold one row per sample (its first axis is not "
                                 "the batch axis, e.g. a sequence-first tensor inside attention); name another")
        kept = [c for c in candidates if shapes[c.tensor] is not None]
        ranks = {c.tensor: len(shapes[c.tensor]) + 1 for c in kept if len(shapes[c.tensor]) >= 2}
        axes = lay.channel_axes(graph or lay.sorted_graph(self.proto), ranks) if ranks else {}
        return [Layer(c.tensor, c.op, shapes[c.tensor], axes[c.tensor] - 1 if c.tensor in axes else None)
                for c in kept]

    def _per_sample_shapes(self, names: list[str]) -> dict[str, tuple[int, ...] | None]:
        """Per-sample shapes (see ``_measure_shapes``), each tensor's measured once per model."""
        missing = [n for n in dict.fromkeys(names) if n not in self._shapes]
        if missing:
            self._shapes.update(self._measure_shapes(missing))
        return {n: self._shapes[n] for n in names}

    def _measure_shapes(self, names: list[str]) -> dict[str, tuple[int, ...] | None]:
        """Per-sample shapes. With fixed input sizes: the shapes recorded by shape inference for tensors whose
        first axis is the input's symbolic batch axis and whose other sizes are all known; the others from
        runs on a batch of two samples and on the first alone, None for a tensor whose first axis does not
        index samples (its size is not the batch size, or sample 0's slice differs from its value alone).
        With dynamic input sizes: the shapes recorded by shape inference, trusted to be batch-first."""
        if self._dynamic_sizes() or self.fixed_batch is not None:
            recorded = _static_shapes(self.proto)
            missing = [n for n in names if n not in recorded]
            if missing and self.fixed_batch is None:
                raise OnnxFaultError(f"cannot determine layer shapes: model input '{self._dynamic_sizes()[0].name}' "
                                     f"has dynamic sizes {self._dynamic_sizes()[0].shape}; export the model with "
                                     "fixed sizes (for text: a fixed sequence length)")
            if missing:
                outs = self.session("cpu", missing).run(self.example_feeds(1))
                recorded = {**recorded, **{n: tuple(int(d) for d in o.shape[1:]) for n, o in zip(missing, outs[1:])}}
            return {n: recorded[n] for n in names}
        inferred = _batch_first_shapes(self.proto, self.input_name)
        missing = [n for n in names if n not in inferred]
        measured = self._run_shapes(missing) if missing else {}
        return {n: inferred[n] if n in inferred else measured[n] for n in names}

    def _dynamic_sizes(self) -> list[ModelInput]:
        """The inputs with a dynamic size besides the batch axis."""
        return [i for i in self.inputs if any(d is None for d in i.shape)]

    def _run_shapes(self, names: list[str]) -> dict[str, tuple[int, ...] | None]:
        """Per-sample shapes measured on a batch of two samples and on the first alone (see ``_measure_shapes``)."""
        session = self.session("cpu", names)
        x = self.example_feeds(2, np.random.default_rng(0))
        pair, single = session.run(x)[1:], session.run(x[:1])[1:]
        return {n: tuple(int(d) for d in b.shape[1:]) if _batch_major(b, a) else None
                for n, b, a in zip(names, pair, single)}


def _batch_major(pair: np.ndarray, single: np.ndarray) -> bool:
    """True when ``pair`` (a tensor for two samples) has one row per sample, the first equal to ``single``
    (the tensor for the first sample alone)."""
    if pair.ndim == 0 or pair.shape[0] != 2 or single.shape != (1, *pair.shape[1:]):
        return False
    if pair.dtype.kind != "f":
        return bool(np.array_equal(pair[:1], single))
    return bool(np.allclose(pair[:1], single, rtol=1e-4, atol=1e-5, equal_nan=True))


def _only_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_name = {o.name: o for o in model.graph.output}
    del out.graph.output[:]
    out.graph.output.extend(by_name[n] for n in names)
    return out


def _dims(value: onnx.ValueInfoProto) -> tuple[int | None, ...] | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)


def _with_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with inferred tensor shapes and types recorded (best effort: unchanged on failure)."""
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort; a run fills in what is missing
        return model


def _batch_first_shapes(model: onnx.ModelProto, input_name: str) -> dict[str, tuple[int, ...]]:
    """:func:`_static_shapes` of the tensors whose first axis is the input's symbolic batch axis (the same
    ``dim_param``); empty when the input's batch axis has no name."""
    value = next(i for i in model.graph.input if i.name == input_name)
    batch = value.type.tensor_type.shape.dim[0].dim_param
    return _static_shapes(model, batch) if batch else {}


def _static_shapes(model: onnx.ModelProto, batch: str | None = None) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes recorded in the model whose non-batch dims are all fixed; with ``batch``, only of the
    tensors whose first axis is the symbolic axis of that name."""
    shapes = {}
    for value in list(model.graph.value_info) + list(model.graph.output):
        dims = _dims(value)
        if not dims or any(d is None for d in dims[1:]):
            continue
        if batch is None or value.type.tensor_type.shape.dim[0].dim_param == batch:
            shapes[value.name] = tuple(dims[1:])
    return shapes


def _read_proto(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise OnnxFaultError(f"model file {path} does not exist; check the path")
    if not path.is_file():
        raise OnnxFaultError(f"model path {path} is not a file; give an .onnx file")
    _refuse_other_formats(path)
    try:
        return onnx.load(str(path))
    except onnx.checker.ValidationError as err:  # external data outside the model's folder, a symlink, …
        raise OnnxFaultError(f"{path} refers to external data onnx refuses to read ({str(err).splitlines()[0]}); "
                             "keep its data files as plain files inside the model's folder") from None
    except (DecodeError, ValueError, RuntimeError, RecursionError) as err:
        raise OnnxFaultError(f"{path} is not a readable ONNX model (truncated or not ONNX?): "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from err
    except OSError as err:
        raise OnnxFaultError(f"cannot read model {path}: {err.strerror or err}") from err


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _refuse_other_formats(path: Path) -> None:
    """A Keras (.json, .h5, .keras) or TorchScript file given as the model: say how to convert it."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as err:
        raise OnnxFaultError(f"cannot read model {path}: {err.strerror or err}") from None
    suffix = path.suffix.lower()
    if head.lstrip()[:1] == b"{" or suffix == ".json":
        what, kind, extra = "a Keras architecture (JSON)", ".json", f" `weights` {_quoted(path.with_suffix('.h5'))}"
    elif head.startswith(_HDF5_MAGIC) or suffix in (".h5", ".hdf5"):
        what, kind, extra = "a Keras HDF5 file", ".h5", ""
    elif head[:2] == b"PK" and suffix == ".keras":
        what, kind, extra = "a Keras 3 model", ".keras", ""
    elif head[:2] == b"PK" and suffix in (".pt", ".pth"):
        what, kind, extra = "a TorchScript model", suffix, " `input_shape` C,H,W"
    else:
        return
    source = path if suffix == kind or (kind == ".h5" and suffix == ".hdf5") else path.with_suffix(kind)
    rename = "" if source == path else f"rename it to {source.name}, then "
    raise OnnxFaultError(f"{path} is {what}, not an ONNX model; {rename}convert it first: "
                         f"onnxfault convert {_quoted(source)}{extra} -o {_quoted(path.with_suffix('.onnx'))}")


def _quoted(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


def _check(proto: onnx.ModelProto, path: Path | str) -> None:
    if not proto.graph.node or not proto.opset_import:
        raise OnnxFaultError(f"{path} is not an ONNX model (no graph or opset found); give an .onnx file")
    try:
        if proto.ByteSize() < 2**31 - 1 or not isinstance(path, Path):
            onnx.checker.check_model(proto)
        else:
            onnx.checker.check_model(str(path))
    except Exception as err:  # onnx raises ValidationError and friends
        raise OnnxFaultError(f"{path} fails the ONNX checker: {str(err).splitlines()[0]}") from err


def _model_inputs(proto: onnx.ModelProto) -> list[ModelInput]:
    """Every input the data must feed (graph inputs that are not initializers): numbers or bools of known rank."""
    initializers = {i.name for i in proto.graph.initializer}
    values = [i for i in proto.graph.input if i.name not in initializers]
    if not values:
        raise OnnxFaultError("the model has no inputs (every graph input is an initializer); give a classifier")
    inputs, view = [], None
    for value in values:
        elem = value.type.tensor_type.elem_type
        if elem not in _INPUT_TYPES:
            raise OnnxFaultError(f"model input '{value.name}' has type {onnx.TensorProto.DataType.Name(elem)}; "
                                 "onnxfault feeds numbers and bools (float, int, uint, bool tensors)")
        dims = _dims(value)
        if not dims:
            raise OnnxFaultError(f"model input '{value.name}' has no known rank; re-export it with a shaped input")
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
        vocabulary = None
        if dtype.kind in "iu":  # integer inputs only: image models never read the graph here
            view = view or lay.sorted_graph(proto)
            vocabulary = g.embedding_rows(view, value.name)
        inputs.append(ModelInput(value.name, dtype, tuple(dims[1:]), vocabulary))
    return inputs


def _score_classes(value: onnx.ValueInfoProto) -> tuple[bool, int | None]:
    """Whether an output can hold class scores — float, (batch, classes) once singleton axes are dropped:
    (N, C), (N, C, 1, 1), (N, 1, C) — and its number of classes (None when dynamic)."""
    dims = _dims(value)
    if value.type.tensor_type.elem_type not in _FLOAT_TYPES or dims is None or len(dims) < 2:
        return False, None
    wide = [d for d in dims[1:] if d != 1]
    return len(wide) == 1, wide[0] if len(wide) == 1 else None


def _class_output(proto: onnx.ModelProto, wanted: str | None = None) -> tuple[onnx.ValueInfoProto, int | None]:
    """The class-score output: ``wanted``, or the only output that can hold class scores."""
    outputs = list(proto.graph.output)
    shown = ", ".join(f"{o.name} {_shape_text(o)}" for o in outputs)
    if wanted is not None:
        chosen = next((o for o in outputs if o.name == wanted), None)
        if chosen is None:
            raise OnnxFaultError(close_matches_hint(wanted, [o.name for o in outputs], "output") +
                                 " (`output` names a graph output; see `onnxfault inspect`)")
        ok, classes = _score_classes(chosen)
        if not ok:
            raise OnnxFaultError(f"output '{wanted}' {_shape_text(chosen)} cannot hold class scores; onnxfault needs "
                                 "a float (batch, classes) output, singleton axes allowed; the outputs are: " + shown)
        return chosen, classes
    candidates = [(o, c) for o in outputs for ok, c in [_score_classes(o)] if ok]
    if not candidates:
        raise OnnxFaultError(f"no class-score output found among ({shown}); onnxfault needs a float output "
                             "of shape (batch, classes)")
    if len(candidates) > 1:
        listed = ", ".join(f"{o.name} {_shape_text(o)}" for o, _ in candidates)
        raise OnnxFaultError(f"the model has {len(candidates)} outputs that could be class scores ({listed}); "
                             "choose one with `output` NAME")
    return candidates[0]


def _shape_text(value: onnx.ValueInfoProto) -> str:
    dims = _dims(value)
    if dims is None:
        return "(shape unknown)"
    return "(" + ", ".join("N" if i == 0 and d is None else "?" if d is None else str(d) for i, d in enumerate(dims)) + ")"


def _batch_is_dynamic(value: onnx.ValueInfoProto) -> bool:
    dim0 = value.type.tensor_type.shape.dim[0]
    return not dim0.HasField("dim_value")


def _verify_batch(model: Model, reference: onnx.ModelProto, batch: int) -> bool:
    """True when the dynamic-batch model gives, for a batch of 2, what the original gives per sample."""
    if model._dynamic_sizes():
        return False
    x = model.example_feeds(2, np.random.default_rng(0))
    try:
        got = model.session("cpu").run(x)[0]
        original = Session(_only_outputs(reference, [model.output_name]), model.input_name, "cpu", batch)
        want = original.run(x)[0]
    except OnnxFaultError:
        return False
    return got.shape == want.shape and np.allclose(got, want, rtol=1e-4, atol=1e-5)


def load_model(path: str | Path, output: str | None = None) -> Model:
    """Load and check an ONNX classifier: inputs of numbers or bools (one or several: images, token ids and
    attention masks, …), a float (batch, classes) output.

    ``output`` names the class-score output when the model has several candidates. Scores of shape
    (N, C, 1, 1) or (N, 1, C) are flattened to (N, C) by graph surgery, and ``notes`` says so. A fixed batch
    size is made dynamic when a batch of 2 then gives what the original gives; otherwise the model runs in
    chunks of its fixed size and ``notes`` says so.
    """
    path = Path(path)
    return _loaded(_read_proto(path), path, output)


def _loaded(proto: onnx.ModelProto, path: Path | str, output: str | None) -> Model:
    """:func:`load_model` on a model read from ``path`` (a file, or a description of an in-memory model)."""
    _check(proto, path)
    inputs = _model_inputs(proto)
    value = next(i for i in proto.graph.input if i.name == inputs[0].name)
    shaped = _with_shapes(proto)
    chosen, classes = _class_output(shaped, output)  # outputs may carry no declared shape
    dims = _dims(value)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    notes = []
    scores = chosen.name
    if len(_dims(chosen)) != 2:
        proto, scores = g.flatten_output(proto, chosen.name), g.flattened_name(chosen.name)
        shaped = _with_shapes(proto)
        notes.append(f"class scores '{chosen.name}' have shape {_shape_text(chosen)}; their singleton axes are "
                     "dropped to (N, classes)")
    model = Model(str(path), proto, value.name, dims[1:], scores, classes or 0, opset, notes=notes,
                  declared_output=chosen.name, inputs=tuple(inputs))
    if not _batch_is_dynamic(value):
        batch = dims[0]
        model.proto = g.make_batch_dynamic(proto, value.name)
        if not _verify_batch(model, proto, batch):
            model.proto, model.fixed_batch = proto, batch
            model.notes.append(f"the model's batch size is fixed at {batch} and could not be made dynamic; "
                               f"running {batch} sample(s) at a time (slower)")
        else:
            model.notes.append(f"the model's fixed batch size {batch} was made dynamic (verified on a batch of 2)")
    model.proto = shaped if model.proto is proto else _with_shapes(model.proto)
    if not model.num_classes:
        if model._dynamic_sizes():
            raise OnnxFaultError("cannot tell the number of classes: the output and input shapes are dynamic")
        model.num_classes = model.computed_classes()
    return model


def as_model(model: ModelLike, output: str | None = None, example_input=None) -> Model:
    """``model`` as a loaded :class:`Model`: a path (:func:`load_model`), ``bytes`` of a serialized model, an
    ``onnx.ModelProto``, a ``torch.nn.Module`` (exported on ``example_input``, a tensor or numpy array of one
    batch), a Keras 3 model, or a loaded ``Model`` itself (``output`` must then agree with it). Framework
    objects are exported in memory (see :mod:`onnxfault.model_forms`); ``Model.path`` then describes them."""
    if isinstance(model, (str, os.PathLike)):
        return load_model(model, output)
    if not isinstance(model, Model):
        return _loaded(*in_memory_onnx(model, example_input), output)
    if output is not None and output not in (model.declared_output, model.output_name):
        raise OnnxFaultError(f"the model was loaded with class-score output '{model.declared_output}', not "
                             f"'{output}'; load it with load_model(path, output='{output}')")
    return model
