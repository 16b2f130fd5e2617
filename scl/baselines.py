"""Classical clustering baselines on raw pixels (Table 1's K-means, SC, AC and NMF rows).

  scl baseline METHOD --dataset D [--data data/prepared/D.npz] [--seed S] [--out .../metrics.json]
  (the command line is in scl/cli.py)

Every image is flattened and scaled to [0, 1]; the number of clusters is the dataset's
`num_classes` in params.yaml. Spectral and agglomerative clustering need O(N^2) memory,
so they run on a seeded random subsample (`--max-samples`, default 10,000) and are
scored on that subsample; `subsample` in metrics.json records how many images were
clustered (null: all of them). Scores come from `scl.metrics.evaluate`, like every
other number of the project.

(K-means on learned features - Table 2's "MoCo + K-means", Figure 4's single-task
models - is done at the end of training, see `scl.train`, and lands in the run's
metrics.json.)
"""

from __future__ import annotations

import time

import numpy as np

METHODS = ("kmeans", "spectral", "agglomerative", "nmf")
# name used in the paper's Table 1
METHOD_LABELS = {"kmeans": "K-means", "spectral": "SC", "agglomerative": "AC", "nmf": "NMF"}
# default --max-samples per method (None: cluster every image)
DEFAULT_MAX_SAMPLES = {"kmeans": None, "spectral": 10_000, "agglomerative": 10_000, "nmf": None}


class BaselineError(ValueError):
    """Bad input for a baseline run (unknown method or dataset, missing or unlabelled data)."""

    exit_code = 2  # scl.errors


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 N x H x W x C -> float32 N x (H*W*C) in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def subsample_indices(n: int, max_samples: int | None, seed: int) -> np.ndarray | None:
    """Sorted seeded random subset of size max_samples, or None where all n fit."""
    if max_samples is None or max_samples <= 0 or n <= max_samples:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_samples, replace=False))


def cluster(method: str, x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Cluster ids (int64, 0..k-1) of the rows of x by one of METHODS."""
    if method == "kmeans":
        from sklearn.cluster import KMeans

        pred = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    elif method == "spectral":
        from sklearn.cluster import SpectralClustering

        n_neighbors = min(10, len(x) - 1)
        pred = SpectralClustering(
            n_clusters=k, affinity="nearest_neighbors", n_neighbors=n_neighbors, random_state=seed,
            assign_labels="kmeans", n_jobs=None,
        ).fit_predict(x)
    elif method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        pred = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
    elif method == "nmf":
        from sklearn.decomposition import NMF

        w = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=500).fit_transform(x)
        pred = w.argmax(axis=1)
    else:
        raise BaselineError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    return np.asarray(pred, dtype=np.int64)


def run_baseline_on(
    method: str, images: np.ndarray, labels: np.ndarray, num_clusters: int, seed: int = 0,
    max_samples: int | None = None, dataset: str = "", log=None,
) -> dict:
    """Cluster raw pixels and score them; returns the metrics.json record."""
    from scl.metrics import evaluate

    if method not in METHODS:
        raise BaselineError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0 or (labels < 0).any():
        raise BaselineError(f"dataset {dataset or '?'} has images without ground-truth labels; baselines need labels to be scored")
    n = len(images)
    idx = subsample_indices(n, max_samples, seed)
    if idx is not None:
        images, labels = images[idx], labels[idx]
    x = pixels(images)
    if log is not None:
        sub = f" (seeded subsample of {len(x):,} of {n:,})" if idx is not None else ""
        log(f"scl baseline {method}: clustering {len(x):,} images{sub} of {x.shape[1]:,} pixels of {dataset or 'data'} "
            f"into {num_clusters} clusters, seed {seed} ...")
    start = time.perf_counter()
    pred = cluster(method, x, num_clusters, seed)
    elapsed = time.perf_counter() - start
    m = evaluate(labels, pred)
    return {
        "method": method, "dataset": dataset, "seed": seed, "n": n,
        "subsample": None if idx is None else int(len(idx)),
        "num_clusters": num_clusters, "acc": m["acc"], "nmi": m["nmi"], "ari": m["ari"],
        "cluster_sizes": np.bincount(pred, minlength=num_clusters).tolist(), "time_s": elapsed,
    }


# ---------------------------------------------------------------------------- command line