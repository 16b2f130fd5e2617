"""Split batch normalisation: MoCo's shuffle BN on one device (ours, issue 10; `bn_splits`).

Why: with one BN over the whole batch, a query and its positive key are normalised with
statistics of the same images, while the queue's negatives carry other batches'
statistics. The encoder can then tell the positive apart by that batch signature instead
of by content ("cheating" the pretext task; MoCo, He et al. 2020, section 3.3). MoCo
computes BN per GPU and shuffles the key batch across GPUs. On one device the same is
done by normalising S groups of the batch separately (S "virtual GPUs") and feeding the key
encoder the batch in another order (`key_order`), so a query's group and its key's group
share only B / S^2 images.

Groups: the batch's S contiguous slices (MoCo's GPUs). In eval mode, and for a batch that S
does not divide, this is plain BatchNorm2d. The parameters and buffers are those of
nn.BatchNorm2d, so checkpoints load into either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SplitBatchNorm2d(nn.BatchNorm2d):
    def __init__(self, num_features: int, splits: int, **kwargs):
        super().__init__(num_features, **kwargs)
        if splits < 1:
            raise ValueError(f"splits must be >= 1, got {splits}")
        self.splits = splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, n = self.splits, x.shape[0]
        if not self.training or s == 1 or n % s:
            return super().forward(x)
        # one fused batch_norm per group: contiguous slices keep x's memory format (channels_last),
        # several times faster on a CPU than statistics computed by hand over a strided view
        stats = self.track_running_stats
        m = self.momentum if self.momentum is not None else 0.0  # None (cumulative average): see below
        if stats and self.momentum is None:
            m = 1.0 / float(self.num_batches_tracked + 1)
        outs, means, variances = [], [], []
        for chunk in x.chunk(s):
            rm = self.running_mean.clone() if stats else None  # each group updates its own copy ...
            rv = self.running_var.clone() if stats else None
            outs.append(F.batch_norm(chunk, rm, rv, self.weight, self.bias, True, m, self.eps))
            means.append(rm)
            variances.append(rv)
        if stats:  # ... and the running statistics take their mean, as in MoCo's single-GPU demo
            with torch.no_grad():
                self.running_mean.copy_(torch.stack(means).mean(0))
                self.running_var.copy_(torch.stack(variances).mean(0))
                self.num_batches_tracked.add_(1)
        return torch.cat(outs)


def key_order(batch: int, splits: int, device=None) -> torch.Tensor | None:
    """The order the key encoder reads the batch in, or None where no shuffle is needed.

    Key group g (the g-th contiguous slice of the reordered batch) holds samples g, g + S, g + 2S,
    ...: residues mod S, while the query groups are contiguous slices, so every key group draws
    B / S^2 samples from each query group. The batch is in random order already (the
    epoch's permutation), so a fixed interleave shuffles as well as a random one, and keeps
    the step a function of the data alone (resume stays exact).
    """
    if splits <= 1 or batch % splits:
        return None
    return torch.arange(batch, device=device).view(batch // splits, splits).t().reshape(-1)
