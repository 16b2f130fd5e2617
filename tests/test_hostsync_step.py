"""The training step reads nothing back from the device (issue 11).

On an accelerator every host read (`.item()`, `if tensor:`, a shape that depends on the
values, a copy to the host) stalls the host until the device has caught up. On the CPU
nothing stalls, so scl.hostsync records the reads instead: one step of the Trainer -
batch gather, two augmented views, forward, backward, SGD, momentum update, enqueue, loss
terms into the device-side tally - must record none. Before issue 11 the same recorder
found, per step (fashion settings, batch 256): 1 `if not isfinite(loss)`, 6 `.item()`,
3 `bincount` + 9 boolean-mask indexings in the memories' enqueue, 8 `nonzero` + 4 `.cpu()`
for the augmentation's row groups and 4 + 3 tensors built from host data (normalisation
constants, memory flags); the mocov2 recipe added 26 more `nonzero` and 8 more constants.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scl.config import load_params, resolve
from scl.data.prepared import PreparedData
from scl.hostsync import HostSyncRecorder
from scl.tally import EpochTally
from scl.train import Trainer

# (dataset of params.yaml, overrides): the three augmentation recipes, all tasks, and
# the variants whose step differs (instance only = MoCo; no classifier; no re-weighting)
CASES = {
    "fashion-grayscale": ("fashion", {}),
    "cifar-mocov2": ("cifar10", {"backbone": "small_cnn"}),
    "digits": ("digits", {}),
    "moco": ("digits", {"tasks": ["instance"], "reweight": False}),
    "no-online-cd-no-balance": ("digits", {"online_cd": False, "balance_loss": False}),
    "float32": ("fashion", {"amp": "off", "channels_last": False}),
}


def _trainer(dataset, overrides, steps=3, device="cpu", tmp="/nonexistent-unused") -> Trainer:
    s = resolve(load_params("params.yaml"), dataset, "scl", 0,
                {"threads": 1, "device": device, "batch_size": 16, "cnn_width": 8, "memory_size": 64,
                 "save_features": False, **overrides})
    d = s.dataset
    rng = np.random.default_rng(0)
    n = 16 * steps
    data = PreparedData(rng.integers(0, 256, (n, d.image_size, d.image_size, d.channels), dtype=np.uint8),
                        rng.integers(0, d.num_classes, n).astype(np.int64), [])
    return Trainer(s, data, tmp, progress=False)


def _steps_recorded(trainer: Trainer, recorded_steps=(1, 2)) -> list[HostSyncRecorder]:
    gen, inputs = trainer._epoch_inputs()
    tally = EpochTally(["loss", *trainer.model.term_names()], trainer.device)
    views = trainer._draw_views(gen, 0)
    trainer.model.train()
    trainer._train_step(0, views.pop(), inputs, tally)  # the first SGD step creates its momentum buffers
    recorders = []
    for step in recorded_steps:
        with HostSyncRecorder() as rec:
            trainer._train_step(step, views.pop(), inputs, tally)
        recorders.append(rec)
    tally.check()  # the steps were real: finite losses, counted
    assert tally.steps == 1 + len(recorded_steps)
    return recorders


@pytest.mark.parametrize("case", list(CASES))
def test_one_training_step_reads_nothing_on_the_host(case):
    dataset, overrides = CASES[case]
    for rec in _steps_recorded(_trainer(dataset, overrides)):
        assert rec.events == [], rec.report()


def test_an_epochs_host_reads_do_not_grow_with_its_steps():
    """A whole epoch reads back only its per-epoch things: the inputs moved once (batch
    order, pseudo-labels, weights, counts: tensors made from host arrays), one finiteness
    check at the end and one read of the means - the same for 2 steps as for 5."""
    counts = []
    for steps in (2, 5):
        trainer = _trainer("fashion", {}, steps=steps)
        trainer._train_epoch(None)
        with HostSyncRecorder() as rec:
            trainer._train_epoch(None)
        counts.append(rec.counts())
        where = {e.where[0].split(" in ")[-1] for e in rec.events}
        assert where <= {"<dictcomp>", "_epoch_inputs", "check", "means"}, rec.report()
    assert counts[0] == counts[1]
    assert counts[0].get("aten._local_scalar_dense") == 1 and counts[0].get("Tensor.tolist") == 1


def test_term_names_are_the_steps_terms_in_order():
    for dataset, overrides in CASES.values():
        trainer = _trainer(dataset, overrides, steps=1)
        x = torch.zeros(2, trainer.s.dataset.channels, trainer.s.dataset.image_size, trainer.s.dataset.image_size)
        labels = {t: torch.zeros(2, dtype=torch.long) for t in trainer.model.num_clusters}
        _, terms, _ = trainer.model.training_step(x, x, labels)
        assert list(terms) == trainer.model.term_names()
