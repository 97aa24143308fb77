"""Resampling: Resize, Upsample, GridSample, AffineGrid, RoiAlign."""
from __future__ import annotations
