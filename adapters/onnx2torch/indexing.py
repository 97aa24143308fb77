"""Indexing ops: Gather*, Scatter*, TopK, OneHot, Compress, NonZero, Unique and friends."""
from __future__ import annotations
