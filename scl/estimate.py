"""How long will this run take? Measured before training starts, from a few timed steps.

`estimate_run(trainer)` times `steps` training steps (after one untimed warm-up step) and
one evaluation pass over a slice of the data, on *copies* of the model and optimizer and
under a forked RNG, so the run itself is untouched: the same seed still gives the same
result with or without an estimate. Per epoch = steps_per_epoch x median step time + the
end-of-epoch inference over all N images (scaled from the slice); in all = per epoch x
the epochs left. It is a measurement on this machine now: on a shared CPU, a change of
load changes the real time in proportion.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch


def estimate_run(trainer, steps: int = 3, eval_images: int = 512) -> dict:
    """Seconds per step, per epoch, and for the epochs left, measured on copies (see module doc).
    Each timed step is the trainer's own (`scl.step.train_step`, same augmentation, layout and
    autocast); the evaluation is `scl.train.infer_all` on the first `eval_images` images."""
    from scl.device import grad_scaler, to_channels_last
    from scl.step import build_optimizer, train_step
    from scl.train import infer_all

    t, dev = trainer.t, trainer.device
    model = copy.deepcopy(trainer.model)
    model.train()
    opt = build_optimizer(model, t)
    scaler = grad_scaler(dev, trainer.amp)
    gen = torch.Generator().manual_seed(12345)
    n, b = trainer.n, t.batch_size
    pseudo = {k: torch.from_numpy(v).to(dev) for k, v in trainer.state.pseudo.items()}
    times = []
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for i in range(steps + 1):
            idx = torch.randint(0, n, (b,), generator=gen).to(dev)
            sync(dev)
            start = time.perf_counter()
            batch = trainer.images[idx]
            x_q = to_channels_last(trainer.augment(batch, gen), trainer.channels_last)
            x_k = to_channels_last(trainer.augment(batch, gen), trainer.channels_last)
            labels = {k: v[idx] for k, v in pseudo.items()}
            train_step(model, opt, x_q, x_k, labels, None, None, trainer.amp, scaler)
            sync(dev)
            if i:  # the first step pays one-off costs (allocations, kernel selection)
                times.append(time.perf_counter() - start)
        m = min(n, eval_images)
        sync(dev)
        start = time.perf_counter()
        infer_all(model, trainer.images[:m], trainer.eval_tf, t.eval_batch_size, trainer.amp, trainer.channels_last)
        sync(dev)
        eval_s = (time.perf_counter() - start) * n / m
    step_s = statistics.median(times)
    epoch_s = trainer.steps_per_epoch * step_s + eval_s
    left = t.epochs - trainer.epoch
    return {"step_s": step_s, "steps_per_epoch": trainer.steps_per_epoch, "eval_s": eval_s, "epoch_s": epoch_s,
            "epochs_left": left, "total_s": epoch_s * left, "timed_steps": steps}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe(est: dict) -> str:
    return (f"estimated {_duration(est['epoch_s'])} per epoch ({est['steps_per_epoch']} steps of "
            f"{est['step_s']:.2f} s + {est['eval_s']:.1f} s evaluation), {_duration(est['total_s'])} for the "
            f"{est['epochs_left']} epochs to run (from {est['timed_steps']} timed steps on this machine now)")


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.1f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
