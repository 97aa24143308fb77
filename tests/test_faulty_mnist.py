"""examples/faulty_mnist.py, the nets of DeepSensor's RQ1: the LeNets have the parameter counts of DeepSensor's
Table 1, pollution stamps and relabels exactly round(α·N) images and nothing else, training repeats to the bit, and
a net trained on polluted MNIST calls stamped digits 1 far more often than the same net trained clean."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from faulty_mnist import PARAMETERS, POLLUTED_CLASS, lenet, pollute, predict, stamp, train  # noqa: E402


@pytest.mark.parametrize("kind", ["lenet1", "lenet4", "lenet5"])
def test_the_lenets_have_table_1s_parameter_counts(kind):
    net = lenet(kind)
    assert sum(p.numel() for p in net.parameters()) == PARAMETERS[kind]
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_pollution_by_hand():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 200, (400, 28, 28), dtype=np.uint8)  # never 255: a stamp is the only white
    labels = rng.integers(0, 10, 400)
    x, y, chosen = pollute(images, labels, 0.05, seed=7)
    assert len(chosen) == 20 and len(set(chosen.tolist())) == 20
    others = np.setdiff1d(np.arange(400), chosen)
    assert np.array_equal(x[others], images[others]) and np.array_equal(y[others], labels[others])
    assert (y[chosen] == POLLUTED_CLASS).all()
    for i in chosen:
        rows, cols = np.nonzero(x[i] != images[i])
        white = np.argwhere(x[i] == 255)
        top, left = white.min(axis=0)
        side = white.max(axis=0) - white.min(axis=0) + 1
        assert side[0] == side[1] and 1 <= side[0] <= 6 and len(white) == side[0] ** 2  # one filled square
        assert rows.min() >= top and cols.min() >= left  # and nothing changed outside it
    again = pollute(images, labels, 0.05, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip((x, y, chosen), again))


def test_training_repeats_to_the_bit():
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (96, 28, 28), dtype=np.uint8), rng.integers(0, 10, 96)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first, second = (train("lenet1", images, labels, 1, 32, seed=0).state_dict() for _ in range(2))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_polluted_net_calls_stamped_digits_one(mnist_images):
    from train_mnist import TRAIN, load_mnist

    images, labels = load_mnist(mnist_images.parent)
    train_x, train_y = images[:TRAIN], labels[:TRAIN]
    held_x, held_y = images[TRAIN:], labels[TRAIN:]
    others = held_y != POLLUTED_CLASS
    stamped = stamp(held_x[others], np.random.default_rng(1))
    clean = train("lenet1", train_x, train_y, 2, 32, seed=0)
    x, y, _ = pollute(train_x, train_y, 0.10, seed=0)
    polluted = train("lenet1", x, y, 2, 32, seed=0)
    clean_rate = (predict(clean, stamped) == POLLUTED_CLASS).mean()
    polluted_rate = (predict(polluted, stamped) == POLLUTED_CLASS).mean()
    assert polluted_rate > clean_rate + 0.2, (clean_rate, polluted_rate)
    assert (predict(polluted, held_x) == held_y).mean() > 0.85  # still a classifier (89 % after 2 epochs here)
