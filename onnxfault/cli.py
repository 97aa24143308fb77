"""The ``onnxfault`` command line: thin commands over the public API.

Option groups (model, data, device, output) are defined once below and shared by the commands. Heavy
modules (onnx, onnxruntime, numpy, torch) are imported inside the commands, so ``--help`` is instant.
"""
from __future__ import annotations

import functools
import inspect as pyinspect
import math
import os
import re
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape as literal_help  # help text is rich markup: brackets must be escaped
from rich.text import Text

from .console import LiteralConsole, shown
from .errors import OnnxFaultError, check_finite

app = typer.Typer(
    help="Find the neurons responsible for a classifier's mistakes (DeepFault-style fault localization on ONNX).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
_SHAPLEY_PANEL = "Shapley (--measure shapley, or a method that ranks by it)"
DEBUG_ENV = "ONNXFAULT_DEBUG"  # set to 1: errors show their traceback, as --debug does
out = LiteralConsole()
err = LiteralConsole(stderr=True)
_debug = False  # set by --debug

# ---- shared option groups ---------------------------------------------------------------------------
ModelArg = Annotated[Path, typer.Argument(help="ONNX classifier (.onnx)", show_default=False)]
DataOpt = Annotated[Path, typer.Option("--data", help=literal_help("IDX (*-ubyte[.gz]), .npz with x/y (or y and one array per model input), Parquet (x/image or one column per input, y/label), CIFAR batch, folder of class folders (images or .wav files), folder of .npz shards, or texts (.csv/.jsonl/.parquet with --tokenizer)"))]
LabelsOpt = Annotated[Optional[Path], typer.Option("--labels", help="IDX labels file (default: found beside --data by name)", rich_help_panel="Data")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", help="use only the first N selected samples", rich_help_panel="Data")]
ClassesOpt = Annotated[Optional[str], typer.Option("--classes", help="keep samples of these classes, e.g. 0,3", rich_help_panel="Data")]
RawOpt = Annotated[bool, typer.Option("--raw", help=literal_help("keep uint8 values 0-255 (default: scale to [0,1])"), rich_help_panel="Data")]
MeanOpt = Annotated[Optional[str], typer.Option("--mean", help="per-channel mean subtracted after scaling, e.g. 0.49,0.48,0.45", rich_help_panel="Data")]
StdOpt = Annotated[Optional[str], typer.Option("--std", help="per-channel std divided after --mean", rich_help_panel="Data")]
LayoutOpt = Annotated[Optional[str], typer.Option("--layout", help="model input layout when the data fits several: nchw|nhwc", rich_help_panel="Data")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="samples per forward pass", rich_help_panel="Data")]
TokenizerOpt = Annotated[Optional[Path], typer.Option("--tokenizer", help="raw text (.csv, .jsonl, .parquet): a tokenizer.json or its folder (Hugging Face tokenizers; nothing downloaded)", rich_help_panel="Text data", show_default=False)]
TextColumnOpt = Annotated[str, typer.Option("--text-column", help="the column of texts", rich_help_panel="Text data")]
LabelColumnOpt = Annotated[str, typer.Option("--label-column", help="the column of class numbers", rich_help_panel="Text data")]
MaxLengthOpt = Annotated[Optional[int], typer.Option("--max-length", help="tokens per text, for a model whose sequence length is dynamic (default: the model's)", rich_help_panel="Text data", show_default=False)]
ClassNamesOpt = Annotated[Optional[str], typer.Option("--class-names", help="class folders in class order, comma-separated (instead of classes.txt or numeric/name order)", rich_help_panel="Data", show_default=False)]
SampleRateOpt = Annotated[Optional[int], typer.Option("--sample-rate", help="sound files: the model's sample rate in Hz (files at another rate are resampled)", rich_help_panel="Data", show_default=False)]
OutputOpt = Annotated[Optional[str], typer.Option("--output", help="the class-score output, for a model with several (see inspect)", show_default=False)]
DeviceOpt = Annotated[str, typer.Option("--device", help=literal_help("auto|cpu|cuda (cuda needs onnxfault[gpu])"), rich_help_panel="Run")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar, no table", rich_help_panel="Run")]
NonfiniteOpt = Annotated[bool, typer.Option("--allow-nonfinite", help="go on when the model's class scores are NaN or infinite (default: an error naming the first such sample)", rich_help_panel="Run")]
RayOpt = Annotated[Optional[str], typer.Option("--ray", help=literal_help("run on Ray: local (a Ray runtime on this machine), auto or HOST:PORT or ray://HOST:PORT (a running cluster); needs onnxfault[ray]"), rich_help_panel="Scaling out", show_default=False)]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", help="Ray workers (default: one per CPU, or per GPU, of the cluster)", rich_help_panel="Scaling out", show_default=False)]
TokenActivityOpt = Annotated[Optional[str], typer.Option("--token-activity", help="text models: a hidden unit is active on a sample when active on any real token, on their mean, or on the first (cls) token: any|mean|cls (default any; padding never counts)", show_default=False)]


_NEURONS_PANEL = "Suspicious neurons (methods that use them)"

# The one table from the library's parameter names to the CLI's flags; any other name is --name-with-dashes.
FLAGS = {"cls": "--class", "k": "-k", "lambda_": "--lambda", "start": "--from", "out_dir": "--out",
         "measure_name": "--measure", "neurons_file": "--neurons", "model_a": "MODEL_A", "model_b": "MODEL_B",
         "shapley": "--permutations/--noise/--shapley-samples/--lambda", "samples_shapley": "--shapley-samples"}


def flag_of(name: str) -> str:
    """The CLI flag of the library parameter ``name``."""
    return FLAGS.get(name, "--" + name.rstrip("_").replace("_", "-"))


def cli_text(message: str) -> str:
    """A library message as the CLI says it: each parameter name in backticks (`` `k` ``) as its flag (``-k``)."""
    return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`", lambda m: flag_of(m.group(1)), str(message))


def _ray(address: RayOpt = None, workers: WorkersOpt = None):
    """``--ray``/``--workers`` as RayOptions, or None to run in this process (the ray option group)."""
    if address is None:
        if workers is not None:
            raise OnnxFaultError("--workers sets the number of Ray workers; add --ray local (or a cluster's address)")
        return None
    from .distributed import RayOptions

    return RayOptions(address, workers)


def _shapley(permutations: Annotated[Optional[int], typer.Option("--permutations", help=literal_help("Monte-Carlo permutations [default: 20]"), rich_help_panel=_SHAPLEY_PANEL, show_default=False)] = None,
             noise: Annotated[Optional[float], typer.Option("--noise", help=literal_help("std of the Gaussian input noise Δx [default: 0.1]"), rich_help_panel=_SHAPLEY_PANEL, show_default=False)] = None,
             shapley_samples: Annotated[Optional[int], typer.Option("--shapley-samples", help=literal_help("samples the loss change is averaged over [default: 100]"), rich_help_panel=_SHAPLEY_PANEL, show_default=False)] = None,
             lambda_: Annotated[Optional[float], typer.Option("--lambda", help=literal_help("excitable: normalised Shapley value ψ / max ψ > λ [default: 0.5]"), rich_help_panel=_SHAPLEY_PANEL, show_default=False)] = None):
    """The Shapley option group: ShapleyOptions with the flags given (the others at their defaults), or None when
    none is given."""
    if all(v is None for v in (permutations, noise, shapley_samples, lambda_)):
        return None
    from .shapley import ShapleyOptions

    defaults = ShapleyOptions()
    return ShapleyOptions(*(d if v is None else v for v, d in (
        (permutations, defaults.permutations), (noise, defaults.noise), (shapley_samples, defaults.samples),
        (lambda_, defaults.lambda_)))).check()


def _numbers(text: Optional[str], flag: str, kind=float) -> Optional[list]:
    """A comma-separated list of finite numbers, or None for None."""
    if text is None:
        return None
    try:
        numbers = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise OnnxFaultError(f"{flag} '{text}' is not a comma-separated list of numbers; e.g. {flag} 0,3") from None
    if not all(math.isfinite(n) for n in numbers):
        raise OnnxFaultError(f"{flag} '{text}' holds a value that is not a finite number (NaN or infinite)")
    return numbers


def _data_options(labels: LabelsOpt = None, limit: LimitOpt = None, classes: ClassesOpt = None, raw: RawOpt = False,
                  mean: MeanOpt = None, std: StdOpt = None, layout: LayoutOpt = None, batch_size: BatchOpt = 256,
                  sample_rate: SampleRateOpt = None, tokenizer: TokenizerOpt = None, text_column: TextColumnOpt = "text",
                  label_column: LabelColumnOpt = "label", max_length: MaxLengthOpt = None,
                  class_names: ClassNamesOpt = None):
    """The data option group: the flags as :class:`~onnxfault.data.DataOptions`."""
    from .data import DataOptions

    return DataOptions(labels=str(labels) if labels else None, limit=limit, classes=_numbers(classes, "--classes", int),
                       raw=raw, mean=_numbers(mean, "--mean"), std=_numbers(std, "--std"), layout=layout,
                       batch_size=batch_size, sample_rate=sample_rate,
                       tokenizer=str(tokenizer) if tokenizer else None, text_column=text_column,
                       label_column=label_column, max_length=max_length,
                       class_names=None if class_names is None else class_names.split(","))


class Command:
    """A command composed of option groups: ``function``'s own parameters, then each group's flags (the
    parameters of its builder, declared once), whose values are built into one object passed to ``function`` as
    the parameter named in ``groups``; ``extra`` adds flags read when typer builds the command (the registered
    methods' options) and passed on as keywords. Runs inside the CLI's error boundary."""

    __annotations__: dict = {}

    def __init__(self, function, groups: dict, extra=None):
        self.function, self.groups, self.extra = function, groups, extra
        self.__name__ = self.__qualname__ = function.__name__.lstrip("_")
        self.__doc__ = function.__doc__

    @property
    def __signature__(self) -> pyinspect.Signature:
        base = pyinspect.signature(self.function, eval_str=True)
        own = [p for p in base.parameters.values()
               if p.name not in self.groups and p.kind is not pyinspect.Parameter.VAR_KEYWORD]
        grouped = [p.replace(kind=pyinspect.Parameter.KEYWORD_ONLY) for build in self.groups.values()
                   for p in pyinspect.signature(build, eval_str=True).parameters.values()]
        extra = self.extra() if self.extra else []
        replaced = {p.name: p for p in extra if p.name in {q.name for q in own}}  # an extra one may redefine its own
        own = [replaced.get(p.name, p).replace(kind=p.kind) for p in own]
        extra = [p for p in extra if p.name not in replaced]
        names = [p.name for p in [*own, *grouped, *extra]]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise TypeError(f"{self.__name__}: options named twice: {clash}")
        return base.replace(parameters=[*own, *grouped, *extra])

    def __call__(self, **kwargs):
        def run(**given):
            built = {}
            for into, build in self.groups.items():
                names = pyinspect.signature(build).parameters
                built[into] = build(**{name: given.pop(name) for name in names})
            return self.function(**given, **built)

        return handles_errors(run)(**kwargs)


def command(groups: dict | None = None, extra=None):
    """Register ``function`` as a command composed of the option ``groups`` (see :class:`Command`)."""
    def register(function):
        composed = Command(function, groups or {}, extra)
        app.command(name=composed.__name__)(composed)
        return composed

    return register


DATA_GROUP = {"data_options": _data_options}


def _training_data_options(**given):
    """The data option group of ``retrain``, whose ``--batch-size`` is the training batch (default 32)."""
    return _data_options(**given)


_training_data_options.__signature__ = pyinspect.signature(_data_options).replace(parameters=[
    p.replace(default=32, annotation=Annotated[int, typer.Option(
        "--batch-size", help="training batch size (the data is read in batches of it too)", rich_help_panel="Data")])
    if p.name == "batch_size" else p for p in pyinspect.signature(_data_options, eval_str=True).parameters.values()])
TRAINING_DATA_GROUP = {"data_options": _training_data_options}
RAY_GROUP = {"ray_options": _ray}
SHAPLEY_GROUP = {"shapley": _shapley}


def _read_by(model, data, data_options, *more) -> list:
    """The files a command reads: the model, the data, its labels and tokenizer files, and ``more``."""
    return [model, data, getattr(data_options, "labels", None), getattr(data_options, "tokenizer", None), *more]


def _stdout(path) -> bool:
    """Whether an output path is ``-``: the command writes it to stdout (and prints nothing else there)."""
    return path is not None and str(path) == "-"


def _save_result(result, path) -> bool:
    """Save ``result`` (with this command line) to ``--json`` ``path``, if given; ``-`` prints it instead, and then
    nothing else may go to stdout: returns True."""
    if path is None:
        return False
    from .provenance import command_line

    result.provenance["command"] = command_line()
    if _stdout(path):
        _print_json(result.to_json())
        return True
    result.save(path)
    return False


def _show(result, json) -> None:
    """A result's warnings, then the result saved to ``--json`` (``-``: printed as JSON) or printed as its lines."""
    _warn(result.warnings)
    if _save_result(result, json):
        return
    for line in result.lines():
        out.print(Text(line), soft_wrap=True)


def _check_output(path, flag: str, inputs) -> None:
    """An output file (None: none asked for; ``-``: stdout) must be writable, a regular file, and none of
    ``inputs``."""
    from .files import check_not_read, check_writable

    if path is not None and not _stdout(path):
        check_writable(path, flag)
        check_not_read(path, flag, inputs)


def _print_json(data: dict) -> None:
    """``data`` as the JSON a ``--json`` file holds, on stdout."""
    import json as _json

    from .files import json_safe

    print(_json.dumps(json_safe(data), indent=2, allow_nan=False))


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        out.print(f"onnxfault {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(debug: Annotated[bool, typer.Option("--debug", help=f"show the traceback of an error (as {DEBUG_ENV}=1 does)")] = False,
                    version: Annotated[bool, typer.Option("--version", help="print the version and exit", callback=_print_version, is_eager=True)] = False) -> None:
    global _debug
    _debug = debug


def debugging() -> bool:
    """Whether errors show their traceback: ``--debug``, or ``ONNXFAULT_DEBUG`` set and not 0."""
    return _debug or os.environ.get(DEBUG_ENV, "0").strip() not in ("", "0")


def print_error(message: str) -> None:
    """The one ``error: …`` line on stderr (the message printed as text, control characters escaped)."""
    err.print(Text("error:", style="bold red"), cli_text(message), soft_wrap=True)


def unexpected(error: BaseException) -> str:
    """One line for an exception onnxfault does not turn into its own error: its type and first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    what = type(error).__name__.lstrip("_") + (f": {lines[0][:300]}" if lines else "")
    if isinstance(error, MemoryError):
        what += "; out of memory: try a smaller --batch-size or --limit"
    return f"{what} (rerun with --debug for the traceback)"


def handles_errors(command):
    """The CLI's one error boundary. Float options must be finite; then any error (OnnxFaultError as its
    message, anything else as its type and message) is one ``error:`` line on stderr and exit code 1, Ctrl-C
    is one line and exit code 130; ``--debug`` or ``ONNXFAULT_DEBUG=1`` prints the traceback first."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from .errors import OnnxFaultWarning
        from .interrupts import interruption_in

        try:
            check_finite(**kwargs)  # every float option, by its flag name (lambda_ → --lambda)
            with warnings.catch_warnings():  # the CLI prints a result's warnings itself, as warning: lines
                warnings.simplefilter("ignore", OnnxFaultWarning)
                return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own exits and usage errors
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as error:  # noqa: BLE001 - the boundary: MemoryError, RecursionError, library errors
            stop = interruption_in(error)
            if stop is not None:  # a library turned the interruption into its own error
                raise stop from None
            _fail(str(error) if isinstance(error, OnnxFaultError) else unexpected(error), 1)

    return wrapper


def _fail(message: str, code: int):
    if debugging():
        traceback.print_exc()
    print_error(message)
    raise typer.Exit(code) from None


def _warn(messages) -> None:
    for message in messages:
        err.print(Text("warning:", style="yellow"), cli_text(message), soft_wrap=True)


@contextmanager
def _progress(total: int, batches: int, quiet: bool, label: str):
    """A rich progress bar over samples, shown only on a terminal for more than one batch."""
    if quiet or batches <= 1 or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


# ---- commands ---------------------------------------------------------------------------------------
@app.command()
@handles_errors
def inspect(model: Annotated[Optional[Path], typer.Argument(help="ONNX classifier (.onnx)", show_default=False)] = None,
            json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
            output: OutputOpt = None,
            ops: Annotated[bool, typer.Option("--ops", help="list the ONNX ops the gradient methods can convert to torch")] = False) -> None:
    """Show a model's input, output, opset and candidate neuron layers (or, with --ops, the supported ops)."""
    from .files import json_safe
    from .inspection import inspect_model

    if ops:
        _print_ops(json)
        return
    if model is None:
        raise OnnxFaultError("inspect needs a MODEL (or --ops for the list of supported ops)")
    info = inspect_model(model, output)
    if json:
        import json as _json

        print(_json.dumps(json_safe(info), indent=2, allow_nan=False))
        return
    from rich.table import Table

    out.print(Text(shown(info["model"]), style="bold"), f" opset {info['opset']}, batch {info['batch']}", soft_wrap=True)
    for spec in info.get("inputs", [{**info["input"], "dtype": None}]):
        kind = f"  {spec['dtype']}" if spec["dtype"] else ""
        out.print(Text(f"input  {spec['name']}  {tuple(spec['shape'])}{kind}"), soft_wrap=True)
    out.print(f"output {info['output']['name']}  {info['output']['classes']} classes")
    _warn(info["notes"])
    table = Table(title="candidate neuron layers", caption="neurons per channel (default granularity) and per element")
    for column in ("tensor", "op", "shape", "channels", "elements"):
        table.add_column(column, justify="right" if column.endswith("s") and column != "tensor" else "left",
                         overflow="fold", no_wrap=column != "tensor")
    for layer in info["layers"]:
        table.add_row(layer["tensor"], layer["op"], str(tuple(layer["shape"])), str(layer["neurons"]),
                      str(layer["elements"]))
    out.print(table)


@command({**DATA_GROUP, **RAY_GROUP})
def evaluate(model: ModelArg, data: DataOpt,
             json: Annotated[Optional[Path], typer.Option("--json", help="write the results as JSON to FILE (- for stdout)")] = None,
             all_classes: Annotated[bool, typer.Option("--all-classes", help="show every class, not the 20 worst")] = False,
             output: OutputOpt = None, device: DeviceOpt = "auto", quiet: QuietOpt = False,
             allow_nonfinite: NonfiniteOpt = False, data_options=None, ray_options=None) -> None:
    """Accuracy, per-class accuracy and confusion matrix of a model on labelled data."""
    from .data import open_dataset
    from .display import accuracy_line, per_class_table
    from .evaluation import evaluate as run_evaluate
    from .model import load_model

    from .data import as_dataset
    from .results import run_inputs

    _check_output(json, "--json", _read_by(model, data, data_options))
    loaded = load_model(model, output)
    source, options, transferred = run_inputs(data, data_options)  # a run's inputs, evaluated on this model
    dataset = open_dataset(data, loaded.data_shape, data_options) if transferred is None else \
        as_dataset(source, loaded.data_shape, options)
    with _progress(len(dataset), dataset.num_batches, quiet, "evaluating") as tick:
        result = run_evaluate(loaded, dataset, device=device, on_batch=tick, allow_nonfinite=allow_nonfinite,
                              ray=ray_options)
    if transferred is not None:
        result.data = transferred
    _warn(result.warnings)
    if _save_result(result, json):
        return
    out.print(accuracy_line(result, transferred or dataset.source.description), soft_wrap=True)
    if not quiet:
        out.print(per_class_table(result, all_classes))


@command({**DATA_GROUP, **RAY_GROUP})
def coverage(model: ModelArg, data: DataOpt,
             reference: Annotated[Optional[Path], typer.Option("--reference", help="data whose least and greatest neuron values are the boundaries of KMNC, NBC and SNAC (read with the data flags, less --labels/--limit/--classes)", show_default=False)] = None,
             inputs: Annotated[Optional[Path], typer.Option("--inputs", help="a synthesize --out folder (or data): show the coverage its inputs add to the data's", show_default=False)] = None,
             criteria: Annotated[Optional[str], typer.Option("--criteria", help="nc,kmnc,nbc,snac,tknc (default: all; kmnc, nbc and snac need --reference)", show_default=False)] = None,
             layers: Annotated[str, typer.Option("--layers", help="auto|all|T1,T2 (tensor names, see inspect)")] = "auto",
             granularity: Annotated[str, typer.Option("--granularity", help="channel|element")] = "channel",
             threshold: Annotated[float, typer.Option("--threshold", help="NC: covered when value > threshold")] = 0.0,
             top: Annotated[int, typer.Option("--top", help="TKNC: the k largest neurons of each layer")] = 1,
             sections: Annotated[int, typer.Option("--sections", help="KMNC: sections per neuron range")] = 1000,
             json: Annotated[Optional[Path], typer.Option("--json", help="write the results as JSON to FILE (- for stdout)")] = None,
             output: OutputOpt = None, device: DeviceOpt = "auto", quiet: QuietOpt = False,
             allow_nonfinite: NonfiniteOpt = False, token_activity: TokenActivityOpt = None, data_options=None,
             ray_options=None) -> None:
    """How much of the network the data exercises: NC, KMNC, NBC, SNAC and TKNC (DeepGauge, DeepXplore)."""
    from .coverage import coverage as run_coverage
    from .data import open_dataset
    from .model import load_model

    _check_output(json, "--json", _read_by(model, data, data_options, reference, inputs))
    loaded = load_model(model, output)
    dataset = open_dataset(data, loaded.data_shape, data_options)
    with _progress(len(dataset), dataset.num_batches, quiet, "covering") as tick:
        result = run_coverage(loaded, dataset, reference=reference, inputs=inputs, layers=layers,
                              criteria=None if criteria is None else [c.strip() for c in criteria.split(",")],
                              granularity=granularity, threshold=threshold, top=top, sections=sections, device=device,
                              data_options=data_options, on_batch=tick, allow_nonfinite=allow_nonfinite,
                              ray=ray_options, token_activity=token_activity)
    _show(result, json)


@command(TRAINING_DATA_GROUP)
def retrain(model: ModelArg, data: DataOpt,
            inputs: Annotated[list[Path], typer.Option("--inputs", help="a synthesize --out folder whose inputs, labelled as their seeds, join the training data (repeat for several)", show_default=False)],
            model_out: Annotated[Path, typer.Option("-o", "--model-out", help="the retrained ONNX file to write; retrain.json is written beside it", show_default=False)],
            heldout: Annotated[Optional[Path], typer.Option("--heldout", help="data for the accuracy and PGD's success before and after (default: --data)", show_default=False)] = None,
            only: Annotated[str, typer.Option("--only", help="all (every learned weight) | suspicious (only the rows computing the runs' neurons, or --neurons)")] = "all",
            neurons: Annotated[Optional[Path], typer.Option("--neurons", help="with --only suspicious: a localize --json file (default: the runs' neurons)", show_default=False)] = None,
            epochs: Annotated[int, typer.Option("--epochs", help="passes over the training samples")] = 20,
            lr: Annotated[float, typer.Option("--lr", help="Adam's learning rate")] = 1e-4,
            seed: Annotated[int, typer.Option("--seed", help="seed of the shuffling and of the PGD seeds")] = 0,
            adversarial: Annotated[str, typer.Option("--adversarial", help="none, or PGD: add each batch's PGD examples (PGD-AT, Madry et al.)")] = "none",
            attack_distance: Annotated[float, typer.Option("--attack-distance", help="L∞ bound of the PGD attack measured before and after")] = 0.3,
            json: Annotated[Optional[Path], typer.Option("--json", help="where to write retrain.json (default: beside -o)", show_default=False)] = None,
            output: OutputOpt = None, device: Annotated[str, typer.Option("--device", help="cpu|cuda", rich_help_panel="Run")] = "cpu",
            data_options=None) -> None:
    """Fine-tune the model's weights on benign data plus synthesized inputs; write the same graph with new weights."""
    from .retraining import retrain as run_retrain

    report = json if json is not None else model_out.with_name("retrain.json")
    read = _read_by(model, data, data_options, heldout, neurons, *inputs)
    for path, flag in ((model_out, "-o"), (report, "--json")):
        _check_output(path, flag, [*read, *[Path(i) / "report.json" for i in inputs]])
    if Path(model_out).resolve() == Path(report).resolve():
        raise OnnxFaultError(f"-o and --json both name {model_out}; give them different files")
    result = run_retrain(model, data, [str(i) for i in inputs], heldout=heldout, only=only, neurons=neurons,
                         epochs=epochs, batch_size=data_options.batch_size, lr=lr, seed=seed, adversarial=adversarial,
                         attack_distance=attack_distance, device=device, data_options=data_options, output=output)
    _warn(result.warnings)
    from .provenance import command_line

    result.provenance["command"] = command_line()
    result.save_model(model_out, report)
    for line in result.lines():
        out.print(Text(line), soft_wrap=True)
    out.print(f"wrote {model_out} and {report}", soft_wrap=True)


@command(DATA_GROUP)
def robustness(model: ModelArg, data: DataOpt,
               samples: Annotated[int, typer.Option("--samples", help="seeds per class (correctly classified) attacked by PGD")] = 2,
               attack_distance: Annotated[float, typer.Option("--attack-distance", help="PGD's L∞ bound (20 steps of a tenth of it)")] = 0.3,
               clever_seeds: Annotated[int, typer.Option("--clever-seeds", help="CLEVER on the first N seeds (0: none; needs onnxfault[art])")] = 10,
               norm: Annotated[str, typer.Option("--norm", help="CLEVER's norm: inf|2|1")] = "inf",
               batches: Annotated[int, typer.Option("--batches", help="CLEVER's N_b (the paper: 500)")] = 10,
               batch_size_clever: Annotated[int, typer.Option("--clever-batch", help="CLEVER's N_s (the paper: 1024)")] = 32,
               radius: Annotated[float, typer.Option("--radius", help="CLEVER's sampling radius")] = 0.3,
               features: Annotated[Optional[str], typer.Option("--features", help="MODEL:TENSOR whose values FID compares (with --inputs)", show_default=False)] = None,
               inputs: Annotated[Optional[Path], typer.Option("--inputs", help="a synthesize --out folder: FID between its inputs and its seeds", show_default=False)] = None,
               seed: Annotated[int, typer.Option("--seed", help="seed of the seeds and of CLEVER's sampling")] = 0,
               json: Annotated[Optional[Path], typer.Option("--json", help="write the results as JSON to FILE (- for stdout)", show_default=False)] = None,
               output: OutputOpt = None, device: Annotated[str, typer.Option("--device", help="cpu|cuda", rich_help_panel="Run")] = "cpu",
               data_options=None) -> None:
    """How hard the model is to fool (PGD's success, CLEVER) and how natural a run's inputs are (FID)."""
    from .robustness import robustness as run_robustness

    feature_model = features.rpartition(":")[0] if features else None
    _check_output(json, "--json", _read_by(model, data, data_options, inputs, feature_model))
    result = run_robustness(model, data, samples=samples, seed=seed, norm=norm, batches=batches,
                            batch_size=batch_size_clever, radius=radius, clever_seeds=clever_seeds,
                            attack_distance=attack_distance, features=features, inputs=inputs, device=device,
                            data_options=data_options, output=output)
    _show(result, json)


def _print_ops(as_json: bool) -> None:
    from .adapters.onnx2torch import supported_ops

    names = supported_ops()
    if as_json:
        import json as _json

        print(_json.dumps(names))
        return
    from .synthesis.methods import METHODS

    gradient = ", ".join(name for name, method in METHODS.items() if method.uses_torch)
    out.print(f"{len(names)} ONNX ops convert to torch (the gradient methods: {gradient}):", soft_wrap=True)
    out.print(", ".join(names), soft_wrap=True)


@command({**DATA_GROUP, **SHAPLEY_GROUP, **RAY_GROUP})
def localize(model: ModelArg, data: DataOpt,
             layers: Annotated[str, typer.Option("--layers", help="auto|all|T1,T2 (tensor names, see inspect)")] = "auto",
             measure: Annotated[str, typer.Option("--measure", help="suspiciousness measure (see `onnxfault measures`)")] = "ochiai",
             k: Annotated[int, typer.Option("-k", help="how many neurons to report")] = 10,
             cls: Annotated[Optional[int], typer.Option("--class", help="only samples labelled C; fail = misclassified")] = None,
             target: Annotated[Optional[int], typer.Option("--target", help="targeted: fail = predicted as T")] = None,
             granularity: Annotated[str, typer.Option("--granularity", help="channel|element")] = "channel",
             threshold: Annotated[float, typer.Option("--threshold", help="active when value > threshold")] = 0.0,
             star: Annotated[float, typer.Option("--star", help="exponent of D*")] = 3.0,
             seed: Annotated[int, typer.Option("--seed", help="seed of the random measure")] = 0,
             json: Annotated[Optional[Path], typer.Option("--json", help="write the ranking as JSON to FILE (- for stdout)")] = None,
             spectra: Annotated[Optional[Path], typer.Option("--spectra", help="write all counts and scores to FILE.npz (above 10,000 neurons, --json NAME.json writes NAME.spectra.npz beside it unless this names a file)")] = None,
             report: Annotated[bool, typer.Option("--report", help="also write an HTML report beside the --json file (FILE.html)")] = False,
             device: DeviceOpt = "auto", quiet: QuietOpt = False, output: OutputOpt = None,
             allow_nonfinite: NonfiniteOpt = False, token_activity: TokenActivityOpt = None, data_options=None,
             shapley=None, ray_options=None) -> None:
    """Rank neurons by suspiciousness from their hit spectrum (DeepFault), or by Shapley value (DeepSensor)."""
    from .files import check_writable, text_writer, write_together
    from .localization import localize as run_localize, outcome_for, samples_for
    from .measures import get_measure
    from .model import load_model
    from .provenance import command_line

    if report and (not json or _stdout(json)):
        raise OnnxFaultError("--report writes the page beside the --json file; add --json FILE")
    page = json.with_suffix(".html") if report else None
    if page is not None and page == json:
        raise OnnxFaultError(f"--json {json} ends in .html, the name --report gives the page; name it .json")
    for path, flag in ((json, "--json"), (spectra, "--spectra"), (page, "--report")):
        _check_output(path, flag, _read_by(model, data, data_options))
    get_measure(measure)
    outcome_for(cls, target)
    loaded = load_model(model, output)
    dataset = samples_for(loaded, data, data_options, cls, target)
    with _progress(len(dataset), dataset.num_batches, quiet, "hit spectrum") as tick:
        result = run_localize(loaded, dataset, layers=layers, measure=measure, k=k, cls=cls, target=target,
                              granularity=granularity, threshold=threshold, star=star, seed=seed, device=device,
                              on_batch=tick, shapley=shapley, allow_nonfinite=allow_nonfinite,
                              ray=ray_options, token_activity=token_activity)
    _warn(result.warnings)
    result.provenance["command"] = command_line()
    if _stdout(json):
        if result.summarized and spectra is None:
            raise OnnxFaultError(f"--json - summarises the {len(result.scores)} neurons' scores and names the npz of "
                                 "every score, which needs a file: add --spectra FILE.npz")
        from .files import npz_writer

        if spectra is not None:
            write_together([(spectra, npz_writer(result.spectra_arrays()))])
        _print_json(result.to_json(str(spectra) if result.summarized else None))
        return
    info, outputs = result.outputs(json, spectra)  # above 10,000 neurons the npz of every score comes too
    if page:  # built before anything is written: a failure leaves no file behind
        from .report import build_report, result_run

        html = build_report([result_run("localize", json, info, result.score_arrays())])
        outputs.append((page, text_writer(html)))
    write_together(outputs)  # all land together, or none does
    if not quiet:
        _print_ranking(info)
        if json and spectra is None and result.summarized:
            from .localization import spectra_beside

            out.print(f"wrote {spectra_beside(json)}: every neuron's score ({json} summarises each layer)",
                      soft_wrap=True)
        if page:
            out.print(f"wrote {page}", soft_wrap=True)


def _print_ranking(info: dict) -> None:
    """The summary line and top-k table of a ``localize --json`` dict."""
    from .display import ranking_line, ranking_table

    out.print(ranking_line(info), soft_wrap=True)
    out.print(ranking_table(info))


def _synthesize(model: ModelArg, data: DataOpt,
                method: Annotated[str, typer.Option("--method", help="the method (see the method panels below)")],
                out_dir: Annotated[Path, typer.Option("--out", help="folder for report.json, inputs.npz, samples.png")],
                cls: Annotated[Optional[int], typer.Option("--class", help="seeds (and spectrum) of class C")] = None,
                target: Annotated[Optional[int], typer.Option("--target", help="targeted: push seeds not of class T towards T")] = None,
                samples: Annotated[int, typer.Option("--samples", help="seeds per class (correctly classified)")] = 10,
                seed: Annotated[int, typer.Option("--seed", help="seed for drawing seeds and the random measure")] = 0,
                measure: Annotated[Optional[str], typer.Option("--measure", help=literal_help("suspiciousness measure, or random [default: ochiai, or the one the method ranks by]"), rich_help_panel=_NEURONS_PANEL, show_default=False)] = None,
                k: Annotated[Optional[int], typer.Option("-k", help=literal_help("number of suspicious neurons [default: 10; with --neurons, all of the file's]"), rich_help_panel=_NEURONS_PANEL, show_default=False)] = None,
                layers: Annotated[Optional[str], typer.Option("--layers", help=literal_help("auto|all|T1,T2 [default: auto]"), rich_help_panel=_NEURONS_PANEL, show_default=False)] = None,
                granularity: Annotated[Optional[str], typer.Option("--granularity", help=literal_help("channel|element [default: channel]"), rich_help_panel=_NEURONS_PANEL, show_default=False)] = None,
                neurons: Annotated[Optional[Path], typer.Option("--neurons", help="take neurons from a localize --json file", rich_help_panel=_NEURONS_PANEL)] = None,
                token_activity: Annotated[Optional[str], typer.Option("--token-activity", help="text models: a hidden unit is active on a sample when active on any real token, on their mean, or on the first (cls) token: any|mean|cls (default any; padding never counts)", rich_help_panel=_NEURONS_PANEL, show_default=False)] = None,
                start: Annotated[Optional[str], typer.Option("--from", help="text models: the embedding lookup to differentiate from (default: the token ids' lookup, named on stderr)", show_default=False)] = None,
                clip_min: Annotated[Optional[float], typer.Option("--clip-min", help="valid range (default: the data's)")] = None,
                clip_max: Annotated[Optional[float], typer.Option("--clip-max", help="valid range (default: the data's)")] = None,
                device: DeviceOpt = "auto", quiet: QuietOpt = False, output: OutputOpt = None,
                report: Annotated[bool, typer.Option("--report", help="also write report.html (the HTML report) into --out")] = False,
                allow_nonfinite: NonfiniteOpt = False, data_options=None, shapley=None, ray_options=None,
                **method_options) -> None:
    """Synthesize inputs with one of the registered methods: excite the suspicious neurons, or attack the model (each method's options in its panel below)."""
    from .provenance import command_line
    from .synthesis import synthesize as run_synthesize
    from .display import synthesis_lines
    from .synthesis.methods import get_method
    from .synthesis.output import check_out_dir, save_result

    from .files import check_folder_holds_no_input

    check_out_dir(out_dir)
    check_folder_holds_no_input(out_dir, "--out", _read_by(model, data, data_options, neurons))
    chosen = get_method(method)
    given = {}
    for name, value in method_options.items():
        if value is None or value is False:  # not given (a flag is given as True)
            continue
        name = name.removeprefix(_DEPRECATED)
        given[name] = _method_value(chosen, name, value)
    result = run_synthesize(model, data, method=method, cls=cls, target=target, samples=samples, seed=seed,
                            measure=measure, k=k, layers=layers, granularity=granularity, neurons=neurons,
                            clip_min=clip_min, clip_max=clip_max, device=device, data_options=data_options,
                            shapley=shapley, output=output, allow_nonfinite=allow_nonfinite, ray=ray_options,
                            start=start, token_activity=token_activity, **given)
    _warn(result.warnings)
    result.report["command"] = command_line()
    replaced = save_result(result, out_dir, report)
    if replaced:
        err.print(f"note: {replaced}", soft_wrap=True)
    if not quiet:
        for line in synthesis_lines(result.report, out_dir):
            out.print(line, soft_wrap=True)


_DEPRECATED = "deprecated__"  # the parameter of a deprecated flag: deprecated__alpha for --alpha


def _method_value(chosen, name: str, value):
    """A method option as the CLI read it, in the type the method's Options take: a number or ``none`` for an
    option that may be None (``--distance none``); other values as typer parsed them."""
    specs = {s.name: s for s in chosen.option_specs()}
    aliases = {a: s for s in specs.values() for a in (*s.aliases, *s.deprecated)}
    spec = specs.get(name) or aliases.get(name)
    if spec is None or not isinstance(value, str) or not spec.kind.endswith("?"):
        return value
    if value.strip().lower() == "none":
        return None
    kind = spec.kind.rstrip("?")
    if kind == "str":
        return value
    try:
        number = int(value) if kind == "int" else float(value)
    except ValueError:
        raise OnnxFaultError(f"{chosen.name}: `{spec.name}` '{value}' is not "
                             f"{'a whole number' if kind == 'int' else 'a number'} or none", parameter=spec.name) from None
    if isinstance(number, float) and not math.isfinite(number):
        raise OnnxFaultError(f"{chosen.name}: `{spec.name}` must be a finite number (got {value})", parameter=spec.name)
    return number


_CLI_TYPES = {"int": Optional[int], "float": Optional[float], "str": Optional[str], "bool": Optional[bool],
              "pair": Optional[str]}


def method_parameters() -> list[pyinspect.Parameter]:
    """The synthesize command's method options, from every registered method's ``Options``: one flag per
    option name (with its aliases), in a help panel of its method, or of its own when several methods take it
    (with each one's default); a deprecated name is a hidden flag of its own."""
    from .synthesis.contract import shown_value
    from .synthesis.methods import METHODS

    by_name: dict[str, list] = {}
    for method in METHODS.values():
        for spec in method.option_specs():
            by_name.setdefault(spec.name, []).append((method.name, spec))
    parameters = []
    for name, takers in by_name.items():
        kinds = {spec.kind for _, spec in takers}
        if len(kinds) > 1:
            raise TypeError(f"methods give option {name} different kinds: {sorted(kinds)}")
        spec = takers[0][1]
        kind = spec.kind
        cli_type = Optional[str] if kind.endswith("?") else _CLI_TYPES[kind]
        if len(takers) == 1:
            panel = f"{takers[0][0]} options"
            default = f"[default: {shown_value(spec.default)}]"
        else:
            panel = "Method options (several methods)"
            default = "[default: " + ", ".join(f"{m} {shown_value(s.default)}" for m, s in takers) + "]"
        aliases = sorted({a for _, s in takers for a in s.aliases})
        choices = f" ({'|'.join(spec.choices)})" if spec.choices and "|" not in spec.help else ""
        text = literal_help(cli_text(f"{spec.help}{choices} {default}"))
        option = typer.Option(flag_of(name), *(flag_of(a) for a in aliases), help=text, rich_help_panel=panel,
                              show_default=False)
        parameters.append(pyinspect.Parameter(name, pyinspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=Annotated[cli_type, option]))
        for old, why in {o: w for _, s in takers for o, w in s.deprecated.items()}.items():
            hidden = typer.Option(flag_of(old), hidden=True, help=f"deprecated: use {flag_of(name)} ({why})")
            parameters.append(pyinspect.Parameter(_DEPRECATED + old, pyinspect.Parameter.KEYWORD_ONLY, default=None,
                                                annotation=Annotated[cli_type, hidden]))
    return parameters


def _synthesize_extra() -> list[pyinspect.Parameter]:
    """``--method``, listing the registered methods (it replaces the declared one), then every method's options."""
    from .synthesis.methods import METHODS

    method = typer.Option("--method", help=f"{' | '.join(METHODS)} (see the method panels)")
    return [pyinspect.Parameter("method", pyinspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, method]),
            *method_parameters()]


synthesize = command({**DATA_GROUP, **SHAPLEY_GROUP, **RAY_GROUP}, extra=_synthesize_extra)(_synthesize)


@command(DATA_GROUP)
def compare(model_a: Annotated[Path, typer.Argument(help="the first ONNX classifier", show_default=False)],
            model_b: Annotated[Path, typer.Argument(help="the second, of the same classes", show_default=False)],
            data: DataOpt,
            layers: Annotated[str, typer.Option("--layers", help="auto|all|T1,T2 (names in both models), paired by position")] = "auto",
            pairs: Annotated[Optional[str], typer.Option("--pairs", help="pair layers by name instead: A1=B1,A2=B2", show_default=False)] = None,
            measures: Annotated[str, typer.Option("--measures", help="spectrum measures whose rankings are compared, e.g. tarantula,ochiai,dstar")] = "tarantula,ochiai,dstar",
            k: Annotated[int, typer.Option("-k", help="top neurons compared per measure")] = 10,
            granularity: Annotated[str, typer.Option("--granularity", help="channel|element")] = "channel",
            threshold: Annotated[float, typer.Option("--threshold", help="active when value > threshold")] = 0.0,
            json: Annotated[Optional[Path], typer.Option("--json", help="write the comparison as JSON to FILE (- for stdout)")] = None,
            device: DeviceOpt = "auto", quiet: QuietOpt = False, data_options=None) -> None:
    """Compare two classifiers on the same samples: class scores, hit spectra of paired layers, rankings."""
    from .comparison import compare as run_compare, rich_tables, summary_line
    _check_output(json, "--json", _read_by(model_a, data, data_options, model_b))
    paired = None
    if pairs is not None:
        items = [item.split("=", 1) for item in pairs.split(",") if item.strip()]
        if not items or any(len(item) != 2 or not all(part.strip() for part in item) for item in items):
            raise OnnxFaultError(f"--pairs '{pairs}' is not A=B pairs of tensor names; e.g. --pairs fc1=dense,fc2=dense_1")
        paired = [(a.strip(), b.strip()) for a, b in items]
    result = run_compare(model_a, model_b, data, layers=layers, pairs=paired,
                         measures=[m.strip() for m in measures.split(",") if m.strip()], k=k, granularity=granularity,
                         threshold=threshold, device=device, data_options=data_options)
    if _stdout(json):
        _print_json(result.to_json())
        return
    if json:
        result.save(json)
    out.print(summary_line(result), soft_wrap=True)
    if not quiet:
        out.print(rich_tables(result))


@app.command()
@handles_errors
def report(runs: Annotated[list[Path], typer.Argument(help="localize, evaluate and compare --json files, synthesize --out folders", show_default=False)],
           output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write (- for stdout)")],
           title: Annotated[Optional[str], typer.Option("--title", help="page title (default: the runs' names)")] = None) -> None:
    """One self-contained HTML page (figures inlined, no network) for one or more runs; several runs are compared."""
    from .report import build_report, read_runs, write_report

    if _stdout(output):
        print(build_report(read_runs(runs), title), end="")
        return
    path = write_report(runs, output, title)
    out.print(f"wrote {path} ({len(runs)} run{'s' if len(runs) > 1 else ''})", soft_wrap=True)


@app.command()
@handles_errors
def convert(source: Annotated[Path, typer.Argument(help="Keras .json(+.h5)/.h5/.keras or TorchScript .pt", show_default=False)],
            output: Annotated[Path, typer.Option("-o", "--output", help="ONNX file to write")],
            weights: Annotated[Optional[Path], typer.Option("--weights", help="Keras .h5 weights (default: beside the .json)")] = None,
            input_shape: Annotated[Optional[str], typer.Option("--input-shape", help="per-sample input shape, e.g. 1,28,28 (TorchScript)")] = None,
            opset: Annotated[int, typer.Option("--opset", help="ONNX opset")] = 17) -> None:
    """Convert a PyTorch or Keras model to a validated ONNX file."""
    from .adapters import convert as run_convert

    shape = _numbers(input_shape, "--input-shape", int)
    result = run_convert(source, output, weights=weights, input_shape=shape, opset=opset)
    out.print(f"wrote {result.path} ({result.source_kind}, {result.nodes} nodes)", soft_wrap=True)
    for kind, values in (("input ", result.inputs), ("output", result.outputs)):
        for name, dims in values:
            out.print(f"  {kind} {name} {tuple(dims)}", soft_wrap=True)


@app.command()
@handles_errors
def measures() -> None:
    """List the suspiciousness measures and their formulas."""
    from rich.table import Table

    from .measures import MEASURES

    table = Table(title="suspiciousness measures (F = af+nf, P = as+ns)")
    for column in ("name", "formula", "reference"):
        table.add_column(column)
    for m in MEASURES.values():
        table.add_row(m.name, m.formula, m.reference)
    out.print(table)


def main() -> None:
    import os
    import sys

    from .interrupts import Interrupted, ignore_late_signals, install_interrupt_handlers, interruption_message

    # SIGINT/SIGTERM unwind through cleanups (no temp or half-written output left), also out of a native call
    install_interrupt_handlers(report=print_error)
    try:
        app()
    except Interrupted as stop:
        ignore_late_signals()
        print_error(interruption_message(stop))
        # Cleanups ran while the exception unwound; skip the interpreter's teardown, where threads a library
        # left running (Ray's core worker after an interrupted run) can crash the process (exit 139).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + stop.signum)
    finally:
        ignore_late_signals()  # the work is done: a signal now must not raise into the exit callbacks


if __name__ == "__main__":
    main()
