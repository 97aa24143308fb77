"""The one registry of synthesis methods: a line per method, naming the module that holds its class (see
:mod:`.contract`). A module is imported when its method is asked for, so running fgsm imports no other
method; listing every method imports their modules, which import no framework or solver until they run.

A method defined elsewhere (a test, a plugin) joins with :func:`register`.
"""
from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module

from ..errors import OnnxFaultError, close_matches_hint
from .contract import Method

__all__ = ["METHODS", "Method", "get_method", "register"]

_MODULES = {
    "deepfault": "deepfault",
    "hs": "hs",
    "fgsm": "fgsm",
    "pgd": "pgd",
    "deepsensor": "deepsensor",
    "patch": "patch",
    "hotflip": "hotflip",
    "dlfuzz": "dlfuzz",
    "deepxplore": "deepxplore",
    "deephunter": "deephunter",
}
# Families: ``prefix:NAME`` is a method of the module's ``family_member(name)``; ``LISTED`` names are listed.
_FAMILIES = {"art": "art_attacks"}


class _Registry(Mapping):
    """Method name → its :class:`Method` instance, its module imported on first access; a family's member
    (``art:DeepFool``) made by its module when first asked for."""

    def __init__(self, modules: dict[str, str], families: dict[str, str]):
        self._modules = dict(modules)
        self._families = dict(families)
        self._loaded: dict[str, Method] = {}

    def _family(self, name) -> str | None:
        prefix, sep, rest = name.partition(":") if isinstance(name, str) else ("", "", "")
        return self._families.get(prefix) if sep and rest else None

    def _listed(self) -> list[str]:
        return [f"{prefix}:{member}" for prefix, module in self._families.items()
                for member in import_module(f"{__package__}.{module}").LISTED]

    def __getitem__(self, name: str) -> Method:
        if name not in self._loaded and self._family(name) is not None:
            self._loaded[name] = import_module(f"{__package__}.{self._family(name)}").family_member(name)
        if name not in self._loaded:
            if name not in self._modules:
                raise KeyError(name)
            module = import_module(f"{__package__}.{self._modules[name]}")
            found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Method)
                     and v is not Method and getattr(v, "name", None) == name]
            self._loaded[name] = found[0]()
        return self._loaded[name]

    def __iter__(self):
        listed = [*self._modules, *self._listed()]
        return iter([*listed, *(n for n in self._loaded if n not in listed)])

    def __len__(self) -> int:
        return len(set(self._modules) | set(self._listed()) | set(self._loaded))

    def __contains__(self, name) -> bool:
        return name in self._modules or name in self._loaded or self._family(name) is not None

    def add(self, method: Method) -> None:
        self._loaded[method.name] = method

    def discard(self, name: str) -> None:
        """Forget a family member that turned out not to exist (``art:Bogus``), so that it is never listed."""
        if self._family(name) is not None:
            self._loaded.pop(name, None)


METHODS = _Registry(_MODULES, _FAMILIES)


def register(method: type[Method] | Method) -> Method:
    """Add a method (its class or an instance) to the registry under its ``name``; it then runs from
    :func:`~onnxfault.synthesize`, the CLI and the report like the built-in ones. Returns the instance."""
    instance = method() if isinstance(method, type) else method
    if not isinstance(instance, Method):
        raise OnnxFaultError(f"method: {type(instance).__name__} is not a synthesis Method", parameter="method")
    instance.option_specs()  # an Options field of a kind the CLI cannot spell fails here, not at run time
    METHODS.add(instance)
    return instance


def get_method(name: str) -> Method:
    """The registered method called ``name`` (an unknown name fails with the close ones)."""
    if not isinstance(name, str) or name not in METHODS:
        raise OnnxFaultError(close_matches_hint(str(name), sorted(METHODS), "method"), parameter="method")
    method = METHODS[name]
    check = getattr(method, "check", None)
    if check is not None:
        try:
            check()  # a family member that does not exist (art:Bogus) fails here, before any work
        except OnnxFaultError:
            METHODS.discard(name)
            raise
    return method
