"""The SCL model as one `nn.Module` (spec sections 2-8).

    query encoder    f_theta:  backbone -> one linear projection per task -> L2 norm
                               (`projection: mlp`, ours: a 2-layer MLP per task, MoCo v2's)
    momentum encoder f_theta~: a copy, updated as theta~ <- m theta~ + (1 - m) theta
    classifiers      f_phi:    one linear C_t-way layer per clustered task (online CD)
    memories:        a SemanticMemory per clustered task, an InstanceQueue for "instance"

Tasks: "target" (C clusters), "under" (ceil(C/2) clusters), "instance" (MoCo queue).

Mixed precision: the caller may run `training_step` / `infer` under `torch.autocast`; only
the backbones then run in the lower precision. Projections, normalisation, memories and
every loss are computed in float32 (`_float32` switches autocast off for them), so the
memory keys stay float32 and eq. 1-4 see float32 similarities.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scl.losses import (
    concept_discrimination_loss,
    contrastive_loss,
    memory_soft_assignment,
    negative_mask,
    reweighted_mean,
)
from scl.memory import InstanceQueue, SemanticMemory
from scl.models.backbones import build_backbone
from scl.models.split_batchnorm import key_order

TASKS = ("target", "under", "instance")
CLUSTERED_TASKS = ("target", "under")


def task_clusters(task: str, num_classes: int) -> int:
    """Number of clusters of a clustered task: C, or C/2 rounded up (spec section 2)."""
    return num_classes if task == "target" else math.ceil(num_classes / 2)


@dataclass
class SCLConfig:
    backbone: str
    in_channels: int
    num_classes: int
    backbone_width: int = 64
    tasks: tuple[str, ...] = TASKS
    feature_dim: int = 128
    memory_size: int = 4096
    memory_init: str = "random"
    temperature: float = 0.1
    ema_momentum: float = 0.9
    cross_cluster: bool = True
    online_cd: bool = True
    projection: str = "linear"  # linear (spec section 2) | mlp (ours, issue 10)
    bn_splits: int = 1  # 1: BN over the whole batch | S > 1 (ours, issue 10): MoCo's shuffle BN on one device


PROJECTIONS = ("linear", "mlp")


def projection_head(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """A task's feature space on the backbone: the paper's single linear layer (spec section 2),
    or MoCo v2's MLP (Linear - ReLU - Linear, hidden width = the backbone's), which keeps the
    backbone features free of what only the contrastive task needs (Chen et al. 2020)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))
    raise ValueError(f"unknown projection {kind!r}; choose one of {', '.join(PROJECTIONS)}")


def _float32(x: torch.Tensor):
    """A region where autocast is off (float32 math even inside an autocast block)."""
    if not torch.amp.is_autocast_available(x.device.type):  # e.g. "meta" (FLOP counting)
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, enabled=False)


class Encoder(nn.Module):
    """Backbone + one linear projection per task (each task has its own feature space)."""

    def __init__(self, backbone: nn.Module, tasks, feature_dim: int, projection: str = "linear"):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict({t: projection_head(projection, backbone.out_dim, feature_dim) for t in tasks})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = self.backbone(x)  # B x D (bf16/fp16 under autocast)
        with _float32(x):
            if h.dtype in (torch.float16, torch.bfloat16):
                h = h.float()
            return h, {t: F.normalize(head(h), dim=1) for t, head in self.heads.items()}  # B x d each


class SCLModel(nn.Module):
    def __init__(self, cfg: SCLConfig, generator: torch.Generator | None = None):
        super().__init__()
        if not cfg.tasks or any(t not in TASKS for t in cfg.tasks):
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {cfg.tasks}")
        self.cfg = cfg
        self.tasks = tuple(t for t in TASKS if t in cfg.tasks)  # canonical order
        self.clustered = tuple(t for t in self.tasks if t in CLUSTERED_TASKS)
        backbone = build_backbone(cfg.backbone, cfg.in_channels, cfg.backbone_width, cfg.bn_splits)
        self.encoder_q = Encoder(backbone, self.tasks, cfg.feature_dim, cfg.projection)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)  # updated by momentum only
        self.num_clusters = {t: task_clusters(t, cfg.num_classes) for t in self.clustered}
        self.classifiers = nn.ModuleDict()
        if cfg.online_cd:
            self.classifiers.update({t: nn.Linear(cfg.feature_dim, c) for t, c in self.num_clusters.items()})
        self.memories = nn.ModuleDict()
        for t, c in self.num_clusters.items():
            bank = cfg.memory_size // max(c - 1, 1)  # K / (C - 1) keys per bank (spec section 3)
            self.memories[t] = SemanticMemory(c, bank, cfg.feature_dim, cfg.memory_init, generator)
        if "instance" in self.tasks:
            self.memories["instance"] = InstanceQueue(cfg.memory_size, cfg.feature_dim, cfg.memory_init, generator)

    # ----------------------------------------------------------------- training step
    def training_step(
        self,
        x_q: torch.Tensor,
        x_k: torch.Tensor,
        pseudo_labels: dict[str, torch.Tensor],
        change_counts: torch.Tensor | None = None,
        class_weights: dict[str, torch.Tensor] | None = None,
        clustering: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Losses of one mini-batch (Algorithm 1). Returns (total loss, loss terms, keys).

        Keys are returned so the caller can enqueue them *after* the optimiser step.
        clustering=False (ours: the `cluster_warmup_epochs`, issue 10): no pseudo-label is
        used, so every task is plain instance discrimination (every bank supplies negatives,
        as without cross-cluster ID) and the concept-discrimination terms are 0 (no gradient
        reaches the classifiers).
        """
        _, q = self.encoder_q(x_q)
        with torch.no_grad():
            order = key_order(x_k.shape[0], self.cfg.bn_splits, x_k.device)  # shuffle BN (bn_splits > 1)
            if order is None:
                _, k = self.encoder_k(x_k)
            else:  # keys computed in another grouping than the queries, then put back in batch order
                _, k = self.encoder_k(x_k[order])
                restore = torch.argsort(order)
                k = {t: v[restore] for t, v in k.items()}
        with _float32(x_q):  # the losses in float32, also under autocast
            return self._losses(q, k, pseudo_labels, change_counts, class_weights, clustering)

    def term_names(self) -> list[str]:
        """The names of the loss terms `training_step` returns, in its order."""
        return [name for t in self.tasks for name in (f"mi_{t}", f"cd_{t}") if name[:2] == "mi" or t in self.classifiers]

    def _losses(self, q, k, pseudo_labels, change_counts, class_weights, clustering=True):
        tau = self.cfg.temperature
        terms: dict[str, torch.Tensor] = {}
        for t in self.tasks:
            mem_keys, slot_bank, slot_valid = self.memories[t].flat()
            if t == "instance":
                usable = slot_valid[None, :].expand(len(q[t]), -1)
            else:
                usable = negative_mask(pseudo_labels[t], slot_bank, slot_valid, self.cfg.cross_cluster and clustering)
            per_sample = contrastive_loss(q[t], k[t], mem_keys, usable, tau)  # N
            terms[f"mi_{t}"] = reweighted_mean(per_sample, change_counts if clustering else None)
            if t in self.classifiers:
                if not clustering:
                    terms[f"cd_{t}"] = q[t].new_zeros(())  # warm-up: no concept discrimination yet
                    continue
                # eq. 3 soft targets come from the momentum-key memory; no gradient (detached)
                with torch.no_grad():
                    targets = memory_soft_assignment(q[t], mem_keys, slot_bank, slot_valid, self.num_clusters[t], tau)
                logits = self.classifiers[t](q[t])
                w = None if class_weights is None else class_weights.get(t)
                terms[f"cd_{t}"] = concept_discrimination_loss(logits, targets, w)
        total = torch.stack(list(terms.values())).sum()
        return total, terms, k

    def compile_encoders(self, **options) -> None:
        """torch.compile the query and key encoders' forward, in place (`nn.Module.compile`),
        so the state_dict keys - and checkpoints - stay those of the eager model. Compilation
        happens lazily, at the first call."""
        self.encoder_q.compile(**options)
        self.encoder_k.compile(**options)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta~ <- m theta~ + (1 - m) theta for every parameter and floating-point buffer
        at once: two foreach operations over the whole list (a few kernels in all, instead
        of two per tensor), the same arithmetic as `p_k.mul_(m).add_(p_q, alpha=1 - m)`."""
        m = self.cfg.ema_momentum
        # BN running statistics follow the same average (MoCo copies only parameters; the
        # key encoder runs BN in train mode, so its buffers are never read during training)
        pairs = list(zip(self.encoder_k.parameters(), self.encoder_q.parameters()))
        pairs += [(b_k, b_q) for b_k, b_q in zip(self.encoder_k.buffers(), self.encoder_q.buffers())
                  if b_k.dtype.is_floating_point]
        ints = [(b_k, b_q) for b_k, b_q in zip(self.encoder_k.buffers(), self.encoder_q.buffers())
                if not b_k.dtype.is_floating_point]
        keys, queries = [k for k, _ in pairs], [q.detach() for _, q in pairs]
        torch._foreach_mul_(keys, m)
        torch._foreach_add_(keys, queries, alpha=1.0 - m)
        if ints:  # BN's num_batches_tracked: copied
            torch._foreach_copy_([k for k, _ in ints], [q for _, q in ints])

    @torch.no_grad()
    def enqueue(self, keys: dict[str, torch.Tensor], pseudo_labels: dict[str, torch.Tensor]) -> None:
        for t in self.tasks:
            self.memories[t].enqueue(keys[t], pseudo_labels.get(t))

    # ----------------------------------------------------------------- inference
    @torch.no_grad()
    def infer(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Query-encoder outputs for un-augmented images: backbone features, per-task
        features, and per clustered task the cluster probabilities used by eq. 5
        (classifier softmax, or eq. 3's p~ when online CD is off)."""
        h, q = self.encoder_q(x)
        with _float32(x):
            return self._infer_heads(h, q)

    def _infer_heads(self, h: torch.Tensor, q: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {"backbone": F.normalize(h, dim=1)}
        for t in self.tasks:
            out[f"feat_{t}"] = q[t]
        for t in self.clustered:
            if t in self.classifiers:
                out[f"prob_{t}"] = torch.softmax(self.classifiers[t](q[t]), dim=1)
            else:
                out[f"prob_{t}"] = self.memory_probabilities(t, q[t])
        return out

    def memory_probabilities(self, task: str, q: torch.Tensor) -> torch.Tensor:
        """Eq. 3's p~ of features q (B x d) over the task's memory as it is now: B x C."""
        keys, bank, valid = self.memories[task].flat()
        return memory_soft_assignment(q, keys, bank, valid, self.num_clusters[task], self.cfg.temperature)
