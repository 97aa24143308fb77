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

    ids = torch.randint(3, model.config.vocab_size, (2, LENGTH))
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


IMAGE_SIZE = 32
_VISION = dict(image_size=IMAGE_SIZE, num_channels=3, num_labels=CLASSES)
_VIT = dict(_VISION, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48)
IMAGE_MODELS = ("vit", "deit", "beit", "data2vec-vision", "dinov2", "swin", "convnext", "convnextv2", "resnet",
                "regnet", "bit", "poolformer", "mobilenet_v2", "focalnet")


def image_config(name: str):
    import transformers as tf

    small_stages = dict(num_labels=CLASSES, num_channels=3)
    return {
        "vit": lambda: tf.ViTConfig(**_VIT),
        "deit": lambda: tf.DeiTConfig(**_VIT),
        "beit": lambda: tf.BeitConfig(**_VIT),
        "data2vec-vision": lambda: tf.Data2VecVisionConfig(**_VIT),
        "dinov2": lambda: tf.Dinov2Config(**_VIT),
        "swin": lambda: tf.SwinConfig(**_VISION, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                                      window_size=4),
        "convnext": lambda: tf.ConvNextConfig(**small_stages, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2),
        "convnextv2": lambda: tf.ConvNextV2Config(**small_stages, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2),
        "resnet": lambda: tf.ResNetConfig(**small_stages, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
        "regnet": lambda: tf.RegNetConfig(**small_stages, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                          groups_width=8),
        "bit": lambda: tf.BitConfig(**small_stages, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                    num_groups=4),
        "poolformer": lambda: tf.PoolFormerConfig(**small_stages, hidden_sizes=[8, 16], depths=[1, 1],
                                                  num_encoder_blocks=2, patch_sizes=[4, 2], strides=[4, 2],
                                                  padding=[1, 0], pool_size=3),
        "mobilenet_v2": lambda: tf.MobileNetV2Config(**small_stages, image_size=IMAGE_SIZE, depth_multiplier=0.25),
        "focalnet": lambda: tf.FocalNetConfig(**_VISION, patch_size=4, embed_dim=16, depths=[1, 1]),
    }[name]()


def image_classifier(name: str):
    import torch
    import transformers

    torch.manual_seed(0)
    if name == "deit":  # the auto class maps DeiT to two heads (with and without teacher) and picks neither
        return transformers.DeiTForImageClassification(image_config(name)).eval()
    return transformers.AutoModelForImageClassification.from_config(image_config(name)).eval()


AUDIO_MODELS = ("wav2vec2", "hubert", "wavlm")
AUDIO_SAMPLES = 1600  # 0.1 s at 16 kHz


def audio_config(name: str):
    import transformers as tf

    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, num_labels=CLASSES,
                  conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_feat_extract_layers=2,
                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, classifier_proj_size=16)
    return {"wav2vec2": lambda: tf.Wav2Vec2Config(**common), "hubert": lambda: tf.HubertConfig(**common),
            "wavlm": lambda: tf.WavLMConfig(**common)}[name]()


def audio_classifier(name: str):
    import torch
    import transformers

    torch.manual_seed(0)
    return transformers.AutoModelForAudioClassification.from_config(audio_config(name)).eval()


def export_single(model, path: Path, example, input_name: str) -> Path:
    """``model`` (its ``logits`` on ``input_name``) as ONNX with the batch axis dynamic, exported in eval mode."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(**{input_name: x}).logits

    torch.onnx.export(Logits(model).eval(), (example,), str(path), dynamo=False, input_names=[input_name],
                      output_names=["logits"], dynamic_axes={input_name: {0: "N"}, "logits": {0: "N"}},
                      opset_version=17)
    return path


WORDS = "the film was great good bad awful boring plot actors music loved hated fine slow fast story ending".split()


def trained_tokenizer(path: Path, seed: int = 0):
    """A WordPiece tokenizer (BERT's pipeline: [CLS] … [SEP], [PAD] 0) trained on seeded sentences of
    :data:`WORDS`, saved at ``path``; returns it and the sentences with their labels (1 when "great" or "good")."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    rng = np.random.default_rng(seed)
    sentences = [" ".join(rng.choice(WORDS, rng.integers(3, 12))) for _ in range(160)]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(sentences, trainers.WordPieceTrainer(
        vocab_size=90, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(t, tokenizer.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    tokenizer.save(str(path))
    return tokenizer, sentences, [int("great" in s or "good" in s) for s in sentences]
