"""The evaluation contract: ACC (Hungarian), NMI, ARI, on hand-computed cases."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from scl.metrics import clustering_accuracy, contingency, evaluate, hungarian_map


def hand_nmi(y_true, y_pred):
    """MI / arithmetic mean of the entropies, from counts (natural log)."""
    n = len(y_true)
    pt, pp = Counter(y_true), Counter(y_pred)
    joint = Counter(zip(y_true, y_pred))
    mi = sum(c / n * math.log((c / n) / ((pt[a] / n) * (pp[b] / n))) for (a, b), c in joint.items())
    h = lambda cnt: -sum(c / n * math.log(c / n) for c in cnt.values())  # noqa: E731
    return mi / ((h(pt) + h(pp)) / 2)


def hand_ari(y_true, y_pred):
    """Hubert & Arabie's ARI from the contingency table."""
    n = len(y_true)
    c2 = lambda x: x * (x - 1) / 2  # noqa: E731
    joint = Counter(zip(y_true, y_pred))
    index = sum(c2(c) for c in joint.values())
    a = sum(c2(c) for c in Counter(y_true).values())
    b = sum(c2(c) for c in Counter(y_pred).values())
    expected = a * b / c2(n)
    return (index - expected) / ((a + b) / 2 - expected)


def test_permuted_perfect_clustering():
    perm = np.array([2, 0, 3, 1])  # class c -> cluster perm[c]
    y_true = np.repeat(np.arange(4), 5)
    y_pred = perm[y_true]
    r = evaluate(y_true, y_pred)
    assert r["acc"] == 1.0
    assert r["nmi"] == pytest.approx(1.0, abs=1e-12)
    assert r["ari"] == pytest.approx(1.0, abs=1e-12)
    inverse = np.argsort(perm)  # cluster k -> class inverse[k]
    assert r["mapping"] == {k: int(inverse[k]) for k in range(4)}
    assert r["mapping"] == {2: 0, 0: 1, 3: 2, 1: 3}


def test_small_hand_case():
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [1, 1, 0, 0, 0, 0]
    # contingency (cluster x class): cluster 0 = {class 0: 1, class 1: 3}; cluster 1 = {class 0: 2}
    assert contingency(np.array(y_true), np.array(y_pred)).tolist() == [[1, 3], [2, 0]]
    r = evaluate(y_true, y_pred)
    # best map: cluster 0 -> class 1 (3 right), cluster 1 -> class 0 (2 right)
    assert r["mapping"] == {0: 1, 1: 0}
    assert r["acc"] == pytest.approx(5 / 6, abs=1e-15)
    # ARI: sum C(n_ij, 2) = 0 + 3 + 1 + 0 = 4; rows: C(4,2) + C(2,2) = 7; columns: 3 + 3 = 6;
    # expected = 7 * 6 / C(6,2) = 2.8; max = (7 + 6) / 2 = 6.5; ARI = 1.2 / 3.7 = 12/37
    assert r["ari"] == pytest.approx(12 / 37, abs=1e-12)
    assert hand_ari(y_true, y_pred) == pytest.approx(12 / 37, abs=1e-12)
    # NMI: H(true) = ln 2; H(pred) = H(2/3, 1/3); MI from the joint (1,3,2 out of 6)
    h_true = math.log(2)
    h_pred = -(4 / 6) * math.log(4 / 6) - (2 / 6) * math.log(2 / 6)
    mi = (1 / 6) * math.log((1 / 6) / (0.5 * 4 / 6)) + (3 / 6) * math.log((3 / 6) / (0.5 * 4 / 6)) + (2 / 6) * math.log((2 / 6) / (0.5 * 2 / 6))
    assert r["nmi"] == pytest.approx(mi / ((h_true + h_pred) / 2), abs=1e-12)
    assert r["nmi"] == pytest.approx(hand_nmi(y_true, y_pred), abs=1e-12)
    assert clustering_accuracy(np.array(y_true), np.array(y_pred)) == pytest.approx(5 / 6)


def brute_force_acc(y_true, y_pred):
    """Best one-to-one cluster->class map by trying every assignment."""
    k, c = max(y_pred) + 1, max(y_true) + 1
    best = 0
    classes = list(range(c)) + [-1] * max(0, k - c)
    for assign in set(itertools.permutations(classes, k)):
        best = max(best, sum(assign[p] == t for t, p in zip(y_true, y_pred)))
    return best / len(y_true)


@pytest.mark.parametrize("seed", range(5))
def test_random_cases_match_brute_force_and_hand_formulas(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, 25).tolist()
    y_pred = rng.integers(0, 4, 25).tolist()
    r = evaluate(y_true, y_pred)
    assert r["acc"] == pytest.approx(brute_force_acc(y_true, y_pred), abs=1e-12)
    assert r["nmi"] == pytest.approx(hand_nmi(y_true, y_pred), abs=1e-10)
    assert r["ari"] == pytest.approx(hand_ari(y_true, y_pred), abs=1e-10)


def test_more_clusters_than_classes():
    y_true = [0, 0, 1, 1]
    y_pred = [0, 1, 2, 2]
    r = evaluate(y_true, y_pred)
    assert r["acc"] == pytest.approx(3 / 4)
    assert set(r["mapping"]) == {0, 1, 2}
    assert r["mapping"][2] == 1
    # one of clusters 0/1 takes class 0, the other is unmatched (-1)
    assert sorted([r["mapping"][0], r["mapping"][1]]) == [-1, 0]
    assert list(r["mapping"].values()).count(-1) == 1


def test_fewer_clusters_than_classes():
    r = evaluate([0, 1, 2, 2], [0, 0, 1, 1])
    assert r["acc"] == pytest.approx(3 / 4)
    assert r["mapping"][1] == 2


def test_all_in_one_cluster():
    r = evaluate([0, 0, 1, 1, 2, 2], [0] * 6)
    assert r["acc"] == pytest.approx(2 / 6)
    assert r["ari"] == pytest.approx(0.0, abs=1e-12)
    assert r["nmi"] == pytest.approx(0.0, abs=1e-12)


def test_metric_types_and_ranges():
    rng = np.random.default_rng(9)
    r = evaluate(rng.integers(0, 5, 100), rng.integers(0, 5, 100))
    for key in ("acc", "nmi", "ari"):
        assert type(r[key]) is float
    assert 0 <= r["acc"] <= 1 and 0 <= r["nmi"] <= 1 and -1 <= r["ari"] <= 1
    assert all(type(k) is int and type(v) is int for k, v in r["mapping"].items())


@pytest.mark.parametrize(
    "y_true,y_pred,match",
    [
        ([0, 1, 1], [0, 1], "equal length"),
        ([[0, 1]], [[0, 1]], "equal length"),
        ([0, -1, 1], [0, 1, 1], "non-negative"),
        ([0, 1, 1], [0, 1, -1], "non-negative"),
        ([], [], "empty"),
    ],
)
def test_evaluate_errors(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        evaluate(y_true, y_pred)


def test_hungarian_map_hand_case_where_greedy_matching_fails():
    # contingency (cluster x class): cluster 0 = {class 0: 3, class 1: 2}, cluster 1 = {class 0: 2}.
    # Greedy (largest count first) maps cluster 0 -> class 0 and scores 3 of 7; the best map
    # is cluster 0 -> class 1, cluster 1 -> class 0: 2 + 2 = 4 of 7
    y_true = np.array([0, 0, 0, 1, 1, 0, 0])
    y_pred = np.array([0, 0, 0, 0, 0, 1, 1])
    assert contingency(y_true, y_pred).tolist() == [[3, 2], [2, 0]]
    assert hungarian_map(y_true, y_pred) == {0: 1, 1: 0}
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(4 / 7)
