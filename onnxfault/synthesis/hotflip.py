"""HotFlip (Ebrahimi, Rao, Lowd, Dou — ACL 2018), for text models: token substitutions chosen to first order.

Flipping position t from token a to token b changes the objective J by about (e_b − e_a) · ∂J/∂e_t (the paper's
Eq. 1, with e the embedding table's rows and ∂J/∂e_t the gradient at t's embedding). Each step computes that
estimate for every editable position (real tokens, not special ones: see :mod:`onnxfault.synthesis.embedding`)
and every token except the special ones, takes the ``candidates`` best (t, b) pairs, runs each on the ONNX
model, and keeps the one that raises J the most; a seed stops when no candidate raises J, when it is
misclassified (or predicted as the target, when one is given), or after ``max_flips`` flips. A position is
flipped at most once. This is the paper's one-flip-at-a-time search with its candidates checked on the model
(the paper's beam search keeps several sequences; ``candidates`` checks several flips of one).

J (``goal``): ``neurons`` (default) is the mean value of the k suspicious neurons, DeepFault's objective;
``loss`` the cross-entropy of the true class (untargeted) or minus that of ``target`` (targeted), the
paper's attack. Defaults: max_flips 5, candidates 8.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import Method, option

GOALS = ("neurons", "loss")


class HotFlip(Method):
    name = "hotflip"
    summary = ("HotFlip (text models): the token substitutions that most raise the suspicious neurons (or the loss, "
               "`goal` loss) to first order, each checked on the model")
    paper = "Ebrahimi, Rao, Lowd, Dou: HotFlip: White-Box Adversarial Examples for Text Classification (ACL 2018)"
    embeddings = True
    text_only = True
    metrics = ((("flips", "mean"), "flips per input (mean)", "min", False),)

    @dataclass(frozen=True)
    class Options:
        goal: str = option("neurons", "what a flip raises: neurons (the k suspicious neurons' mean, DeepFault's "
                           "objective) | loss (the cross-entropy: untargeted, or towards the target)", choices=GOALS)
        max_flips: int = option(5, "at most this many token substitutions per input", minimum=1)
        candidates: int = option(8, "flips of highest first-order gain checked on the model per step", minimum=1)

    def run(self, p):
        return run(p)

    def merge(self, parts: list) -> list:
        """Flips per seed, in chunk order."""
        return [flips for part in parts for flips in (part or [])]

    def summarize(self, stats, problem) -> dict:
        return summarize(stats or [])


def run(p) -> np.ndarray:
    from .. import graph
    from ..errors import OnnxFaultError

    space, seeds = p.space, p.records
    if space is None or seeds is None:
        raise OnnxFaultError("hotflip substitutes tokens: it runs on text models (an input of token ids)")
    goal = p.options.goal
    if goal == "neurons" and not p.neurons:
        raise OnnxFaultError("hotflip `goal` neurons needs suspicious neurons; give `k` ≥ 1 or use `goal` loss",
                             parameter="goal")

    def build():
        tensors = list(dict.fromkeys(p.ascent_tensors().values()))
        outputs = [p.model.output_name, *tensors]
        module = p.differentiable(graph.expose_outputs(p.model.scores_only(), tensors))
        checked = space.model.session(p.device, list(dict.fromkeys(n.tensor for n in p.neurons)))
        return module, p.neuron_groups(outputs) if p.neurons else [], checked

    module, groups, session = p.once("hotflip", build)
    table = space.table.astype(np.float64)
    token = space.token.name
    current = seeds.copy()
    editable = space.editable(seeds)
    allowed = np.ones(len(table), bool)
    allowed[space.special_ids(seeds)] = False
    value, done = _evaluate(p, session, current, goal)
    flips = np.zeros(len(current), np.int64)
    active = ~done
    for _ in range(p.options.max_flips):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        embedded = table[current[token][rows]].astype(np.float32)
        side = {name: current[name][rows] for name in space.side}
        if goal == "loss":
            grad, _ = module.loss_gradient(embedded, p.y[rows], target=p.target,
                                           probabilities=p.scores_are_probabilities, side=side)
        else:
            grad, _ = module.neuron_ascent(embedded, groups, side)
        grad = grad.astype(np.float64)
        for i, row in enumerate(rows):  # one input at a time: (T, V) gains, not (n, T, V)
            gain = grad[i] @ table.T - (embedded[i] * grad[i]).sum(axis=-1, keepdims=True)  # Eq. 1
            gain[~editable[row]] = -np.inf
            gain[:, ~allowed] = -np.inf
            best = _best_flip(p, session, current, row, gain, goal, value[row])
            if best is None:
                active[row] = False
                continue
            position, replacement, improved = best
            current[token][row, position] = replacement
            editable[row, position] = False  # flipped once
            value[row] = improved
            flips[row] += 1
        active &= ~_evaluate(p, session, current, goal)[1]
    p.stats = flips.tolist()
    p.module = module
    return table[current[token]].astype(np.float32)


def _best_flip(p, session, current: np.ndarray, row: int, gain: np.ndarray, goal: str,
               value: float) -> tuple[int, int, float] | None:
    """The flip among the ``candidates`` of highest estimated gain that raises the objective most on the ONNX
    model, as (position, token, new objective); None when none raises it."""
    count = min(p.options.candidates, int(np.isfinite(gain).sum()))
    if not count:
        return None
    flat = np.argpartition(-gain.ravel(), count - 1)[:count]
    positions, tokens = np.unravel_index(flat, gain.shape)
    tried = np.repeat(current[row:row + 1], count)
    tried[p.space.token.name][np.arange(count), positions] = tokens
    values, _ = _evaluate(p, session, tried, goal, np.full(count, p.y[row]))
    best = int(np.argmax(values))
    return (int(positions[best]), int(tokens[best]), float(values[best])) if values[best] > value else None


def _evaluate(p, session, x: np.ndarray, goal: str, labels: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """From one run of the ONNX model on the records ``x`` (labelled ``labels``, default the seeds'): J per record
    (higher is better for the attack), and whether each is done: misclassified, or predicted as the target."""
    from ..loss import cross_entropy
    from .metrics import neuron_values

    labels = p.y if labels is None else labels
    outputs = session.run_named(x)
    scores = outputs[p.space.model.output_name]
    predictions = scores.argmax(-1)
    done = predictions != labels if p.target is None else predictions == p.target
    if goal == "neurons":
        return neuron_values(outputs, p.neurons, p.layers, p.granularity).mean(axis=1), done
    if p.target is None:
        return cross_entropy(scores, labels, p.scores_are_probabilities), done
    return -cross_entropy(scores, np.full(len(x), p.target), p.scores_are_probabilities), done


def summarize(flips: list) -> dict:
    """``flips``: per input, how many tokens hotflip substituted (mean, max, and the list)."""
    return {"flips": {"mean": float(np.mean(flips)) if flips else 0.0, "max": int(max(flips, default=0)),
                      "per_input": flips}}
