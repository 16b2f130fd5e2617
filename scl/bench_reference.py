"""A plain MoCo v2 training step, written for `scl bench` independently of scl.models.

`scl bench` compares the SCL training step with this one at the same backbone, batch,
image size and queue length (He et al. 2020 / Chen et al. 2020 "MoCo v2": MLP projection
head, InfoNCE against a queue of K keys, momentum key encoder, T = 0.2). Nothing here is
shared with the SCL model except the backbone network itself (scl.models.backbones), so
that the ratio measures what SCL adds - three tasks, two classifiers, the semantic
memories, re-weighting - and not a shared implementation's cost. No host reads: the
queue pointer is a device tensor and the loss is returned as a device tensor.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class MoCoV2(nn.Module):
    def __init__(self, backbone: nn.Module, feat_dim: int, dim: int = 128, queue: int = 4096,
                 m: float = 0.999, t: float = 0.2):
        super().__init__()
        self.m, self.t = m, t
        self.q = nn.Sequential(backbone, nn.Linear(feat_dim, feat_dim), nn.ReLU(), nn.Linear(feat_dim, dim))
        self.k = copy.deepcopy(self.q).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(queue, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _momentum(self) -> None:
        k, q = list(self.k.parameters()), [p.detach() for p in self.q.parameters()]
        torch._foreach_lerp_(k, q, 1.0 - self.m)  # k <- k + (1 - m)(q - k)
        for bk, bq in zip(self.k.buffers(), self.q.buffers()):
            bk.copy_(bq)  # BN statistics are not used by the key encoder in train mode

    def loss(self, x_q: torch.Tensor, x_k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = F.normalize(self.q(x_q).float(), dim=1)  # N x dim
        with torch.no_grad():
            self._momentum()
            k = F.normalize(self.k(x_k).float(), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.t()], dim=1) / self.t  # N x (1 + K)
        target = torch.zeros(len(q), dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, target), k

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor) -> None:
        slots = (self.ptr + torch.arange(len(k), device=k.device)) % len(self.queue)
        self.queue.index_copy_(0, slots, k)
        self.ptr.copy_((self.ptr + len(k)) % len(self.queue))
