"""Classifiers nobody here wrote: built from the model libraries' own code (Hugging Face ``transformers``) with
small seeded configs, nothing downloaded, and exported to ONNX as a user would (``torch.onnx.export``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

VOCAB, LENGTH, CLASSES = 120, 16, 3
_TEXT_COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=48, max_position_embeddings=40, num_labels=CLASSES)
TEXT_MODELS = ("bert", "distilbert", "roberta", "albert", "electra")


def text_config(name: str):
    import transformers as tf

    return {
        "bert": lambda: tf.BertConfig(**_TEXT_COMMON),
        "distilbert": lambda: tf.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=48,
                                                  max_position_embeddings=40, num_labels=CLASSES),
        "roberta": lambda: tf.RobertaConfig(**_TEXT_COMMON, pad_token_id=1),
        "albert": lambda: tf.AlbertConfig(**_TEXT_COMMON, embedding_size=16),
        "electra": lambda: tf.ElectraConfig(**_TEXT_COMMON, embedding_size=16),
    }[name]()


def text_classifier(name: str):
    """A seeded ``AutoModelForSequenceClassification`` of the architecture ``name``, in eval mode."""
    import torch
    import transformers

    torch.manual_seed(0)
    return transformers.AutoModelForSequenceClassification.from_config(text_config(name)).eval()


def export_text(model, path: Path) -> Path:
    """``model`` as ONNX with inputs ``input_ids`` and ``attention_mask`` (int64, (N, LENGTH)) and output
    ``logits``, the batch axis dynamic: what a user's export of a Hugging Face text classifier looks like. The
    wrapper is put in eval mode: ``torch.onnx.export`` restores the exported module's mode afterwards, and a new
    wrapper's is training, which would turn the classifier's dropout on for everything after the export."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    ids = torch.randint(3, VOCAB, (2, LENGTH))
    mask = torch.ones(2, LENGTH, dtype=torch.int64)
    axes = {name: {0: "N"} for name in ("input_ids", "attention_mask", "logits")}
    torch.onnx.export(Logits(model).eval(), (ids, mask), str(path), dynamo=False, input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], dynamic_axes=axes, opset_version=17)
    return path


def token_data(count: int = 240, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded token ids (3 … VOCAB-1, 0 at padding), attention masks of lengths 4 … LENGTH, labels."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, LENGTH + 1, count)
    mask = (np.arange(LENGTH)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(3, VOCAB, (count, LENGTH)) * mask
    return {"input_ids": ids, "attention_mask": mask, "y": rng.integers(0, CLASSES, count)}
