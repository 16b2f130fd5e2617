"""The one evaluation contract: ACC (Hungarian matching), NMI and ARI.

Every number this project reports goes through `evaluate`, so SCL, its ablations and
the baselines are scored identically (SCAN's convention).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def contingency(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """counts[c, k] = number of samples of cluster c with class k."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    n_pred, n_true = y_pred.max() + 1, y_true.max() + 1
    counts = np.zeros((n_pred, n_true), dtype=np.int64)
    np.add.at(counts, (y_pred, y_true), 1)
    return counts


def hungarian_map(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, int]:
    """Cluster -> class map that maximises the number of matched samples.

    With more clusters than classes, unmatched clusters map to -1 (counted wrong), which
    is the usual convention for ACC when the cluster count differs from the class count.
    """
    counts = contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    mapping = {int(c): -1 for c in range(counts.shape[0])}
    mapping.update({int(r): int(c) for r, c in zip(rows, cols)})
    return mapping


def _matched_fraction(y_true: np.ndarray, y_pred: np.ndarray, mapping: dict[int, int]) -> float:
    """Share of samples whose cluster maps to their class (ACC under `mapping`)."""
    mapped = np.array([mapping[int(c)] for c in range(max(mapping) + 1)])[np.asarray(y_pred)]
    return float((mapped == np.asarray(y_true)).mean())


def clustering_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return _matched_fraction(y_true, y_pred, hungarian_map(y_true, y_pred))


def evaluate(y_true, y_pred) -> dict:
    """ACC, NMI (arithmetic normalisation, as sklearn's default and IIC/PICA), ARI, map."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be vectors of equal length, got {y_true.shape} and {y_pred.shape}")
    if len(y_true) == 0:
        raise ValueError("cannot evaluate an empty clustering")
    if (y_true < 0).any() or (y_pred < 0).any():
        raise ValueError("labels and cluster ids must be non-negative (unlabelled data cannot be scored)")
    mapping = hungarian_map(y_true, y_pred)
    return {
        "acc": _matched_fraction(y_true, y_pred, mapping),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
        "mapping": mapping,
    }
