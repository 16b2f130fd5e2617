"""One SCL training step (Algorithm 1, lines 4-9) and what it needs: the model and the
optimiser built from a run's resolved settings.

`train_step` is the one place where a mini-batch turns into an update; the trainer
(scl/train.py) and `scl bench` both call it. It returns the loss and its terms as
tensors and reads nothing back to the host, so a caller decides when to synchronise.
"""

from __future__ import annotations

import torch

from scl.config import RunSettings, TrainSettings
from scl.device import autocast
from scl.models.scl_model import SCLConfig, SCLModel


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's batch order and augmentations (and of its memory refill):
    a function of (seed, epoch), so a resumed run replays what an uninterrupted one would do."""
    return seed * 1_000_003 + epoch


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(epoch_seed(seed, epoch))


def build_model(settings: RunSettings) -> SCLModel:
    """The SCL model of a run, initialised from its seed (on the CPU, float32, eager)."""
    t, ds = settings.train, settings.dataset
    torch.manual_seed(settings.seed)
    return SCLModel(
        SCLConfig(
            backbone=t.backbone, backbone_width=t.cnn_width, in_channels=ds.channels, num_classes=ds.num_classes,
            tasks=t.tasks, feature_dim=t.feature_dim, memory_size=t.memory_size, memory_init=t.memory_init,
            temperature=t.temperature, ema_momentum=t.ema_momentum,
            cross_cluster=t.cross_cluster, online_cd=t.online_cd, projection=t.projection, bn_splits=t.bn_splits,
        ),
        generator=torch.Generator().manual_seed(settings.seed),
    )


def build_optimizer(model: SCLModel, t: TrainSettings) -> torch.optim.SGD:
    """SGD over the query encoder and the classifiers; each parameter group carries an
    `lr_mult` (the classifiers f_phi may learn faster: classifier_lr_mult), see `set_lr`.
    Build it after the model is on its device (the implementation follows the device)."""
    head_ids = {id(p) for p in model.classifiers.parameters()}
    encoder = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": encoder, "lr_mult": 1.0}]
    if head_ids:
        groups.append({"params": list(model.classifiers.parameters()), "lr_mult": t.classifier_lr_mult})
    device = next(model.parameters()).device
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.sgd_momentum, weight_decay=t.weight_decay,
                           **optimizer_options(device))


def optimizer_options(device: torch.device) -> dict:
    """SGD's implementation: fused on CUDA (one kernel for the whole update instead of a few
    hundred; rounding may differ from the loop in the last bit), foreach on the CPU (the
    same arithmetic as the per-parameter loop, bit for bit, in fewer calls)."""
    return {"fused": True} if device.type == "cuda" else {"foreach": True}


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's learning rate, times each group's `lr_mult`."""
    for g in opt.param_groups:
        g["lr"] = lr * g["lr_mult"]


def train_step(
    model: SCLModel,
    opt: torch.optim.Optimizer,
    x_q: torch.Tensor,
    x_k: torch.Tensor,
    labels: dict[str, torch.Tensor],
    counts: torch.Tensor | None = None,
    weights: dict[str, torch.Tensor] | None = None,
    amp: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    clustering: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One update: forward under autocast (`amp`), backward (scaled by `scaler` for fp16,
    which skips steps with inf/nan gradients), optimiser step, momentum update of the key
    encoder, then the batch's keys into the memories.

    x_q, x_k: B x C x H x W augmented views (in the model's memory layout); labels: per
    clustered task the batch's pseudo-labels (B); counts: eq. 6 label-change counts of the
    batch (B) or None (no re-weighting); weights: per task class weights (C) or None;
    clustering: False during `cluster_warmup_epochs` (no pseudo-label used, SCLModel.training_step).
    Returns the loss (0-dim) and its terms, tensors on the batch's device.
    """
    with autocast(x_q.device, amp):
        loss, terms, keys = model.training_step(x_q, x_k, labels, counts, weights, clustering)
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    model.momentum_update()
    model.enqueue(keys, labels)
    return loss.detach(), {k: v.detach() for k, v in terms.items()}
