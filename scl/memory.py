"""Key memories: the semantic memory (C FIFO banks, spec section 3) and the MoCo queue.

Both are `nn.Module`s holding buffers, so they move with `.to(device)` and are saved in
the model's `state_dict` (a resumed run continues with the very same memory).
Enqueueing is vectorised: no Python loop over samples or banks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _within_group_rank(labels: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """rank[i] = number of earlier samples in the batch with the same label; counts per label."""
    order = torch.sort(labels, stable=True).indices
    counts = torch.bincount(labels, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(labels)
    rank[order] = torch.arange(len(labels), device=labels.device) - starts[labels[order]]
    return rank, counts


class SemanticMemory(nn.Module):
    """C FIFO banks M_1..M_C of `bank_size` keys each (bank_size = K / (C - 1)).

    keys:  C x B x d   unit vectors
    valid: C x B       False for slots never written (only with init="empty")
    ptr:   C           next slot to overwrite in each bank (= its oldest entry once full)
    """

    def __init__(self, num_clusters: int, bank_size: int, dim: int, init: str = "random", generator=None):
        super().__init__()
        if num_clusters < 1 or bank_size < 1:
            raise ValueError(f"a semantic memory needs >= 1 bank of >= 1 key, got {num_clusters} x {bank_size}")
        self.num_clusters, self.bank_size, self.dim = num_clusters, bank_size, dim
        if init == "random":  # MoCo's queue start: random unit vectors, all slots in use
            keys = F.normalize(torch.randn(num_clusters, bank_size, dim, generator=generator), dim=-1)
            valid = torch.ones(num_clusters, bank_size, dtype=torch.bool)
        elif init == "empty":  # no negatives until keys arrive
            keys = torch.zeros(num_clusters, bank_size, dim)
            valid = torch.zeros(num_clusters, bank_size, dtype=torch.bool)
        else:
            raise ValueError(f"unknown memory init {init!r}; choose 'random' or 'empty'")
        self.register_buffer("keys", keys)
        self.register_buffer("valid", valid)
        self.register_buffer("ptr", torch.zeros(num_clusters, dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Put each key k_i (N x d) into bank M_{y_i}, overwriting that bank's oldest keys.

        Keys of one bank go in batch order; if a batch holds more than B keys for a
        bank, only its last B survive (as if they had been enqueued one by one).
        """
        labels = labels.to(self.ptr.device, torch.long)
        rank, counts = _within_group_rank(labels, self.num_clusters)
        keep = rank >= (counts[labels] - self.bank_size)  # the last B keys per bank
        labels, rank, keys = labels[keep], rank[keep], keys[keep]
        # the kept ranks n-B..n-1 are distinct mod B, and after ptr moves on by n the
        # oldest slot is the one of rank n-B: FIFO order holds even when n > B
        slot = (self.ptr[labels] + rank) % self.bank_size
        self.keys[labels, slot] = keys.detach().to(self.keys.dtype)
        self.valid[labels, slot] = True
        self.ptr.copy_((self.ptr + counts) % self.bank_size)

    @torch.no_grad()
    def refill(self, keys: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Rebuild every bank from the members of its cluster (after a pseudo-label refresh).

        Bank c receives B keys drawn from the samples labelled c (without replacement when
        it has at least B members, else with replacement, so every bank of a non-empty
        cluster is full and eq. 3 compares banks of equal size). A bank whose cluster is
        empty keeps its keys. Runs once per epoch: the loop is over banks, not samples.
        """
        labels = labels.to(torch.long).cpu()
        for c in range(self.num_clusters):
            members = torch.nonzero(labels == c).flatten()
            if len(members) == 0:
                continue
            if len(members) >= self.bank_size:
                pick = members[torch.randperm(len(members), generator=generator)[: self.bank_size]]
            else:
                pick = members[torch.randint(len(members), (self.bank_size,), generator=generator)]
            self.keys[c] = keys[pick.to(keys.device)].to(self.keys.device, self.keys.dtype)
            self.valid[c] = True
        self.ptr.zero_()

    def fifo(self, cluster: int) -> torch.Tensor:
        """Valid keys of one bank, oldest first (for tests and inspection)."""
        order = (self.ptr[cluster] + torch.arange(self.bank_size, device=self.ptr.device)) % self.bank_size
        return self.keys[cluster, order][self.valid[cluster, order]]

    def flat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All slots as one matrix: keys (C*B) x d, bank id (C*B), valid (C*B)."""
        bank = torch.arange(self.num_clusters, device=self.keys.device).repeat_interleave(self.bank_size)
        return self.keys.reshape(-1, self.dim), bank, self.valid.reshape(-1)


class InstanceQueue(SemanticMemory):
    """MoCo's queue of K keys: the over-clustering (instance-wise) task's memory.

    Instance-wise clustering makes every other key a negative (spec section 2), which is
    a semantic memory with a single bank and nothing excluded.
    """

    def __init__(self, size: int, dim: int, init: str = "random", generator=None):
        super().__init__(1, size, dim, init, generator)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        super().enqueue(keys, torch.zeros(len(keys), dtype=torch.long, device=keys.device))
