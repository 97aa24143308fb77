"""The synthesis methods, one module each, registered by importing them (imports flow one way: each method
imports ``base``; nothing in ``base`` imports a method)."""
from __future__ import annotations

from ..errors import OnnxFaultError, close_matches_hint
from . import deepfault, deepsensor, fgsm, hs, patch, pgd  # noqa: F401 - registration
from .base import METHODS, Method

__all__ = ["METHODS", "get_method"]


def get_method(name: str) -> Method:
    """The registered method called ``name`` (an unknown name fails with the close ones)."""
    if name not in METHODS:
        raise OnnxFaultError(close_matches_hint(name, sorted(METHODS), "method"))
    return METHODS[name]
