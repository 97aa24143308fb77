"""A folder of per-class sound folders (``root/<class>/*.wav``, classes numbered in name order), read with
``soundfile`` (libsndfile; ``pip install "onnxfault[audio]"``) as float32 waveforms in [-1, 1].

Every file's header is read up front (its rate, length and channels). Several channels are averaged into one.
With ``sample_rate`` (``--sample-rate``, the rate the model was trained at), files at another rate are resampled
by ``scipy.signal.resample_poly`` (polyphase filtering); without it, the files must share one rate. Samples are
the waveforms zero-padded at the end to the longest; fitting to a model pads or cuts them to its input length
(``layout.plan_layout``, layout ``wave``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import OnnxFaultError
from .source import MAX_SAMPLE_ELEMENTS, Source

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg"}
INSTALL_HINT = 'install the audio extra: pip install "onnxfault[audio]"'


def _soundfile():
    try:
        import soundfile
    except ImportError:
        raise OnnxFaultError(f"reading sound files needs the soundfile package; {INSTALL_HINT}") from None
    return soundfile


def _info(soundfile, file: Path):
    try:
        return soundfile.info(str(file))
    except Exception as err:  # libsndfile's errors come as RuntimeError or its own LibsndfileError
        raise OnnxFaultError(f"cannot read sound file {file}: {str(err).splitlines()[0]}; remove or fix it") from None


def open_audio_folder(path: Path, files: list[Path], labels: list[int], classes: int,
                      sample_rate: int | None = None) -> Source:
    """The sound ``files`` (with their class ``labels``) of the class folders of ``path`` as one source of
    float32 waveforms at ``sample_rate`` (or the files' one rate)."""
    soundfile = _soundfile()
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, int)
                                    or sample_rate < 1):
        raise OnnxFaultError(f"`sample_rate` must be a whole number of samples per second ≥ 1 (got {sample_rate})")
    infos = [_info(soundfile, f) for f in files]
    rates = sorted({i.samplerate for i in infos})
    if sample_rate is None and len(rates) > 1:
        first = next(f for f, i in zip(files, infos) if i.samplerate != infos[0].samplerate)
        raise OnnxFaultError(f"the sound files have sample rates {', '.join(map(str, rates))} Hz ({files[0].name}: "
                             f"{infos[0].samplerate}, {first.name}: {dict(zip(files, infos))[first].samplerate}); give "
                             "`sample_rate` R (the model's) to resample them")
    rate = sample_rate or rates[0]
    lengths = [math.ceil(i.frames * rate / i.samplerate) for i in infos]
    longest = max(lengths)
    if not longest:
        raise OnnxFaultError(f"every sound file in {path} is empty; give recordings")
    if longest > MAX_SAMPLE_ELEMENTS:
        raise OnnxFaultError(f"{files[lengths.index(longest)]} holds {longest:,} samples, over onnxfault's limit of "
                             f"{MAX_SAMPLE_ELEMENTS:,} per sample; cut the recordings")

    def read(file: Path, info) -> np.ndarray:
        try:
            wave, _ = soundfile.read(str(file), dtype="float32", always_2d=True)
        except Exception as err:
            raise OnnxFaultError(f"cannot read sound file {file}: {str(err).splitlines()[0]}; remove or fix it") from None
        wave = wave.mean(axis=1, dtype=np.float32)  # one channel
        if info.samplerate != rate:
            from scipy.signal import resample_poly

            common = math.gcd(rate, info.samplerate)
            wave = resample_poly(wave, rate // common, info.samplerate // common).astype(np.float32)
        out = np.zeros(longest, np.float32)
        out[:min(len(wave), longest)] = wave[:longest]
        return out

    def chunks(rows: int, first: int = 0) -> Iterator[np.ndarray]:
        for start in range(first, len(files), rows):
            yield np.stack([read(f, i) for f, i in zip(files[start:start + rows], infos[start:start + rows])])

    return Source(f"sound folder {path.name} ({classes} classes, {rate} Hz)", np.asarray(labels, np.int64),
                  (longest,), "wave", np.dtype(np.float32), chunks, sample_rate=rate)
