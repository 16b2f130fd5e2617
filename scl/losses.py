"""SCL's losses, each a pure function of tensors (spec sections 4, 5 and 7).

Shapes: N queries q and keys k (N x d, unit norm), a memory of M slots (M x d) with a
bank id per slot (M) and a validity mask (M). tests/test_losses.py checks every
function against a plain loop written from the paper's equations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


def negative_mask(labels: torch.Tensor, slot_bank: torch.Tensor, slot_valid: torch.Tensor, exclude_own: bool) -> torch.Tensor:
    """N x M: True where slot m is a usable negative for sample i (eq. 2's Q_i).

    Q_i = union of all banks except M_{y_i}; `exclude_own=False` gives the ablation
    "without cross-cluster ID", where every bank supplies negatives.
    """
    usable = slot_valid[None, :].expand(len(labels), -1)
    if exclude_own:
        usable = usable & (slot_bank[None, :] != labels[:, None])
    return usable


def contrastive_loss(q, k, memory_keys, usable, temperature: float) -> torch.Tensor:
    """Per-sample -log MI(I_i) of eq. 1: InfoNCE with the positive key k_i and the usable
    memory slots as negatives. Returns N losses (not reduced)."""
    pos = (q * k).sum(dim=1, keepdim=True)  # positive logits: N x 1
    neg = q @ memory_keys.t()  # negative logits: N x M
    neg = neg.masked_fill(~usable, NEG_INF)
    logits = torch.cat([pos, neg], dim=1) / temperature  # N x (1 + M)
    # the positive sits in column 0; cross_entropy = logsumexp - positive logit
    return torch.logsumexp(logits, dim=1) - logits[:, 0]


def memory_soft_assignment(q, memory_keys, slot_bank, slot_valid, num_clusters: int, temperature: float) -> torch.Tensor:
    """Eq. 3: p~_ij = sum_{k in M_j} exp(q.k/tau) / sum_j' sum_{k in M_j'} exp(q.k/tau).

    Computed in log space (logsumexp per bank, then softmax over banks) for stability.
    Returns N x C probabilities. Empty banks get probability 0; an entirely empty memory
    gives uniform probabilities.
    """
    sims = (q @ memory_keys.t()) / temperature  # N x M
    sims = sims.masked_fill(~slot_valid[None, :], NEG_INF)
    bank_size = memory_keys.shape[0] // num_clusters
    # slots are laid out bank by bank (SemanticMemory.flat), so a reshape groups them
    per_bank = torch.logsumexp(sims.view(len(q), num_clusters, bank_size), dim=2)  # N x C
    # a memory with no key at all yet (memory_init: empty) carries no information: uniform
    no_keys = torch.isinf(per_bank).all(dim=1, keepdim=True)
    per_bank = per_bank.masked_fill(no_keys, 0.0)
    return torch.softmax(per_bank, dim=1)


def concept_discrimination_loss(logits, soft_targets, class_weights=None) -> torch.Tensor:
    """Eq. 4: (1/n) sum_i sum_j -w_j p~_ij log softmax(z_i)_j.

    The targets are detached (stop-gradient: p~ is a target, spec section 5). Optional
    class weights w_j implement ODC's class-balanced loss (spec section 6, guard a);
    without them every w_j = 1.
    """
    log_p = F.log_softmax(logits, dim=1)
    terms = -soft_targets.detach() * log_p  # N x C
    if class_weights is not None:
        terms = terms * class_weights[None, :]
    return terms.sum(dim=1).mean()


def reweighted_mean(per_sample_loss: torch.Tensor, change_counts: torch.Tensor | None) -> torch.Tensor:
    """Eq. 6-7 within the mini-batch: w_i = s_i / sum_batch s, loss = sum_i w_i L_i.

    Scaled so that the mean weight is 1 (spec section 7): uniform counts give exactly the
    plain mean, and `None` means no re-weighting.
    """
    if change_counts is None:
        return per_sample_loss.mean()
    s = change_counts.to(per_sample_loss.dtype)
    return (s * per_sample_loss).sum() / s.sum()
