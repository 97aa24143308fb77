"""Control flow: If, Loop, Scan.

Their bodies arrive as ``module.Graph`` sub-modules (built once with the module); each converter gets, after
the node's own inputs, the dict of outer-scope tensors the bodies read, and passes it on to ``body.run``.
Branch choices and trip counts are read from tensors at run time (a host sync, as in any runtime); the
values flowing through the bodies stay torch tensors, so gradients pass through every iteration.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import Node, OpFn, axis_of, converter, ints


@converter("If")
def _if(node: Node) -> OpFn:
    then, other = node.attr("then_branch"), node.attr("else_branch")

    def run(cond, scope):
        branch = then if bool(cond.reshape(-1)[0]) else other
        return tuple(branch.run([], scope))

    return run


@converter("Loop")
def _loop(node: Node) -> OpFn:
    body = node.attr("body")
    n_states = len(body.input_names) - 2
    n_scans = len(body.output_names) - 1 - n_states

    def run(trip, cond, *args):
        *states, scope = args
        device = next((v.device for v in (trip, cond, *states) if v is not None), None)
        limit = None if trip is None else int(trip.reshape(-1)[0])
        cond = torch.ones((), dtype=torch.bool, device=device) if cond is None else cond
        scans, i = [], 0
        while bool(cond.reshape(-1)[0]) and (limit is None or i < limit):
            out = body.run([torch.tensor(i, dtype=torch.int64, device=device), cond, *states], scope)
            cond, states = out[0], out[1:1 + n_states]
            scans.append(out[1 + n_states:])
            i += 1
        # scan outputs stack the per-iteration values on a new first axis (no iteration: empty)
        stacked = [torch.stack(s) for s in zip(*scans)] if scans else [torch.empty(0, device=device)] * n_scans
        return (*states, *stacked)

    return run


@converter("Scan")
def _scan(node: Node) -> OpFn:
    body = node.attr("body")
    n_scans_in = node.attr("num_scan_inputs")
    n_states = len(body.input_names) - n_scans_in
    n_scans_out = len(body.output_names) - n_states
    in_dirs = node.attr("directions" if node.opset < 9 else "scan_input_directions") or [0] * n_scans_in
    in_axes = node.attr("scan_input_axes") or [0] * n_scans_in
    out_dirs = node.attr("scan_output_directions") or [0] * n_scans_out
    out_axes = node.attr("scan_output_axes") or [0] * n_scans_out

    def scan(states, xs, scope, axes):
        """One scan (no batch axis): the final states and the scan outputs."""
        slices = [x.unbind(axis_of(a, x.dim())) for x, a in zip(xs, axes)]
        slices = [s[::-1] if d else s for s, d in zip(slices, in_dirs)]
        outs = []
        for t in range(len(slices[0])):
            out = body.run([*states, *(s[t] for s in slices)], scope)
            states = out[:n_states]
            outs.append(out[n_states:])
        scans = []
        for k, values in enumerate(zip(*outs)):
            values = values[::-1] if out_dirs[k] else values  # prepending: last iteration first
            scans.append(torch.stack(values, axis_of(out_axes[k], values[0].dim() + 1)))
        return list(states), scans

    def run_9(*args):
        *args, scope = args
        states, scans = scan(args[:n_states], args[n_states:], scope, in_axes)
        return (*states, *scans)

    def run_8(lens, *args):
        """Opset 8: axis 0 is a batch axis, each batch element scanned on its own over its first lens[b]
        steps of axis 1; the scan outputs are padded with zeros to the full length."""
        *args, scope = args
        states, xs = args[:n_states], args[n_states:]
        steps = xs[0].shape[1]
        lens = [steps] * xs[0].shape[0] if lens is None else ints(lens)
        finals, outputs = [], []
        for b, n in enumerate(lens):
            final, scans = scan([s[b] for s in states], [x[b, :n] for x in xs], scope, [0] * n_scans_in)
            finals.append(final)
            outputs.append([F.pad(y, (0, 0) * (y.dim() - 1) + (0, steps - n)) for y in scans])
        return (*(torch.stack(v) for v in zip(*finals)), *(torch.stack(v) for v in zip(*outputs)))

    return run_8 if node.opset < 9 else run_9
