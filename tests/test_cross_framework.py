"""The same network from PyTorch, Keras 3 and the legacy Keras reader gives the same ONNX behaviour:
logits to 1e-5, every spectrum count, and the same Tarantula/Ochiai/D* rankings (examples/cross_framework.py)."""
from __future__ import annotations

import sys

import pytest

from conftest import EXAMPLES

sys.path.insert(0, str(EXAMPLES))
import cross_framework  # noqa: E402


def check(result, names_a, names_b):
    assert result.max_logit_diff < 1e-5, result
    assert all(result.spectra_equal.values()) and all(result.rankings_equal.values()), result
    assert result.mapping == list(zip(names_a, names_b))


def test_pytorch_and_keras3_agree(tmp_path):
    pytest.importorskip("tensorflow", reason="the Keras 3 side needs onnxfault[keras]")
    dense, lenet = cross_framework.build_pairs(tmp_path, with_keras=True, with_deepfault=False)
    check(dense, [f"act{i}" for i in range(1, 6)], [f"leaky_re_lu_{i}" for i in range(1, 6)])
    check(lenet, ["relu1", "relu2", "relu3", "relu4"], ["conv2d_1", "conv2d_2", "dense_1", "dense_2"])


def test_deepfault_legacy_reader_and_pytorch_agree(tmp_path):
    if not cross_framework.DEEPFAULT.is_dir():
        pytest.skip(f"needs DeepFault's models at {cross_framework.DEEPFAULT}")
    (result,) = cross_framework.build_pairs(tmp_path, with_keras=False, with_deepfault=True)
    check(result, [f"leaky_re_lu_{i}" for i in range(1, 6)], [f"0.act{i}" for i in range(1, 6)])  # wrapped as module 0
