"""Synthesis for text models, in the space of their token embeddings.

Token ids have no gradient, so the gradient methods (deepfault, hs, fgsm, pgd) and hotflip differentiate from
the output of the embedding lookup: the Gather whose data is a float initializer (the embedding table) and
whose indices are the token ids (``graph.embedding_lookups``), found automatically or named with
``start`` (``--from``). The model from that tensor on (``graph.start_at``) takes the embeddings and the other
inputs it still reads (the attention mask) as they were.

The seeds' embeddings are perturbed; padding positions (attention mask 0) and special positions (special
tokens: those of a tokenizer, or else the first and last real token of each seed and the ids at padding
positions, e.g. BERT's [CLS], [SEP] and [PAD]) keep their embeddings. Each other position is projected onto the
nearest row of the embedding table (L2; never a special token's row), giving real token ids, which are run on
the ONNX model: the predictions, success and target rates reported are theirs; the continuous embeddings'
own are reported under ``embedding``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import onnx

from .. import graph as g
from ..errors import OnnxFaultError
from ..layers import sorted_graph
from ..model import Model, ModelInput, _with_shapes
from ..runtime import records

PROJECTION_ROWS = 1 << 22  # distances held at once while projecting (positions × table rows)


@dataclass
class EmbeddingSpace:
    """A text model seen from its token embeddings: ``sub`` is the model from ``start`` on (inputs: ``start``,
    then ``side``, the original inputs it still reads); ``table`` the embedding rows of ``token`` ids."""

    model: Model
    start: str
    sub: Model
    token: ModelInput
    side: tuple[str, ...]
    table: np.ndarray
    specials: np.ndarray | None = None  # token ids never written nor replaced (a tokenizer's); None: guessed

    def embed(self, x: np.ndarray, device: str = "auto") -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The embeddings at ``start`` of the records ``x`` (float32, one row per seed), and the side inputs the
        sub-model reads, by name."""
        session = self.model.session(device, [self.start])
        embedded = np.concatenate([session.run(x[i:i + 256])[1] for i in range(0, len(x), 256)])
        return embedded.astype(np.float32, copy=False), {name: np.ascontiguousarray(x[name]) for name in self.side}

    def editable(self, x: np.ndarray) -> np.ndarray:
        """(N, T) bool: the positions of the records ``x`` a method may change (real, not special tokens)."""
        ids = x[self.token.name]
        real = self._real(x)
        return real & ~np.isin(ids, self.special_ids(x))

    def special_ids(self, x: np.ndarray) -> np.ndarray:
        """The token ids no position is changed from or to: the tokenizer's specials, or the ids of the records'
        first and last real positions and of their padding."""
        if self.specials is not None:
            return self.specials
        ids, real = x[self.token.name], self._real(x)
        last = np.maximum(real.sum(axis=1) - 1, 0)
        guessed = [ids[:, 0], ids[np.arange(len(ids)), last], ids[~real]]
        return np.unique(np.concatenate(guessed))

    def _real(self, x: np.ndarray) -> np.ndarray:
        mask = self.model.attention_mask
        ids = x[self.token.name]
        return np.ones(ids.shape, bool) if mask is None else x[mask.name].astype(bool)

    def keep_fixed(self, x: np.ndarray, embedded: np.ndarray, synthesized: np.ndarray) -> np.ndarray:
        """``synthesized`` with the embeddings of the positions that are not ``editable`` put back."""
        out = synthesized.copy()
        fixed = ~self.editable(x)
        out[fixed] = embedded[fixed]
        return out

    def project(self, x: np.ndarray, synthesized: np.ndarray) -> np.ndarray:
        """The records ``x`` with the token ids of every editable position replaced by the id of the table row
        nearest (L2) to its synthesized embedding, special tokens excluded; the other inputs as they were."""
        editable = self.editable(x)
        allowed = np.setdiff1d(np.arange(len(self.table)), self.special_ids(x))
        if not len(allowed):
            raise OnnxFaultError("every row of the embedding table is a special token; nothing to project onto")
        rows = self.table[allowed].astype(np.float64)
        norms = (rows ** 2).sum(axis=1)
        where = np.argwhere(editable)
        vectors = synthesized[editable].astype(np.float64)
        nearest = np.empty(len(vectors), np.int64)
        step = max(1, PROJECTION_ROWS // len(rows))
        for start in range(0, len(vectors), step):
            part = vectors[start:start + step]
            nearest[start:start + step] = np.argmin(norms[None, :] - 2 * part @ rows.T, axis=1)  # + |v|², constant
        out = x.copy()
        out[self.token.name][where[:, 0], where[:, 1]] = allowed[nearest]  # a field is a view of the records
        return out

    def value_range(self) -> tuple[float, float]:
        """The valid range of an embedding: the table's least and greatest value."""
        return float(self.table.min()), float(self.table.max())

    def sub_records(self, embedded: np.ndarray, side: dict[str, np.ndarray]) -> np.ndarray:
        """The sub-model's inputs for a batch: the embeddings and the side inputs, as records."""
        return records({self.start: embedded, **{name: side[name] for name in self.side}})


def embedding_space(model: Model, start: str | None = None) -> EmbeddingSpace:
    """The embedding space of a text model (see the module): from ``start`` when given, else from the lookup
    of its token ids (their only embedding lookup; several are an error asking for ``start``)."""
    token = model.token_input
    if token is None:
        inputs = ", ".join(f"{i.name} ({i.dtype})" for i in model.inputs)
        raise OnnxFaultError(f"the model's inputs ({inputs}) hold no token ids that look up an embedding; the "
                             "embedding space (and `start`) is for text models")
    lookups = g.embedding_lookups(sorted_graph(model.proto), token.name)
    tables = {output: table for output, table, _ in lookups}
    if start is None:
        if len(lookups) != 1:
            listed = ", ".join(output for output, _, _ in lookups)
            raise OnnxFaultError(f"token input '{token.name}' is looked up {len(lookups)} times ({listed}); "
                                 "choose the one to differentiate from with `start` TENSOR")
        start = lookups[0][0]
    elif start not in tables:
        g.require_tensors(model.proto, [start])
        listed = ", ".join(tables) or "none"
        raise OnnxFaultError(f"`start` {start} is not an embedding lookup of '{token.name}' (those are: {listed}); its "
                             "values cannot be turned back into token ids, so start at a lookup")
    table = onnx.numpy_helper.to_array(next(i for i in model.proto.graph.initializer if i.name == tables[start]))
    sub_proto = _with_shapes(g.start_at(model.proto, start))
    fed = [i.name for i in sub_proto.graph.input if i.name not in {t.name for t in sub_proto.graph.initializer}]
    side = tuple(fed[1:])
    width = table.shape[1]
    start_shape = (*token.shape, width)
    inputs = (ModelInput(start, np.dtype(np.float32), start_shape), *[i for i in model.inputs if i.name in side])
    sub = replace(model, proto=sub_proto, input_name=start, input_shape=start_shape, inputs=inputs,
                  fixed_batch=None, _layers=None, _shapes=dict(model._shapes))
    return EmbeddingSpace(model, start, sub, token, side, np.asarray(table))


def token_metrics(space: EmbeddingSpace, x: np.ndarray, projected: np.ndarray, labels: np.ndarray,
                  before: np.ndarray, target: int | None, probabilities: bool, device: str = "auto",
                  size: int = 256) -> tuple[dict, np.ndarray]:
    """The projected records run on the ONNX model: their predictions, accuracy, loss, success and target
    rates, and the tokens changed per input; and the predictions."""
    from ..loss import cross_entropy

    session = space.model.session(device)
    scores = np.concatenate([session.run(projected[i:i + size])[0] for i in range(0, len(projected), size)])
    after = scores.argmax(-1)
    changed = (projected[space.token.name] != x[space.token.name]).sum(axis=1)
    correct_before, correct_after = before == labels, after == labels
    return {
        "accuracy_after": float(correct_after.mean()),
        "loss_after": float(cross_entropy(scores, labels, probabilities).mean()),
        "success_rate": float((correct_before & ~correct_after).mean()),
        "target_rate": None if target is None else float((after == target).mean()),
        "tokens_changed": {"mean": float(changed.mean()), "max": int(changed.max())},
    }, after
