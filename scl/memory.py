"""Key memories: the semantic memory (C FIFO banks, spec section 3) and the MoCo queue.

Both are `nn.Module`s holding buffers, so they move with `.to(device)` and are saved in
the model's `state_dict` (a resumed run continues with the very same memory).
Enqueueing is vectorised (no Python loop over samples or banks) and has fixed shapes:
no value is read on the host (no bincount, no boolean-mask indexing), so it runs inside
a compiled step or a CUDA graph without stalling the device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _within_group_rank(labels: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """rank[i] = number of earlier samples in the batch with the same label; counts per label.
    Fixed shapes (a one-hot N x G matrix and its running sum), so nothing is read on the host."""
    # (not F.one_hot: it checks the labels' range on the host)
    onehot = (labels[:, None] == torch.arange(num_groups, device=labels.device)).long()  # N x G
    before = onehot.cumsum(0) - onehot  # N x G: same-label samples before i
    rank = before.gather(1, labels[:, None]).squeeze(1)
    return rank, onehot.sum(0)


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
        # bank id of every slot, laid out bank by bank (not saved: it follows from the shape)
        self.register_buffer("slot_bank", torch.arange(num_clusters).repeat_interleave(bank_size), persistent=False)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Put each key k_i (N x d) into bank M_{y_i}, overwriting that bank's oldest keys.

        Keys of one bank go in batch order; if a batch holds more than B keys for a
        bank, only its last B survive (as if they had been enqueued one by one).
        """
        labels = labels.to(self.ptr.device, torch.long)
        rank, counts = _within_group_rank(labels, self.num_clusters)
        # the kept ranks n-B..n-1 are distinct mod B, and after ptr moves on by n the
        # oldest slot is the one of rank n-B: FIFO order holds even when n > B
        slot = (self.ptr[labels] + rank) % self.bank_size
        # Fixed shapes, no boolean mask: every key's slot is cleared, then each key is
        # added where it lands - its own value if it is among its bank's last B keys, 0 if
        # not. A dropped key's slot is always also the slot of a kept one (ranks r and
        # r + B share a slot), so each written slot ends up holding exactly its kept key
        # (x + 0 = x), whatever order the additions run in.
        keep = rank >= (counts[labels] - self.bank_size)  # N: among the last B of its bank
        flat = self.keys.view(-1, self.dim)
        where = labels * self.bank_size + slot  # N flat slot indices
        flat.index_fill_(0, where, 0.0)
        flat.index_add_(0, where, keys.detach().to(flat.dtype) * keep[:, None])
        self.valid.view(-1).index_fill_(0, where, True)
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
        return self.keys.reshape(-1, self.dim), self.slot_bank, self.valid.reshape(-1)


class InstanceQueue(SemanticMemory):
    """MoCo's queue of K keys: the over-clustering (instance-wise) task's memory.

    Instance-wise clustering makes every other key a negative (spec section 2), which is
    a semantic memory with a single bank and nothing excluded.
    """

    def __init__(self, size: int, dim: int, init: str = "random", generator=None):
        super().__init__(1, size, dim, init, generator)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """A ring buffer: the N keys go to slots ptr, ptr + 1, ... (mod K), overwriting the
        oldest; of a batch larger than K only its last K keys survive (a slice whose size
        the shapes fix). Same slots and contents as the bank enqueue with one bank."""
        n, size = len(keys), self.bank_size
        if n > size:
            keys, skipped = keys[n - size :], n - size
        else:
            skipped = 0
        slot = (self.ptr + skipped + torch.arange(len(keys), device=self.ptr.device)) % size  # N'
        self.keys[0].index_copy_(0, slot, keys.detach().to(self.keys.dtype))
        self.valid[0].index_fill_(0, slot, True)
        self.ptr.copy_((self.ptr + n) % size)
