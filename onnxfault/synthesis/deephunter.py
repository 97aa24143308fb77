"""DeepHunter (Xie, Ma, Juefei-Xu, Xue, Chen, Liu, Zhao, Li, Yin, See — ISSTA 2019): coverage-guided fuzzing with
metamorphic mutations, after the authors' code (bitbucket.org/xiaofeixie/deephunter), with the settings of
DeepSensor §5.3: guided by SNAC, neuron boundaries from 1,000 examples.

Each seed starts a queue. An iteration picks a queued input (``selection`` prob: walking the queue, an input is
taken with probability 0.8, 0.6, 0.4, then 0.2 after 0, 1, 2, 3 or more picks, as the code applies Eq. 3 with
γ = 5 and p_min = 0.3; uniform: any, equally likely), makes ``mutants`` mutants of it and runs them. A mutant
predicted as another class than its seed's label is a test error (a failed test: kept aside, never queued); any
other joins the queue when it reaches a coverage section that no input of the chunk reached before.

A mutant (Algorithm 2) applies one transformation, its parameter drawn from the authors' list: affine —
translation (−3 … 2 pixels), scaling (0.7 … 1.1), shearing (−0.6 … 0.5), rotation (−50 … 49°); pixel value —
contrast (×0.5 … 1.2), brightness (−20 … 19 of 255), blur (box 3/4/5, Gaussian 3/5/7, median 3/5), noise
(Gaussian, salt and pepper, multiplicative), pixel change (1 … 9 elements set at random). At most one affine
transformation happens in a seed's lineage: it moves the reference image too, and after it only pixel-value ones
are drawn. A pixel-value mutant is kept when it changes fewer than ``l0_share`` (α) of the elements from the
reference, or none by ``linf_share`` (β) of the value range or more (Eq. 1; after an affine one, the changes made before it count too:
Eq. 2); else it is drawn again, ``tries`` times at most. The grouping is the paper's (contrast, brightness and blur
change pixel values; the code lists them as affine, which exempts them from the check); the code's bilateral blur
is left out. Values are those of the valid range [lo, hi] (the code's 0 … 255, scaled: lo is black).

Coverage is DeepHunter's SNAC by sections: a neuron (a channel's mean, as in ``localize`` and ``coverage``) above
its upper boundary falls in section ⌊(v − high) / (w · (high − low))⌋ (w: ``section_width``; a width of 0.05
where the range is one point), those past ``sections`` in one more; ``nbc`` adds the same sections below the
lower boundary. The boundaries are each neuron's least and greatest value on the first ``reference_samples``
samples of the data, found once before the seeds run. The table of sections reached is the chunk's
(``--batch-size`` seeds, its seeds' own sections first): chunks are the same here and on Ray. Each seed keeps one
input: its first test error, else the last input its queue took, else itself. Inputs that are not images
((N, C, H, W), (N, H, W, C) or (N, H, W)) get the transformations that need no neighbours: contrast, brightness,
noise and pixel change.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import Method, iterations_option, option
from .fuzzing import spatial_axes

CRITERIA = ("snac", "nbc")
SELECTIONS = ("prob", "uniform")
AFFINE = {"translation": tuple(range(-3, 3)), "scale": tuple(i / 10 for i in range(7, 12)),
          "shear": tuple(i / 10 for i in range(-6, 6)), "rotation": tuple(range(-50, 50))}
PIXEL = {"contrast": tuple(i / 10 for i in range(5, 13)), "brightness": tuple(range(-20, 20)),
         "blur": tuple(range(1, 9)), "noise": (1, 2, 3), "pixel_change": tuple(range(1, 10))}
LOCAL = ("contrast", "brightness", "noise", "pixel_change")  # need no image: each element on its own
POINT_WIDTH = 0.05  # the section width of a neuron whose range on the reference is one point (the authors')


@dataclass(frozen=True)
class Boundaries:
    """Each neuron's least (``low``) and greatest (``high``) value on the first ``samples`` samples of the data."""

    low: np.ndarray
    high: np.ndarray
    samples: int


@dataclass(eq=False)
class Item:
    """An input of a seed's lineage: the input, its reference image (the seed, moved by the lineage's affine
    transformation once there was one), whether there was one, the L0 and L∞ change from the seed made before it
    (Eq. 2), and how often the queue picked it."""

    x: np.ndarray
    reference: np.ndarray
    affine: bool = False
    l0: int = 0
    linf: float = 0.0
    picked: int = 0


# ---- the transformations (one sample; ``axes``: its height and width axes, None when it is no image) ----------
def transform(x: np.ndarray, name: str, param, axes: tuple[int, int] | None, lo: float, hi: float,
              rng: np.random.Generator) -> np.ndarray:
    """``x`` after the transformation ``name`` with ``param`` (the authors' values), within [lo, hi]."""
    span = hi - lo
    if name == "contrast":
        out = lo + param * (x.astype(np.float64) - lo)
    elif name == "brightness":
        out = x + param / 255 * span
    elif name == "pixel_change":
        out = x.copy().reshape(-1)
        out[rng.integers(0, out.size, param)] = lo + rng.integers(0, 256, param) / 255 * span
        out = out.reshape(x.shape)
    elif name == "noise":
        out = _noise(x, param, lo, hi, rng)
    elif name == "blur":
        out = _blur(x, param, axes)
    else:
        height, width = x.shape[axes[0]], x.shape[axes[1]]
        out = _warp(x, affine_inverse(name, param, height, width), axes, lo)
    return np.clip(out, lo, hi).astype(x.dtype)


def _noise(x: np.ndarray, kind: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """1: Gaussian (variance 0.1 of 255²), 2: salt and pepper (0.4 % of the elements, half each), 3: multiplicative
    (v + (v − lo)·n, n standard normal)."""
    span = hi - lo
    if kind == 1:
        return x + rng.normal(0.0, 0.1 ** 0.5, x.shape) / 255 * span
    if kind == 3:
        return x + (x - lo) * rng.standard_normal(x.shape)
    out = x.copy().reshape(-1)
    count = int(np.ceil(0.004 * x.size * 0.5))
    out[rng.integers(0, x.size, count)] = hi
    out[rng.integers(0, x.size, count)] = lo
    return out.reshape(x.shape)


def _blur(x: np.ndarray, kind: int, axes: tuple[int, int]) -> np.ndarray:
    """1–3: box 3, 4, 5; 4–6: Gaussian 3, 5, 7 (OpenCV's σ for the size); 7–8: median 3, 5; edges mirrored."""
    from scipy import ndimage

    def over_image(value):
        out = [0] * x.ndim if isinstance(value, float) else [1] * x.ndim
        out[axes[0]] = out[axes[1]] = value
        return out

    if kind <= 3:
        return ndimage.uniform_filter(x, size=over_image(kind + 2), mode="mirror")
    if kind <= 6:
        size = (3, 5, 7)[kind - 4]
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
        return ndimage.gaussian_filter(x, over_image(sigma), mode="mirror", truncate=(size - 1) / 2 / sigma)
    return ndimage.median_filter(x, size=over_image((3, 5)[kind - 7]), mode="mirror")


def affine_inverse(name: str, param, height: int, width: int) -> np.ndarray:
    """3×3: where, in (x, y) = (column, row) coordinates, each output position takes its value from, for the
    authors' OpenCV transformations (translation by ``param`` pixels in both axes; scaling by ``param`` and
    shearing x by −``param``·y, both about the centre for scaling and the origin for shearing; rotation by
    ``param`` degrees counter-clockwise about the centre)."""
    cx, cy = width / 2, height / 2
    if name == "translation":
        forward = np.array([[1, 0, param], [0, 1, param], [0, 0, 1]], np.float64)
    elif name == "scale":
        forward = np.array([[param, 0, (1 - param) * cx], [0, param, (1 - param) * cy], [0, 0, 1]], np.float64)
    elif name == "shear":
        forward = np.array([[1, -param, 0], [0, 1, 0], [0, 0, 1]], np.float64)
    else:
        a, b = np.cos(np.radians(param)), np.sin(np.radians(param))
        forward = np.array([[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy], [0, 0, 1]])
    return np.linalg.inv(forward)


def _warp(x: np.ndarray, inverse: np.ndarray, axes: tuple[int, int], fill: float) -> np.ndarray:
    """``x`` resampled (bilinear) at the positions ``inverse`` gives, ``fill`` outside."""
    from scipy import ndimage

    rows, cols = axes
    matrix, offset = np.eye(x.ndim), np.zeros(x.ndim)
    matrix[rows, rows], matrix[rows, cols], offset[rows] = inverse[1, 1], inverse[1, 0], inverse[1, 2]
    matrix[cols, rows], matrix[cols, cols], offset[cols] = inverse[0, 1], inverse[0, 0], inverse[0, 2]
    return ndimage.affine_transform(x.astype(np.float64), matrix, offset, order=1, mode="constant", cval=fill)


# ---- Algorithm 2: one mutant ------------------------------------------------------------------------------
def mutate(item: Item, names: tuple[str, ...], axes, lo: float, hi: float, alpha: float, beta: float,
           tries: int, rng: np.random.Generator) -> Item | None:
    """A mutant of ``item``, or None when ``tries`` draws all broke Eq. 1 / Eq. 2."""
    most_changed = int(alpha * item.x.size)
    largest_change = beta * (hi - lo)
    for _ in range(tries):
        pool = [n for n in names if n in PIXEL] if item.affine else list(names)
        name = pool[int(rng.integers(len(pool)))]
        params = AFFINE.get(name) or PIXEL[name]
        param = params[int(rng.integers(len(params)))]
        new = transform(item.x, name, param, axes, lo, hi, rng)
        if name in AFFINE:  # moves the reference too; unchecked, and the last affine one of the lineage
            return Item(new, transform(item.reference, name, param, axes, lo, hi, rng), True, item.l0, item.linf)
        change = np.abs(new.astype(np.float64) - item.reference)
        l0, linf = int(np.count_nonzero(change)), float(change.max(initial=0.0))
        if item.affine:
            l0, linf = item.l0 + l0, max(item.linf, linf)
        if l0 < most_changed or linf < largest_change:
            return Item(new, item.reference, item.affine, *((item.l0, item.linf) if item.affine else (l0, linf)))
    return None


def selection_probability(picked: int) -> float:
    """The chance that the queue takes an input picked ``picked`` times before: 0.8, lowered to 0.8 − f/5 after
    its f-th pick while it is above 0.3 and f < 5 · (1 − 0.3) (the authors' update)."""
    chance = 0.8
    for f in range(1, picked + 1):
        if chance > 0.3 and f < 5 * (1 - 0.3):
            chance = 0.8 - f / 5
    return chance


def pick(queue: list[Item], position: int, selection: str, rng: np.random.Generator) -> tuple[Item, int]:
    """The next input to mutate and the queue position to go on from."""
    if selection == "uniform":
        return queue[int(rng.integers(len(queue)))], position
    while True:
        position %= len(queue)
        item = queue[position]
        position += 1
        if rng.random() < selection_probability(item.picked):
            item.picked += 1
            return item, position


# ---- coverage sections ----------------------------------------------------------------------------------
def sections_reached(values: np.ndarray, bounds: Boundaries, criterion: str, sections: int,
                     width: float) -> list[np.ndarray]:
    """Per row of ``values`` (N, neurons) the flat indices of the sections it reaches: neuron n's upper sections
    are n·(sections + 1) … + sections; with ``nbc`` its lower ones follow all the upper ones."""
    low, high = bounds.low, bounds.high
    neurons, per = values.shape[1], sections + 1
    unit = (high - low) * width
    unit = np.where(unit > 0, unit, POINT_WIDTH)
    known = low <= high
    sides = [(values > high) & known, np.where(values > high, values - high, 0.0)]
    found = [_indices(sides[0], sides[1] / unit, sections, 0, per)]
    if criterion == "nbc":
        below = (values < low) & known
        found.append(_indices(below, np.where(below, low - values, 0.0) / unit, sections, neurons * per, per))
    rows = np.concatenate([f[0] for f in found])
    cols = np.concatenate([f[1] for f in found])
    return [cols[rows == r] for r in range(len(values))]


def _indices(mask: np.ndarray, distance: np.ndarray, sections: int, start: int, per: int):
    rows, neurons = np.nonzero(mask)
    section = np.minimum(np.floor(distance[rows, neurons]), sections).astype(np.int64)
    return rows, start + neurons * per + section


def section_count(bounds: Boundaries, criterion: str, sections: int) -> int:
    """How many sections there are to reach."""
    return len(bounds.low) * (sections + 1) * (2 if criterion == "nbc" else 1)


class DeepHunter(Method):
    name = "deephunter"
    summary = "DeepHunter baseline: metamorphic mutations (affine and pixel-value), queued while SNAC grows"
    paper = "Xie, Ma, Juefei-Xu, Xue, Chen, Liu, Zhao, Li, Yin, See: DeepHunter: a Coverage-Guided Fuzz Testing " \
            "Framework for Deep Neural Networks (ISSTA 2019)"
    uses_neurons = False
    uses_torch = False
    metrics = ((("test_errors",), "test errors (mutants predicted as another class)", "max", False),
               (("error_categories",), "error categories (seed, wrong class)", "max", False),
               (("coverage_after",), "coverage sections reached (DeepHunter's)", "max", True))

    @dataclass(frozen=True)
    class Options:
        criterion: str = option("snac", "coverage that queues a mutant: snac or nbc", choices=CRITERIA)
        iterations: int = iterations_option(20)
        mutants: int = option(20, "mutants made per iteration (batch_num)", minimum=1)
        tries: int = option(50, "draws per mutant before it is given up (try_num)", minimum=1)
        selection: str = option("prob", "how the queue picks: prob (fewer picks, likelier) or uniform",
                                choices=SELECTIONS)
        l0_share: float = option(0.02, "Eq. 1's α: a pixel-value mutant may change fewer than this share of the "
                                 "elements …", above=0, maximum=1)
        linf_share: float = option(0.2, "… (β) or change none by this share of the value range or more", above=0,
                                   maximum=1)
        sections: int = option(10, "coverage sections beyond a boundary (one more holds the values past them)",
                               minimum=1)
        section_width: float = option(0.001, "a section's width, as a share of the neuron's range", above=0)
        reference_samples: int = option(1000, "the boundaries come from this many samples of the data", minimum=1)

    def prepare(self, model, data, options, device: str) -> Boundaries:
        from ..coverage import RangeCounter

        counter = RangeCounter(tuple(model.select_layers("auto")), "channel", device, False, None)
        reference = data if data.read_once else data.shard(0, min(options.reference_samples, len(data)))
        low, high = counter.count(counter.prepare(model, reference), reference)
        return Boundaries(low, high, len(reference))

    def run(self, p):
        from ..coverage import values_session

        o, bounds = p.options, p.prepared
        session, columns = p.once("deephunter", lambda: values_session(
            p.model, p.model.select_layers("auto"), "channel", p.device))
        axes = spatial_axes(p.x.shape)
        sample_axes = None if axes is None else (axes[0] - 1, axes[1] - 1)
        names = tuple(n for n in (*AFFINE, *PIXEL) if axes is not None or n in LOCAL)
        lo, hi = (float(v) for v in p.clip)
        reached = np.zeros(section_count(bounds, o.criterion, o.sections), np.bool_)

        def predict(x: np.ndarray, row: int | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
            side = p.side if row is None else {k: np.repeat(v[row:row + 1], len(x), axis=0) for k, v in p.side.items()}
            scores, values = session.run(x, side)
            return scores.argmax(-1), sections_reached(values.reshape(len(x), -1)[:, columns], bounds, o.criterion,
                                                       o.sections, o.section_width)

        for found in predict(p.x)[1]:  # the dry run: the chunk's seeds reach their sections first
            reached[found] = True
        stats = {"errors": 0, "categories": 0, "seeds_with_errors": 0, "mutations": 0, "given_up": 0, "queued": 0}
        out = p.x.copy()
        for i in range(len(p.x)):
            rng = np.random.default_rng([p.seed, p.first + i])
            label = int(p.y[i])
            queue, position, first_error, last_queued, wrong = [Item(p.x[i], p.x[i])], 0, None, None, set()
            for _ in range(o.iterations):
                item, position = pick(queue, position, o.selection, rng)
                made = [mutate(item, names, sample_axes, lo, hi, o.l0_share, o.linf_share, o.tries, rng)
                        for _ in range(o.mutants)]
                mutants = [m for m in made if m is not None]
                stats["given_up"] += len(made) - len(mutants)
                if not mutants:
                    continue
                stats["mutations"] += len(mutants)
                predicted, found = predict(np.stack([m.x for m in mutants]), i)
                for mutant, label_now, sections in zip(mutants, predicted, found):
                    if int(label_now) != label:
                        stats["errors"] += 1
                        wrong.add(int(label_now))
                        first_error = mutant.x if first_error is None else first_error
                    elif not reached[sections].all():
                        reached[sections] = True
                        queue.append(mutant)
                        last_queued = mutant.x
                        stats["queued"] += 1
            out[i] = first_error if first_error is not None else last_queued if last_queued is not None else p.x[i]
            stats["categories"] += len(wrong)
            stats["seeds_with_errors"] += bool(wrong)
        p.stats = {**stats, "reached": int(np.count_nonzero(reached)), "sections": len(reached)}
        return out

    def merge(self, parts: list):
        keys = ("errors", "categories", "seeds_with_errors", "mutations", "given_up", "queued")
        return {**{key: sum(part[key] for part in parts) for key in keys},
                "coverage_after": [part["reached"] / part["sections"] if part["sections"] else 0.0 for part in parts]}

    def summarize(self, stats, problem) -> dict:
        seeds = max(len(problem.x), 1)
        return {"test_errors": stats["errors"], "error_categories": stats["categories"],
                "categories_per_seed": stats["categories"] / seeds, "seeds_with_errors": stats["seeds_with_errors"],
                "mutations": stats["mutations"], "mutants_given_up": stats["given_up"], "queued": stats["queued"],
                "coverage_after": float(np.mean(stats["coverage_after"])) if stats["coverage_after"] else 0.0,
                "boundary_samples": problem.prepared.samples}

    def summary_lines(self, report: dict) -> list[str]:
        criterion = report.get("params", {}).get("criterion", "snac").upper()
        return [f"{report['test_errors']} test errors in {report['mutations']} mutants "
                f"({report['error_categories']} error categories, {report['seeds_with_errors']} seeds); "
                f"{criterion} sections reached {100 * report['coverage_after']:.2f} % (mean over chunks; "
                f"boundaries from {report['boundary_samples']} samples)"]
