"""Per-epoch diagnostics of a clustering run: what the head, K-means and eq. 3's memory
would each label, scored against the true classes (issue 10).

When a run goes wrong (the head collapses, or the head and the features agree on a worse
partition than the features held earlier), the per-epoch `acc` alone does not say why.
These readings do, epoch by epoch, on the same sample of images:

  diag_head_acc               ACC of the target head's argmax (eq. 5's labels before guard (b))
  diag_kmeans_target_acc      ACC of K-means (C clusters) on the target task's features q
  diag_kmeans_backbone_acc    ACC of K-means (C clusters) on the (L2-normalised) backbone features
  diag_memory_acc             ACC of eq. 3's argmax: the cluster whose memory bank p~ favours
  diag_head_kmeans_agreement  ACC-style agreement of the head with K-means on q (Hungarian map,
                              the head's labels taken as the "classes"): 1.0 = same partition
  diag_sample                 how many images these were computed on

All are computed on one seeded, class-agnostic random sample of at most `sample_size`
images (the same sample every epoch, so the trajectory compares like with like), with
numpy / scikit-learn random state only: torch's global RNG is never touched, so a run with
diagnostics on trains bit for bit as one with them off (tests/test_epoch_diagnostics.py).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from scl.metrics import evaluate

KMEANS_N_INIT = 3  # a reading, not a result: a few restarts are enough to see the trend


def diagnostic_sample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a class-agnostic random sample of min(n, size) of n images."""
    if size <= 0:
        raise ValueError(f"diagnostics_sample must be positive, got {size}")
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed).fit_predict(x).astype(np.int64)


def epoch_diagnostics(
    outs: dict[str, np.ndarray],
    labels: np.ndarray,
    num_classes: int,
    *,
    seed: int,
    sample_size: int = 5000,
    memory_assign: Callable[[np.ndarray], np.ndarray] | None = None,
    task: str = "target",
) -> dict[str, float]:
    """The diagnostics of one epoch, a flat dict of numbers (keys `diag_*`, module docstring).

    outs: `infer_all`'s outputs for all N images: `backbone` (N x D), and where the run has
    the task, `feat_<task>` (N x d) and `prob_<task>` (N x C). labels: N true classes.
    memory_assign: maps features of the sampled images (n x d) to eq. 3's argmax labels (n);
    it must read the memory as it was when `outs` were computed (before any refill).
    Readings the run cannot give (no target task, no memory) are left out.
    """
    labels = np.asarray(labels, np.int64)
    idx = diagnostic_sample(len(labels), sample_size, seed)
    y = labels[idx]
    rec: dict[str, float] = {"diag_sample": int(len(idx))}
    head = kmeans_target = None
    if f"prob_{task}" in outs:
        head = outs[f"prob_{task}"][idx].argmax(1).astype(np.int64)
        rec["diag_head_acc"] = evaluate(y, head)["acc"]
    if f"feat_{task}" in outs:
        kmeans_target = _kmeans(np.asarray(outs[f"feat_{task}"][idx], np.float32), num_classes, seed)
        rec["diag_kmeans_target_acc"] = evaluate(y, kmeans_target)["acc"]
    rec["diag_kmeans_backbone_acc"] = evaluate(
        y, _kmeans(np.asarray(outs["backbone"][idx], np.float32), num_classes, seed))["acc"]
    if memory_assign is not None and f"feat_{task}" in outs:
        rec["diag_memory_acc"] = evaluate(y, np.asarray(memory_assign(outs[f"feat_{task}"][idx]), np.int64))["acc"]
    if head is not None and kmeans_target is not None:
        rec["diag_head_kmeans_agreement"] = evaluate(head, kmeans_target)["acc"]
    return rec
