"""The end-of-epoch update of a run's clustering state (Algorithm 1, line 10; spec section 6).

After every epoch, from the query encoder's outputs on the whole (un-augmented) dataset:
  eq. 5       refresh each clustered task's pseudo-labels (argmax of its probabilities)
  ODC (b)     empty small clusters and split the largest by 2-means (`split_small`)
  eq. 6       count label changes per sample, for the re-weighting of eq. 7
  ODC (a)     class-balanced weights of the concept-discrimination loss
  refill      (ours, not in the paper) rebuild each semantic memory from the new labels

With `init_labels: kmeans` (ours, issue 10) clustering starts, instead of from the random
partition, from K-means on each task's features (`start_from_kmeans`), at the end of the
`cluster_warmup_epochs` (or before the first epoch without warm-up); `umap_kmeans` runs the
K-means on a UMAP embedding of the features instead. With `relabel_epochs` (ours, issue 10)
the same start is made again after the listed epochs, on the features as they are then, its
clusters renamed to the head's classes they overlap most (`align_to`).

`update_clusters` is a function of explicit state: it takes a `ClusterState` and returns
a new one with the epoch's log record; only the memory refill acts in place (on the
model's memories, when given).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scl import pseudo_labels as pl


@dataclass(frozen=True)
class ClusterState:
    """pseudo: per clustered task, N labels; class_weights: per task, C weights (ODC (a));
    change_counts: N eq. 6 counts s^e (of `reweight_task`), starting at s^0."""

    pseudo: dict[str, np.ndarray]
    class_weights: dict[str, np.ndarray]
    change_counts: np.ndarray

    @classmethod
    def initial(cls, n: int, num_clusters: dict[str, int], s0: float, seed: int) -> ClusterState:
        """Random balanced partitions (spec section 6), uniform weights, counts s^0."""
        rng = np.random.default_rng(seed)
        return cls(
            pseudo={t: pl.random_partition(n, c, rng) for t, c in num_clusters.items()},
            class_weights={t: np.ones(c, np.float32) for t, c in num_clusters.items()},
            change_counts=np.full(n, float(s0), np.float32),
        )


def _refill(memories, task: str, outs: dict[str, np.ndarray], labels: np.ndarray, seed: int | None) -> None:
    """`refill_memory` (ours): rebuild `task`'s memory, in place, from its features and
    labels, with a generator seeded by `seed`; nothing when either memories or seed is None."""
    if memories is not None and seed is not None:
        memories[task].refill(torch.from_numpy(outs[f"feat_{task}"]), torch.from_numpy(labels),
                              torch.Generator().manual_seed(seed))


def start_from_kmeans(
    state: ClusterState,
    outs: dict[str, np.ndarray],
    num_clusters: dict[str, int],
    s0: float,
    seed: int,
    refill_seed: int | None = None,
    memories=None,
    method: str = "kmeans",
    align_to: dict[str, np.ndarray] | None = None,
) -> tuple[ClusterState, dict]:
    """`init_labels: kmeans` (ours, issue 10): every clustered task starts from K-means (C_t
    clusters) on its own features `feat_<task>` instead of the random partition
    (`method: umap_kmeans`: K-means on a UMAP embedding of them); the class
    weights follow the new labels and the eq. 6 counts start again at s^0 (the switch is
    the start of clustering, not a change of label). With refill_seed and memories, each
    task's memory is rebuilt from the new labels, as after a refresh. With `align_to` (per
    task, the labels the head gives now: a `relabel_epochs` restart) each new partition's
    clusters are renamed to the head's classes they overlap most (`pl.align_labels`).
    Returns the new state and a log record (per task: the cluster sizes of the partition)."""
    pseudo, rec = dict(state.pseudo), {}
    for task, c in num_clusters.items():
        pseudo[task] = pl.START_PARTITIONS[method](outs[f"feat_{task}"], c, seed)
        if align_to is not None:
            pseudo[task] = pl.align_labels(pseudo[task], align_to[task], c)
        rec[f"sizes_{task}"] = np.bincount(pseudo[task], minlength=c).tolist()
        _refill(memories, task, outs, pseudo[task], refill_seed)
    weights = {t: pl.balanced_class_weights(pseudo[t], c) for t, c in num_clusters.items()}
    counts = np.full(len(state.change_counts), float(s0), np.float32)
    return ClusterState(pseudo, weights, counts), rec


def reweight_task(tasks) -> str | None:
    """Eq. 6 counts label changes of the target task (of 'under' where it is alone)."""
    return next((k for k in ("target", "under") if k in tasks), None)


def update_clusters(
    state: ClusterState,
    outs: dict[str, np.ndarray],
    num_clusters: dict[str, int],
    *,
    split_small: bool,
    min_cluster_ratio: float,
    split_seed: int,
    refill_seed: int | None = None,
    memories=None,
) -> tuple[ClusterState, dict, dict[str, np.ndarray]]:
    """One end-of-epoch update.

    outs: `infer_all`'s outputs, per task `prob_<task>` (N x C) and `feat_<task>` (N x d).
    split_seed: seed of guard (b)'s 2-means. refill_seed and memories: when both are given,
    each task's memory is refilled (in place) from its features and new labels, with a
    generator seeded by refill_seed.
    Returns the new state, the log record (per task: labels changed, clusters re-seeded,
    cluster sizes of the eq. 5 labels) and the eq. 5 labels before guard (b) (what the
    per-epoch scores evaluate).
    """
    n = len(state.change_counts)
    pseudo, weights, counts = dict(state.pseudo), dict(state.class_weights), state.change_counts
    counted = reweight_task(num_clusters)
    rec: dict = {}
    raw_labels: dict[str, np.ndarray] = {}
    for task, c in num_clusters.items():
        raw, _ = pl.refresh(outs[f"prob_{task}"])
        new, reseeded = raw, 0
        if split_small:
            min_size = pl.min_cluster_size(n, c, min_cluster_ratio)
            new, reseeded = pl.split_small_clusters(raw, outs[f"prob_{task}"], outs[f"feat_{task}"], min_size,
                                                    split_seed)
        old = pseudo[task]
        rec[f"changed_{task}"] = int((old != new).sum())
        rec[f"reseeded_{task}"] = reseeded
        rec[f"sizes_{task}"] = np.bincount(raw, minlength=c).tolist()
        if task == counted:
            counts = pl.update_change_counts(counts, old, new)
        pseudo[task] = new
        weights[task] = pl.balanced_class_weights(new, c)
        raw_labels[task] = raw
        # make the memory agree with the refreshed labels at once, so a cluster
        # re-seeded by guard (b) holds from the next step
        _refill(memories, task, outs, new, refill_seed)
    return ClusterState(pseudo, weights, counts), rec, raw_labels
