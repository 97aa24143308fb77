"""What a synthesis method is: one class in one module, whose ``Options`` dataclass is the single source of its
settings (defaults, checks and help, which become the CLI's flags, the Python keywords and ``params`` in
``report.json``), plus how it picks neurons, runs, merges the statistics of its chunks and reports them.

A method module defines ``class Something(Method)`` and the registry (:mod:`.methods`) names the module. The
module imports only this contract and numpy at import time (the rest inside its functions), so listing the
methods, or building the CLI's ``--help``, imports no framework and no solver.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Callable, ClassVar

from ..errors import OnnxFaultError

__all__ = ["Method", "option", "distance_option", "iterations_option", "step_option", "NeuronRequest",
           "Selection", "OptionSpec", "option_specs", "check_value", "with_options", "DEFAULT_K", "shown_value"]


def option(default, help: str, *, choices: tuple | None = None, minimum: float | None = None,
           above: float | None = None, maximum: float | None = None, aliases: tuple[str, ...] = (),
           deprecated: dict[str, str] | None = None):
    """A field of a method's ``Options``: its default, one line of help, and its checks (``choices``; a number's
    ``minimum``, ``above`` (exclusive) and ``maximum``). ``aliases``: other names meaning the same (the
    ecosystem's, e.g. ``eps``); ``deprecated``: old names still read, each with the reason it changed."""
    return field(default=default, metadata={"help": help, "choices": choices, "minimum": minimum, "above": above,
                                            "maximum": maximum, "aliases": tuple(aliases),
                                            "deprecated": dict(deprecated or {})})


def distance_option(default: float | None):
    """The L∞ bound on the change (None: no bound); ``eps`` is the attack libraries' name for it."""
    return option(default, "L∞ bound d on the change (none: no bound)", above=0, aliases=("eps",))


def iterations_option(default: int):
    """Steps of an iterative method; ``steps`` is the attack libraries' name for it."""
    return option(default, "steps", minimum=1, aliases=("steps",))


def step_option(default: float):
    """The size of one step."""
    return option(default, "step size", above=0)


@dataclass(frozen=True)
class OptionSpec:
    """One option of one method, as the CLI and the checks see it: ``kind`` is int, float, str, bool, pair
    (two numbers), or one of those followed by ``?`` when None is allowed."""

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple | None
    minimum: float | None
    above: float | None
    maximum: float | None
    aliases: tuple[str, ...]
    deprecated: dict[str, str]


_KINDS = {"int": "int", "float": "float", "str": "str", "bool": "bool", "tuple[float, float]": "pair"}


def _kind(annotation) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts = [part.strip() for part in text.split("|")]
    optional = "None" in parts
    base = [part for part in parts if part != "None"]
    if len(base) != 1 or base[0] not in _KINDS:
        raise TypeError(f"an option is int, float, str, bool or tuple[float, float] (or that | None), not {text}")
    return _KINDS[base[0]] + ("?" if optional else "")


def option_specs(options_class) -> list[OptionSpec]:
    """The options of an ``Options`` dataclass, in declaration order."""
    specs = []
    for f in fields(options_class):
        meta = f.metadata
        if f.default is MISSING:
            raise TypeError(f"option {f.name} of {options_class.__qualname__} has no default")
        specs.append(OptionSpec(f.name, _kind(f.type), f.default, meta.get("help", ""), meta.get("choices"),
                                meta.get("minimum"), meta.get("above"), meta.get("maximum"),
                                meta.get("aliases", ()), meta.get("deprecated", {})))
    return specs


def _number(value, whole: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if whole else isinstance(value, (int, float)) and math.isfinite(value)


def check_value(method: str, spec: OptionSpec, value):
    """``value`` for option ``spec`` of ``method``, checked (and a pair given as "a,b" parsed); one error naming
    the option otherwise."""
    kind = spec.kind.rstrip("?")
    if value is None and spec.kind.endswith("?"):
        return None

    def fail(wanted: str):
        return OnnxFaultError(f"{method}: `{spec.name}` must be {wanted} (got {value!r})", parameter=spec.name)

    if kind == "bool":
        if not isinstance(value, bool):
            raise fail("True or False")
        return value
    if kind == "str":
        if not isinstance(value, str) or (spec.choices and value not in spec.choices):
            raise fail(" or ".join(spec.choices) if spec.choices else "a string")
        return value
    if kind == "pair":
        try:
            parts = [float(v) for v in (value.split(",") if isinstance(value, str) else value)]
        except (TypeError, ValueError):
            parts = []
        if len(parts) != 2 or not all(math.isfinite(v) for v in parts) or (
                spec.minimum is not None and min(parts) < spec.minimum):
            low = "" if spec.minimum is None else f" ≥ {spec.minimum:g}"
            raise fail(f"two finite numbers{low}, start,end")
        return parts[0], parts[1]
    whole = kind == "int"
    if not _number(value, whole):
        raise fail(("a whole number" if whole else "a finite number") + (" or None" if spec.kind.endswith("?") else ""))
    if spec.minimum is not None and value < spec.minimum:
        raise fail(f"≥ {spec.minimum:g}")
    if spec.above is not None and not value > spec.above:
        raise fail(f"> {spec.above:g}")
    if spec.maximum is not None and value > spec.maximum:
        raise fail(f"≤ {spec.maximum:g}")
    return float(value) if not whole else value


@dataclass
class NeuronRequest:
    """What a method's :meth:`Method.choose_neurons` gets: the model, the layers spec (``auto`` when not given),
    ``k`` (None: not given), the granularity, ``given`` (neurons read from a file, or None), and ``rank(layers,
    k)``, which ranks the neurons of the layers spec ``layers`` with ``localize`` (``k`` None: every one)."""

    model: Any
    layers: str
    k: int | None
    granularity: str
    given: list | None
    rank: Callable[[str, int | None], list]
    shapley: Any  # ShapleyOptions


@dataclass
class Selection:
    """The neurons a method perturbs towards, the layers spec they came from, notes for the user, ``options``
    when the choice fixed one (hs records its cut), and ``game_layers``: layers whose neurons the method counts
    besides the chosen ones' (DeepSensor's fitness divides by every neuron of the Shapley game)."""

    neurons: list
    layers: str | None
    notes: list[str] = field(default_factory=list)
    options: Any = None
    game_layers: str | None = None


DEFAULT_K = 10


class Method:
    """A synthesis method. A subclass sets ``name``, ``summary``, ``paper`` and an ``Options`` dataclass (fields
    made with :func:`option`) and defines :meth:`run`; it may declare that it uses no suspicious neurons
    (``uses_neurons``), runs forward passes only (``uses_torch``), runs on text models' token embeddings too
    (``embeddings``) or only there (``text_only``), the measures it ranks by (``measures``: None for any, the
    first is the default), and override how it picks neurons, merges its chunks' statistics, summarises them in
    ``report.json`` (``metrics`` lists those the report's tables show) and prints them."""

    name: ClassVar[str]
    summary: ClassVar[str]
    paper: ClassVar[str] = ""
    Options: ClassVar[type]
    uses_neurons: ClassVar[bool] = True
    uses_torch: ClassVar[bool] = True
    embeddings: ClassVar[bool] = False
    text_only: ClassVar[bool] = False
    measures: ClassVar[tuple[str, ...] | None] = None
    metrics: ClassVar[tuple] = ()  # (JSON path, title, better "max"|"min"|None, shown as a percentage)

    # ---- options --------------------------------------------------------------------------------------
    @classmethod
    def option_specs(cls) -> list[OptionSpec]:
        return option_specs(cls.Options)

    @classmethod
    def defaults(cls):
        """The method's options at their defaults."""
        return cls.Options()

    @classmethod
    def takes(cls) -> str:
        """``distance (eps) 0.1, step 0.01``: the options this method takes and their defaults, for messages."""
        specs = cls.option_specs()
        if not specs:
            return "it takes no options of its own"
        return "it takes " + ", ".join(f"`{s.name}`{''.join(f' (`{a}`)' for a in s.aliases)} {shown_value(s.default)}"
                                       for s in specs)

    @classmethod
    def make_options(cls, given=None, *, warn: Callable[[str], None] | None = None):
        """The method's ``Options`` from a dict of settings (aliases and deprecated names allowed) or an
        ``Options`` instance, every value checked; an option the method does not take is an error naming the
        method and the options it takes. None stands for "not given" except for an option that may be None
        (``distance=None`` is no bound)."""
        if isinstance(given, cls.Options):
            given = asdict(given)
        given = dict(given or {})
        specs = {s.name: s for s in cls.option_specs()}
        names: dict[str, str] = {}
        for spec in specs.values():
            names.update({alias: spec.name for alias in spec.aliases})
            for old, why in spec.deprecated.items():
                names[old] = spec.name
                if old in given and warn is not None:
                    warn(f"{cls.name}: `{old}` is deprecated, use `{spec.name}` ({why})")
        values: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, value in given.items():
            name = key if key in specs else names.get(key)
            if value is None and (name is None or not specs[name].kind.endswith("?")):
                continue  # None where None is no value: not given (the Python spelling of "the default")
            if name is None:
                raise OnnxFaultError(f"{cls.name} does not take `{key}`; {cls.takes()}", parameter=key)
            if name in values:
                raise OnnxFaultError(f"{cls.name}: `{spelled[name]}` and `{key}` are the same option; give one",
                                     parameter=name)
            values[name], spelled[name] = check_value(cls.name, specs[name], value), key
        return cls.Options(**values)

    @classmethod
    def params(cls, options) -> dict:
        """``options`` as ``report.json`` records them (a pair as a list)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()}

    # ---- neurons, run, statistics, report ---------------------------------------------------------------
    def choose_neurons(self, request: NeuronRequest, options) -> Selection:
        """The neurons to perturb towards: the first ``k`` (default 10) of a given file's, or the top ``k`` of
        ``localize`` on the layers asked for."""
        k = DEFAULT_K if request.k is None else request.k
        if request.given is not None:
            return Selection(request.given if request.k is None else request.given[:k], request.layers)
        return Selection(request.rank(request.layers, k), request.layers)

    def prepare(self, model, data, options, device: str):
        """What the method computes once from the data (``data``: the :class:`~onnxfault.data.Dataset` the seeds
        are drawn from, fitted to ``model``) before its chunks run, handed to each chunk (here or on a Ray
        worker) as ``problem.prepared``: DeepHunter's neuron boundaries. None by default."""
        return None

    def run(self, problem):
        """The synthesized inputs for ``problem.x`` (a chunk of the seeds); statistics for the report go in
        ``problem.stats``."""
        raise NotImplementedError

    def merge(self, parts: list):
        """The statistics of all chunks (``problem.stats`` of each, in seed order) as one run leaves them."""
        return None

    def summarize(self, stats, problem) -> dict:
        """The method's own keys of ``report.json``, from the merged statistics."""
        return {}

    def summary_lines(self, report: dict) -> list[str]:
        """The method's own lines under a synthesis run's summary line."""
        return []


def shown_value(value) -> str:
    """An option's value as the CLI spells it: ``none``, ``0.4,0.9``, ``0.1``."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def with_options(selection: Selection, options):
    """``options`` as the selection fixed them (unchanged when it fixed none)."""
    return options if selection.options is None else selection.options

