"""Signal processing: DFT, STFT and window functions."""
from __future__ import annotations
