"""Signal processing: DFT, STFT, the windows HannWindow, HammingWindow, BlackmanWindow, and MelWeightMatrix.

ONNX carries complex values as a trailing axis: size 1 (real) or 2 (real, imaginary)."""
from __future__ import annotations

import math

import torch

from .registry import Node, OpFn, axis_of, converter, scalar, torch_dtype


def _signal(x: torch.Tensor) -> torch.Tensor:
    """The ONNX [..., 1] / [..., 2] layout as a real / complex tensor without that axis, in float32 at least
    (torch's CPU FFT has no half kernels)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if x.shape[-1] == 1:
        return x[..., 0]
    return torch.complex(x[..., 0], x[..., 1])


def _layout(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A real / complex result back in the ONNX layout and the input's type."""
    y = torch.view_as_real(y.resolve_conj()) if y.is_complex() else y.unsqueeze(-1)
    return y.to(like.dtype)


def _spectrum(x: torch.Tensor, n: int, dim: int, onesided: bool) -> torch.Tensor:
    """Forward DFT of length n; onesided keeps the bins 0..n//2 (rfft for a real signal)."""
    if not onesided:
        return torch.fft.fft(x, n=n, dim=dim)
    if not x.is_complex():
        return torch.fft.rfft(x, n=n, dim=dim)
    return torch.fft.fft(x, n=n, dim=dim).narrow(dim, 0, n // 2 + 1)


@converter("DFT")
def _dft(node: Node) -> OpFn:
    inverse, onesided = bool(node.attr("inverse", 0)), bool(node.attr("onesided", 0))
    attr_axis = node.attr("axis", 1)  # opset 17; from opset 20 the axis is an input, default -2

    def dft(x, dft_length=None, axis_input=None):
        axis = attr_axis if node.opset < 20 else int(scalar(axis_input, -2))
        dim = axis_of(axis, x.dim())
        if dim >= x.dim() - 1:
            raise node.unsupported(f"axis {axis} (the last axis holds the real and imaginary parts)")
        signal = _signal(x)
        if dft_length is not None:
            n = int(scalar(dft_length))
        else:  # the inverse of a one-sided spectrum defaults to an even-length signal
            n = 2 * (x.shape[dim] - 1) if inverse and onesided else x.shape[dim]
        if inverse and onesided:
            y = torch.fft.irfft(signal, n=n, dim=dim)
        elif inverse:
            y = torch.fft.ifft(signal, n=n, dim=dim)
        else:
            y = _spectrum(signal, n, dim, onesided)
        return _layout(y, x)

    return dft


@converter("STFT")
def _stft(node: Node) -> OpFn:
    onesided = bool(node.attr("onesided", 1))

    def stft(signal, frame_step, window=None, frame_length=None):
        if frame_length is not None:
            length = int(scalar(frame_length))
        else:
            length = signal.shape[-2] if window is None else window.shape[0]
        if window is not None and window.shape[0] != length:
            raise node.unsupported(f"a window of length {window.shape[0]} for frames of length {length}")
        x = _signal(signal)  # [batch, signal_length]
        frames = x.unfold(-1, length, int(scalar(frame_step)))  # [batch, frames, length]
        if window is not None:
            frames = frames * window.to(frames.real.dtype)
        return _layout(_spectrum(frames, length, -1, onesided), signal)

    return stft


def _cosine_window(*coefficients: float):
    """A generalised cosine window: w[k] = Σ_j a_j cos(2πjk/N), N = size (periodic) or size - 1."""

    def make(node: Node) -> OpFn:
        periodic = bool(node.attr("periodic", 1))
        dtype = torch_dtype(node, node.attr("output_datatype", 1))

        def window(size):
            n = int(scalar(size))
            period = n if periodic else n - 1
            if period == 0:  # a symmetric window of length 1 (0/0 in the formula): 1, as torch and scipy
                return torch.ones(n, dtype=dtype, device=size.device)
            k = torch.arange(n, dtype=torch.float64, device=size.device) * (2 * math.pi / period)
            return sum(a * torch.cos(j * k) for j, a in enumerate(coefficients)).to(dtype)

        return window

    return make


converter("HannWindow")(_cosine_window(0.5, -0.5))
converter("HammingWindow")(_cosine_window(25 / 46, -21 / 46))
converter("BlackmanWindow")(_cosine_window(0.42, -0.5, 0.08))


@converter("MelWeightMatrix")
def _mel_weight_matrix(node: Node) -> OpFn:
    dtype = torch_dtype(node, node.attr("output_datatype", 1))

    def mel_weight_matrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz):
        mels, n_fft, rate = int(scalar(num_mel_bins)), int(scalar(dft_length)), scalar(sample_rate)
        low, high = (2595 * math.log10(1 + scalar(f) / 700) for f in (lower_edge_hertz, upper_edge_hertz))
        device = num_mel_bins.device
        # mels + 2 edges equally spaced in mel (step: range / (mels + 2), as ONNX's reference), as DFT bins
        mel = torch.arange(mels + 2, dtype=torch.float64, device=device) * ((high - low) / (mels + 2)) + low
        edges = torch.floor((n_fft + 1) * (700 * torch.expm1(mel * (math.log(10) / 2595))) / rate)
        left, center, right = edges[:-2], edges[1:-1], edges[2:]
        j = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=device)[:, None]
        rising = (j - left) / (center - left).clamp(min=1)
        falling = (right - j) / (right - center).clamp(min=1)
        # triangles peaking at 1 on their centre bin (a zero-width side is just the peak)
        weights = torch.where((j >= left) & (j < center), rising, torch.zeros_like(j))
        weights = torch.where((j > center) & (j < right), falling, weights)
        return torch.where(j == center, torch.ones_like(weights), weights).to(dtype)

    return mel_weight_matrix
