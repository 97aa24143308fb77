"""How to read and preprocess samples (the CLI's data flags), and which samples they select."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import OnnxFaultError, check_finite

DEFAULT_BATCH_SIZE = 256


@dataclass
class DataOptions:
    """How to read and preprocess samples (mirrors the CLI's data flags)."""

    labels: str | None = None
    limit: int | None = None
    classes: Sequence[int] | None = None
    raw: bool = False
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    layout: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    sample_rate: int | None = None  # sound files: the model's rate (others are resampled)
    tokenizer: str | None = None  # raw text: a tokenizer.json or its folder (see data.text)
    text_column: str = "text"
    label_column: str = "label"
    max_length: int | None = None  # raw text: the sequence length, for a model whose length is dynamic
    class_names: Sequence[str] | None = None  # class folders in class order (as classes.txt lists them)

    def text_options(self):
        """How to read raw text (:class:`~onnxfault.data.text.TextOptions`), or None without a tokenizer."""
        if self.tokenizer is None:
            if (self.text_column, self.label_column, self.max_length) != ("text", "label", None):
                raise OnnxFaultError("`text_column`, `label_column` and `max_length` read raw text; add `tokenizer`")
            return None
        if self.max_length is not None and self.max_length < 1:
            raise OnnxFaultError(f"`max_length` must be at least 1 (got {self.max_length})")
        from .text import TextOptions

        return TextOptions(str(self.tokenizer), self.text_column, self.label_column, self.max_length)

    def __post_init__(self):
        for flag in ("mean", "std"):  # finite numbers only, named by their flag
            for value in getattr(self, flag) or ():
                check_finite(**{flag: value})
        if self.class_names is not None:
            names = self.class_names
            if isinstance(names, str) or not all(isinstance(n, str) and n.strip() for n in names) or not names:
                raise OnnxFaultError("`class_names` lists the class folders in class order, e.g. `class_names` "
                                     "zero,one,two")
            if len(set(names)) != len(names):
                twice = next(n for n in names if list(names).count(n) > 1)
                raise OnnxFaultError(f"`class_names` names the folder {twice!r} twice; list each class folder once")
            object.__setattr__(self, "class_names", tuple(n.strip() for n in names))


def select(labels: np.ndarray, options: DataOptions) -> np.ndarray:
    """Positions of the samples ``options`` selects: those of ``--classes``, then the first ``--limit``."""
    indices = np.arange(len(labels))
    if options.classes is not None:
        indices = indices[np.isin(labels, selected_classes(options))]
        if not len(indices):
            raise nothing_selected(options)
    check_limit(options)
    if options.limit is not None:
        indices = indices[: options.limit]
    if not len(indices):
        raise nothing_selected(options)
    return indices


def selected_classes(options: DataOptions) -> np.ndarray | None:
    """``--classes`` as an int64 array (None: every class)."""
    return None if options.classes is None else np.asarray(list(options.classes), np.int64)


def check_limit(options: DataOptions) -> None:
    """``--limit`` must be at least 1."""
    if options.limit is not None and options.limit < 1:
        raise OnnxFaultError(f"`limit` must be at least 1 (got {options.limit})")


def nothing_selected(options: DataOptions) -> OnnxFaultError:
    """The error for a selection that holds no sample."""
    if options.classes is not None:
        listed = ",".join(str(c) for c in selected_classes(options))
        return OnnxFaultError(f"no samples with class {listed} in the data; choose classes that occur")
    return OnnxFaultError("the data set is empty; give a file with samples")
