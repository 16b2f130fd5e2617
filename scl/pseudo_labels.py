"""End-of-epoch pseudo-label refresh (eq. 5), label-change counts (eq. 6) and ODC's two
imbalance guards (spec section 6).

These run once per epoch on the whole dataset's (un-augmented) outputs, so they work
on numpy arrays; the small per-cluster loops here are over clusters, not samples.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


def random_partition(n: int, num_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Initial pseudo-labels (spec section 6): a random, balanced partition."""
    return rng.permutation(np.arange(n) % num_clusters).astype(np.int64)


def kmeans_partition(features: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    """Initial pseudo-labels from K-means on features (ours, `init_labels: kmeans`, issue 10):
    the partition a trained representation already holds, instead of a random one."""
    km = KMeans(n_clusters=num_clusters, n_init=10, random_state=seed)
    return km.fit_predict(np.asarray(features, np.float64)).astype(np.int64)


UMAP_NEIGHBOURS = 20  # the k of UMAP's k-NN graph (N2D's choice)


def umap_kmeans_partition(features: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    """Initial pseudo-labels from K-means on a UMAP embedding of the features (ours,
    `init_labels: umap_kmeans`, issue 10; N2D's manifold step). K-means alone cuts the feature
    sphere into convex cells; UMAP first follows the k-NN graph, so classes that are connected
    but not round (as contrastive features after a short warm-up are) become blobs K-means can
    separate. Deterministic for a given seed. The embedding runs in a child process
    (scl/umap_embedding.py says why)."""
    from scl.umap_embedding import COMPONENTS, embed_in_child

    x = np.asarray(features, np.float32)
    n = len(x)
    if n <= COMPONENTS + 2:  # too few points to embed: K-means on the features themselves
        return kmeans_partition(x, num_clusters, seed)
    return kmeans_partition(embed_in_child(x, min(UMAP_NEIGHBOURS, n - 1), seed), num_clusters, seed)


START_PARTITIONS = {"kmeans": kmeans_partition, "umap_kmeans": umap_kmeans_partition}


def align_labels(labels: np.ndarray, reference: np.ndarray, num_clusters: int) -> np.ndarray:
    """`labels` with its clusters renamed so that each takes the index of the `reference`
    cluster it shares most samples with (one-to-one, Hungarian matching). The partition is
    unchanged; only its names move. Used by `relabel_epochs` (ours, issue 10): the new
    partition keeps the head's class indices where it can, so the classifier trained so far
    still points at (nearly) the same clusters instead of at a random permutation of them."""
    from scipy.optimize import linear_sum_assignment

    counts = np.zeros((num_clusters, num_clusters), np.int64)  # counts[new, old]
    np.add.at(counts, (labels, reference), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    rename = np.empty(num_clusters, np.int64)
    rename[rows] = cols
    return rename[labels]


def refresh(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 5: y_i = argmax_j of the classifier output (or of p~ without online CD).

    `scores` are N x C probabilities; returns labels and their confidences (max prob).
    """
    return scores.argmax(1).astype(np.int64), scores.max(1)


def update_change_counts(counts: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Eq. 6: s^e = s^{e-1} + 1[y^e != y^{e-1}]."""
    return counts + (old != new).astype(counts.dtype)


def balanced_class_weights(labels: np.ndarray, num_clusters: int) -> np.ndarray:
    """ODC guard (a): w_c proportional to (1/n_c)^0.5, scaled to mean 1 over clusters.

    An empty cluster is treated as having one member (it then gets the largest weight).
    """
    n = np.bincount(labels, minlength=num_clusters).astype(np.float64)
    w = (1.0 / np.maximum(n, 1.0)) ** 0.5
    return (w * num_clusters / w.sum()).astype(np.float32)


def split_small_clusters(
    labels: np.ndarray,
    scores: np.ndarray,
    features: np.ndarray,
    min_size: int,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """ODC guard (b): empty every cluster with fewer than `min_size` members into the
    best-scoring non-small cluster, then give each emptied id to one half of the current
    largest cluster, split by 2-means on the features.

    Returns the new labels and the number of clusters that were re-seeded.
    """
    labels = labels.copy()
    num_clusters = scores.shape[1]
    sizes = np.bincount(labels, minlength=num_clusters)
    small = np.flatnonzero(sizes < min_size)
    if len(small) == 0 or len(small) == num_clusters:
        return labels, 0
    # 1) move members of small clusters to their best non-small cluster
    members = np.isin(labels, small)
    masked = scores[members].copy()
    masked[:, small] = -np.inf
    labels[members] = masked.argmax(1)
    # 2) each emptied id takes half of the currently largest cluster
    for cid in small:
        sizes = np.bincount(labels, minlength=num_clusters)
        largest = int(sizes.argmax())
        idx = np.flatnonzero(labels == largest)
        if len(idx) < 2:
            break
        halves = KMeans(n_clusters=2, n_init=3, random_state=seed).fit_predict(features[idx])
        if halves.min() == halves.max():  # identical features: split arbitrarily
            halves = np.arange(len(idx)) % 2
        labels[idx[halves == 1]] = cid
    return labels, len(small)


def min_cluster_size(n: int, num_clusters: int, ratio: float) -> int:
    """The guard's threshold: `ratio` times the size of a perfectly balanced cluster."""
    return int(np.floor(ratio * n / num_clusters))
