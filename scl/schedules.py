"""Precomputed learning-rate schedules (one value per optimiser step, as DINO does)."""

from __future__ import annotations

import numpy as np


def lr_schedule(base_lr: float, epochs: int, steps_per_epoch: int, kind: str = "cosine", warmup_epochs: int = 0) -> np.ndarray:
    total = epochs * steps_per_epoch
    warm = min(warmup_epochs * steps_per_epoch, total)
    steps = np.arange(total - warm)
    if kind == "cosine":
        main = 0.5 * base_lr * (1 + np.cos(np.pi * steps / max(total - warm, 1)))
    elif kind == "constant":
        main = np.full(total - warm, base_lr)
    else:
        raise ValueError(f"unknown lr schedule {kind!r}; choose 'cosine' or 'constant'")
    ramp = np.linspace(base_lr / max(warm, 1), base_lr, warm) if warm else np.empty(0)
    return np.concatenate([ramp, main])
