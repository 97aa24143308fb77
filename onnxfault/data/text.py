"""Raw text in: a ``.csv``, ``.jsonl`` or Parquet file of texts and labels, tokenized with a Hugging Face
``tokenizers`` file (``tokenizer.json``, or a local folder holding one; ``pip install "onnxfault[text]"``;
nothing is downloaded) into the inputs of a text model.

The file is read whole at opening (texts and integer labels: ``text_column``, ``label_column``). Fitting it to
a model tokenizes every text, truncated and padded to the model's sequence length (or ``max_length`` when the
model's is dynamic), into records with one field per model input: the token ids (the model's
:attr:`~onnxfault.model.Model.token_input`), its attention mask and token type ids when the model takes them.
The tokenizer's special tokens are never changed nor introduced by synthesis, and reports decode the ids.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import OnnxFaultError
from .source import MAX_SAMPLES, Source, as_labels

TEXT_SUFFIXES = (".csv", ".jsonl", ".parquet")
INSTALL_HINT = 'install the text extra: pip install "onnxfault[text]"'


@dataclass(frozen=True)
class TextOptions:
    """Where the texts and labels are and how they are tokenized (the CLI's ``--text-column``,
    ``--label-column``, ``--tokenizer``, ``--max-length``)."""

    tokenizer: str
    text_column: str = "text"
    label_column: str = "label"
    max_length: int | None = None


def load_tokenizer(path: str | Path):
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file or a folder holding one (read, never fetched)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise OnnxFaultError(f"tokenizing text needs the tokenizers package; {INSTALL_HINT}") from None
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise OnnxFaultError(f"`tokenizer` {path}: no tokenizer file there; give a tokenizer.json (as a Hugging Face "
                             "tokenizer's save_pretrained writes it) or its folder")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as err:  # tokenizers raises its own Exception subclass for a malformed file
        raise OnnxFaultError(f"`tokenizer` {file} is not a tokenizers file ({str(err).splitlines()[0][:120]}); give "
                             "a tokenizer.json written by Hugging Face tokenizers") from None


def read_texts(path: Path, options: TextOptions) -> tuple[list[str], np.ndarray]:
    """The texts and integer labels of a .csv (with a header row), .jsonl (an object per line) or Parquet file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            columns = list(rows[0]) if rows else []
        elif suffix == ".jsonl":
            with open(path, encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
            if not all(isinstance(r, dict) for r in rows):
                raise OnnxFaultError(f"{path}: every line must be a JSON object with the text and the label")
            columns = sorted({k for r in rows for k in r})
        else:
            from .parquet import _pyarrow

            _, pq = _pyarrow()
            table = pq.read_table(path)
            columns = table.column_names
            rows = table.to_pylist() if options.text_column in columns and options.label_column in columns else []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise OnnxFaultError(f"cannot read texts from {path}: {err}; give UTF-8 .csv, .jsonl or Parquet") from None
    for flag, column in (("`text_column`", options.text_column), ("`label_column`", options.label_column)):
        if column not in columns:
            raise OnnxFaultError(f"{path} has no column '{column}' (its columns: {', '.join(map(str, columns)) or 'none'});"
                                 f" name the right one with {flag}")
    if not rows:
        raise OnnxFaultError(f"{path} holds no rows; give texts with labels")
    if len(rows) > MAX_SAMPLES:
        raise OnnxFaultError(f"{path} holds {len(rows):,} texts, over onnxfault's limit of {MAX_SAMPLES:,}; split it")
    texts = [r.get(options.text_column) for r in rows]
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise OnnxFaultError(f"row {bad} of {path} has no text in column '{options.text_column}'; give a string")
    raw = [r.get(options.label_column) for r in rows]
    try:
        labels = [int(v) if isinstance(v, str) and v.strip().lstrip("-").isdigit() else v for v in raw]
        return texts, as_labels(labels, f"column '{options.label_column}' of {path}")
    except OnnxFaultError as err:
        raise OnnxFaultError(f"{err} (labels must be class numbers 0..C-1)") from None


@dataclass
class TextSource(Source):
    """Texts and their labels, not yet tokenized: :meth:`tokenized` makes the records a model is fed."""

    texts: list[str] | None = None
    text_options: TextOptions | None = None
    tokenizer: object = None  # the tokenizers.Tokenizer, loaded once when the file is opened

    def tokenized(self, inputs) -> "TokenizedSource":
        """The texts as records for the model ``inputs`` (:class:`~onnxfault.model.ModelInput`)."""
        tokenizer = self.tokenizer
        ids_input = next((i for i in inputs if i.vocabulary and len(i.shape) == 1), None)
        if ids_input is None:
            listed = ", ".join(f"{i.name} ({i.dtype})" for i in inputs)
            raise OnnxFaultError(f"texts need a model that takes token ids; its inputs are {listed}")
        length = ids_input.shape[0] or self.text_options.max_length
        if length is None:
            raise OnnxFaultError(f"model input '{ids_input.name}' has a dynamic length; give `max_length` N")
        if self.text_options.max_length is not None and self.text_options.max_length != length:
            raise OnnxFaultError(f"`max_length` {self.text_options.max_length} differs from the model's sequence "
                                 f"length {length}; leave it out")
        fields = {}
        for spec in inputs:
            lowered = spec.name.lower()
            role = "ids" if spec is ids_input else "mask" if "mask" in lowered else "types" if "type" in lowered \
                else None
            if role is None:
                raise OnnxFaultError(f"model input '{spec.name}' is neither token ids, an attention mask nor token "
                                     "type ids, so texts cannot fill it; give the data as arrays (.npz)")
            fields[spec.name] = (role, spec.dtype)
        encodings = _encode(tokenizer, self.texts, length)
        arrays = {name: np.asarray([getattr(e, {"ids": "ids", "mask": "attention_mask", "types": "type_ids"}[role])
                                    for e in encodings], dtype) for name, (role, dtype) in fields.items()}
        from ..runtime import records

        rows = records(arrays)

        def chunks(size: int, first: int = 0) -> Iterator[np.ndarray]:
            for start in range(first, len(rows), size):
                yield rows[start:start + size]

        return TokenizedSource(self.description, self.labels, (), None, rows.dtype, chunks, texts=self.texts,
                               text_options=self.text_options, tokenizer=tokenizer)


@dataclass
class TokenizedSource(TextSource):
    """Texts tokenized for one model: records of its inputs, with the tokenizer (for special ids and decoding)."""

    def special_ids(self) -> np.ndarray:
        """The ids of the tokenizer's special tokens (padding among them)."""
        return np.asarray(sorted(i for i, token in _specials(self.tokenizer)), np.int64)

    def decode(self, ids: np.ndarray) -> list[str]:
        """Each row of token ids as text, special tokens left out."""
        return self.tokenizer.decode_batch([list(map(int, row)) for row in ids], skip_special_tokens=True)


def _specials(tokenizer) -> list[tuple[int, str]]:
    """(id, text) of the tokenizer's special tokens."""
    return [(i, token.content) for i, token in tokenizer.get_added_tokens_decoder().items() if token.special]


def _encode(tokenizer, texts: list[str], length: int):
    """Every text encoded, truncated and padded to ``length`` (the tokenizer's pad token, else [PAD], <pad> or id 0)."""
    specials = {text: i for i, text in _specials(tokenizer)}
    padding = tokenizer.padding or {}
    pad_token = padding.get("pad_token") or next((p for p in ("[PAD]", "<pad>") if p in specials), None)
    pad_id = padding.get("pad_id", specials.get(pad_token, 0))
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(length=length, pad_id=pad_id, pad_token=pad_token or "[PAD]")
    return tokenizer.encode_batch(texts)


def open_text(path: Path, options: TextOptions) -> TextSource:
    """Texts and labels from ``path``, tokenized when fitted to a model (:meth:`TextSource.tokenized`)."""
    tokenizer = load_tokenizer(options.tokenizer)  # a wrong tokenizer fails before the file is read
    texts, labels = read_texts(path, options)

    def chunks(rows: int, first: int = 0) -> Iterator[np.ndarray]:
        raise OnnxFaultError("texts are tokenized for a model first (fit the data set to one)")

    return TextSource(f"texts {path.name} ({len(texts)})", labels, (), None, np.dtype([("text", "O")]), chunks,
                      texts=texts, text_options=options, tokenizer=tokenizer)
