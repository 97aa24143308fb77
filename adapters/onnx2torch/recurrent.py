"""Recurrent layers: RNN, GRU, LSTM.

All directions (forward, reverse, bidirectional), both layouts, the activations / activation_alpha /
activation_beta attributes, clip, sequence_lens, initial states, LSTM peepholes and input_forget. The input
projections of all time steps are one matmul; only the recurrence loops over time.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from .registry import Node, OpFn, converter

# name (lower case) → (fn(x, alpha, beta), default alpha, default beta); None: the function takes no such value
_ACTIVATIONS = {
    "relu": (lambda x, a, b: torch.relu(x), None, None),
    "tanh": (lambda x, a, b: torch.tanh(x), None, None),
    "sigmoid": (lambda x, a, b: torch.sigmoid(x), None, None),
    "affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda x, a, b: F.leaky_relu(x, a), 0.01, None),
    "thresholdedrelu": (lambda x, a, b: torch.where(x > a, x, torch.zeros_like(x)), 1.0, None),
    "scaledtanh": (lambda x, a, b: a * torch.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda x, a, b: torch.clamp(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda x, a, b: F.elu(x, a), 1.0, None),
    "softsign": (lambda x, a, b: F.softsign(x), None, None),
    "softplus": (lambda x, a, b: F.softplus(x), None, None),
}


def _activations(node: Node, defaults: list[str], directions: int) -> list[list]:
    """The activation functions of each direction. activation_alpha/beta are consumed in order by the
    functions that take such a value (others use their operator's default), as onnxruntime does."""
    names = node.attr("activations") or defaults
    if len(names) == len(defaults):
        names = names * directions
    if len(names) != len(defaults) * directions:
        raise node.unsupported(f"{len(names)} activations (expected {len(defaults) * directions})")
    alphas, betas = iter(node.attr("activation_alpha") or []), iter(node.attr("activation_beta") or [])
    fns = []
    for name in names:
        if name.lower() not in _ACTIVATIONS:
            raise node.unsupported(f"activation {name}")
        fn, alpha, beta = _ACTIVATIONS[name.lower()]
        alpha = next(alphas, alpha) if alpha is not None else None
        beta = next(betas, beta) if beta is not None else None
        fns.append(partial(fn, a=alpha, b=beta))
    n = len(defaults)
    return [fns[d * n:(d + 1) * n] for d in range(directions)]


# Cells: (x_t projected with W and its bias, h, c, recurrence weight R, its bias, peepholes, activations,
# pre-activation clip, option) → (h, c). Gate orders are ONNX's: GRU z r h, LSTM i o f c.
def _rnn_cell(x, h, c, r, rb, p, acts, clip, option):
    return acts[0](clip(x + h @ r.T + rb)), None


def _gru_cell(x, h, c, r, rb, p, acts, clip, linear_before_reset):
    f, g = acts
    n = h.shape[-1]
    xz, xr, xh = x.split(n, -1)
    hz, hr = (h @ r[:2 * n].T + rb[:2 * n]).split(n, -1)
    z, reset = f(clip(xz + hz)), f(clip(xr + hr))
    if linear_before_reset:  # the reset gate scales the recurrence after its matmul and bias
        hh = reset * (h @ r[2 * n:].T + rb[2 * n:])
    else:
        hh = (reset * h) @ r[2 * n:].T + rb[2 * n:]
    return (1 - z) * g(clip(xh + hh)) + z * h, None


def _lstm_cell(x, h, c, r, rb, p, acts, clip, input_forget):
    f, g, out = acts
    i, o, forget, cand = (x + h @ r.T + rb).split(h.shape[-1], -1)
    pi, po, pf = p.split(h.shape[-1]) if p is not None else (0, 0, 0)
    i = f(clip(i + pi * c))
    forget = 1 - i if input_forget else f(clip(forget + pf * c))
    c = forget * c + i * g(clip(cand))
    return f(clip(o + po * c)) * out(c), c


# op → (gates, cell, default activations, attribute passed to the cell as its option)
_KINDS = {"RNN": (1, _rnn_cell, ["Tanh"], None),
          "GRU": (3, _gru_cell, ["Sigmoid", "Tanh"], "linear_before_reset"),
          "LSTM": (4, _lstm_cell, ["Sigmoid", "Tanh", "Tanh"], "input_forget")}


def _sweep(cell, xw, h, c, mask, reverse: bool):
    """One direction over time: Y (T, N, H) and the last h, c. Past a sequence's length (mask false) the
    state stays and Y is zero, so reverse sweeps start at each sequence's own last step."""
    ys = [None] * xw.shape[0]
    for t in reversed(range(xw.shape[0])) if reverse else range(xw.shape[0]):
        h_new, c_new = cell(xw[t], h, c)
        if mask is None:
            h, c, ys[t] = h_new, c_new, h_new
        else:
            ys[t] = torch.where(mask[t], h_new, torch.zeros_like(h_new))
            h = torch.where(mask[t], h_new, h)
            c = None if c is None else torch.where(mask[t], c_new, c)
    return torch.stack(ys), h, c


@converter("RNN", "GRU", "LSTM")
def _recurrent(node: Node) -> OpFn:
    gates, cell, defaults, option = _KINDS[node.op]
    direction = node.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise node.unsupported(f"direction {direction}")
    directions = 2 if direction == "bidirectional" else 1
    acts = _activations(node, defaults, directions)
    threshold = node.attr("clip")
    clip = (lambda v: v) if threshold is None else (lambda v: v.clamp(-threshold, threshold))
    layout, option = node.attr("layout", 0), node.attr(option, 0) if option else None
    lstm = node.op == "LSTM"

    def run(x, w, r, b=None, lens=None, h0=None, c0=None, p=None):
        if layout:  # batch first: [N, T, I], states [N, D, H]
            x, h0, c0 = (v if v is None else v.transpose(0, 1) for v in (x, h0, c0))
        steps, batch, hidden = x.shape[0], x.shape[1], r.shape[-1]
        zeros = x.new_zeros(directions, batch, hidden)
        h0 = zeros if h0 is None else h0
        c0 = (zeros if c0 is None else c0) if lstm else [None] * directions
        b = x.new_zeros(directions, 2 * gates * hidden) if b is None else b
        mask = None
        if lens is not None:
            mask = (torch.arange(steps, device=x.device)[:, None] < lens.to(x.device)[None, :])[..., None]
        ys, hs, cs = [], [], []
        for d in range(directions):
            xw = x @ w[d].T + b[d, :gates * hidden]  # every time step's input projection at once
            step = _bind(cell, r[d], b[d, gates * hidden:], None if p is None else p[d], acts[d], clip, option)
            y, h, c = _sweep(step, xw, h0[d], c0[d], mask, reverse=direction == "reverse" or d == 1)
            ys.append(y)
            hs.append(h)
            cs.append(c)
        y, h = torch.stack(ys, 1), torch.stack(hs)  # [T, D, N, H], [D, N, H]
        c = torch.stack(cs) if lstm else None
        if layout:
            y, h, c = y.permute(2, 0, 1, 3), h.transpose(0, 1), None if c is None else c.transpose(0, 1)
        return (y, h, c)[:node.outputs]

    return run


def _bind(cell, r, rb, p, acts, clip, option):
    """The cell as a function of (x_t, h, c) for one direction's weights."""
    return lambda x, h, c: cell(x, h, c, r, rb, p, acts, clip, option)
