"""Precomputed learning-rate schedules (scl/schedules.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scl.schedules import lr_schedule


@pytest.mark.parametrize("epochs,steps", [(200, 3), (10, 7), (1, 1), (3, 1)])
def test_cosine_length_start_end_monotone(epochs, steps):
    lrs = lr_schedule(0.03, epochs, steps, "cosine")
    total = epochs * steps
    assert lrs.shape == (total,)
    assert lrs[0] == pytest.approx(0.03, rel=1e-12)
    assert np.all(np.diff(lrs) <= 1e-15)  # non-increasing
    assert np.all(lrs > 0)
    # the last step is one step short of the cosine's zero
    assert lrs[-1] == pytest.approx(0.5 * 0.03 * (1 + math.cos(math.pi * (total - 1) / total)), rel=1e-9)
    if total >= 100:
        assert lrs[-1] < 1e-3 * 0.03


def test_cosine_matches_formula():
    base, epochs, steps = 0.1, 5, 4
    lrs = lr_schedule(base, epochs, steps)
    T = epochs * steps
    for t in range(T):
        assert lrs[t] == pytest.approx(0.5 * base * (1 + math.cos(math.pi * t / T)), rel=1e-12)
    assert lrs[T // 2] == pytest.approx(base / 2, rel=1e-12)


def test_warmup_ramp_then_cosine():
    base, epochs, steps, warm = 0.2, 10, 5, 2
    lrs = lr_schedule(base, epochs, steps, "cosine", warmup_epochs=warm)
    W = warm * steps
    assert lrs.shape == (epochs * steps,)
    ramp = lrs[:W]
    assert ramp[0] == pytest.approx(base / W) and ramp[-1] == pytest.approx(base)
    np.testing.assert_allclose(np.diff(ramp), (base - base / W) / (W - 1), rtol=1e-9)  # linear
    assert np.all(np.diff(ramp) > 0)
    rest = lrs[W:]
    assert rest[0] == pytest.approx(base)
    assert np.all(np.diff(rest) < 0)
    assert lrs.max() == pytest.approx(base)


def test_warmup_longer_than_training_is_clipped():
    lrs = lr_schedule(0.1, 2, 3, "cosine", warmup_epochs=5)
    assert lrs.shape == (6,)
    assert np.all(np.diff(lrs) > 0) and lrs[-1] == pytest.approx(0.1)


def test_constant_schedule():
    lrs = lr_schedule(0.05, 4, 3, "constant")
    assert lrs.shape == (12,) and np.all(lrs == 0.05)
    warm = lr_schedule(0.05, 4, 3, "constant", warmup_epochs=1)
    assert np.all(warm[3:] == 0.05) and warm[0] == pytest.approx(0.05 / 3)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown lr schedule"):
        lr_schedule(0.1, 2, 2, "step")
