"""Attention and its companions: Attention, RotaryEmbedding, and the newer sequence-model ops."""
from __future__ import annotations
