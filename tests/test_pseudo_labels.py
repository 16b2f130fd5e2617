"""Pseudo-label refresh (eq. 5), change counts (eq. 6) and ODC's imbalance guards."""

from __future__ import annotations

import numpy as np
import pytest

from scl import pseudo_labels as pl


# ----------------------------------------------------------------- eq. 5
def test_refresh_is_argmax_and_max_prob():
    scores = np.array(
        [
            [0.1, 0.7, 0.2],
            [0.5, 0.2, 0.3],
            [0.05, 0.15, 0.8],
            [0.3, 0.3, 0.4],
        ]
    )
    labels, conf = pl.refresh(scores)
    assert labels.tolist() == [1, 0, 2, 2]
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(conf, [0.7, 0.5, 0.8, 0.4])


def test_refresh_random_scores():
    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(5), size=50)
    labels, conf = pl.refresh(scores)
    for i in range(50):
        assert scores[i, labels[i]] == conf[i] == max(scores[i])


# ----------------------------------------------------------------- eq. 6
def test_change_counts_hand_case():
    s0 = np.ones(5, dtype=np.float32)  # s^0 = 1 (spec section 7)
    e1_old = np.array([0, 1, 2, 0, 1])
    e1_new = np.array([0, 2, 2, 1, 1])  # samples 1 and 3 change
    s1 = pl.update_change_counts(s0, e1_old, e1_new)
    assert s1.tolist() == [1, 2, 1, 2, 1]
    assert s1.dtype == np.float32
    e2_new = np.array([1, 2, 0, 1, 1])  # samples 0 and 2 change
    s2 = pl.update_change_counts(s1, e1_new, e2_new)
    assert s2.tolist() == [2, 2, 2, 2, 1]
    assert s0.tolist() == [1] * 5  # not modified in place


def test_change_counts_no_change():
    s = np.array([3, 1, 2])
    y = np.array([2, 0, 1])
    assert pl.update_change_counts(s, y, y.copy()).tolist() == [3, 1, 2]


# ----------------------------------------------------------------- initial partition
@pytest.mark.parametrize("n,C", [(100, 10), (103, 10), (7, 3), (20, 20)])
def test_random_partition_balanced(n, C):
    labels = pl.random_partition(n, C, np.random.default_rng(0))
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < C
    counts = np.bincount(labels, minlength=C)
    assert counts.max() - counts.min() <= 1
    assert counts.sum() == n


def test_random_partition_seeded():
    a = pl.random_partition(200, 7, np.random.default_rng(42))
    b = pl.random_partition(200, 7, np.random.default_rng(42))
    c = pl.random_partition(200, 7, np.random.default_rng(43))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, np.arange(200) % 7)  # actually shuffled


# ----------------------------------------------------------------- guard (a)
def test_balanced_class_weights_hand_case():
    labels = np.array([0] + [1] * 4 + [2] * 16)  # n = 1, 4, 16
    w = pl.balanced_class_weights(labels, 3)
    # (1/n)^0.5 = 1, 1/2, 1/4; sum 1.75; scaled to mean 1: x 3/1.75
    np.testing.assert_allclose(w, np.array([1.0, 0.5, 0.25]) * 3 / 1.75, rtol=1e-6)
    assert w.mean() == pytest.approx(1.0, rel=1e-6)
    assert w[0] / w[2] == pytest.approx(4.0, rel=1e-6)


def test_balanced_class_weights_uniform_and_empty():
    assert np.allclose(pl.balanced_class_weights(np.repeat(np.arange(4), 5), 4), 1.0)
    w = pl.balanced_class_weights(np.array([0, 0, 0, 0, 1]), 3)  # cluster 2 empty: treated as n = 1
    np.testing.assert_allclose(w, np.array([0.5, 1.0, 1.0]) * 3 / 2.5, rtol=1e-6)
    assert w.mean() == pytest.approx(1.0, rel=1e-6)


# ----------------------------------------------------------------- guard (b)
def bimodal_case():
    """Cluster 0: 2 members (tiny); cluster 1: 200 members in two far-apart modes;
    clusters 2 and 3: 60 members each."""
    rng = np.random.default_rng(0)
    feats, labels = [], []
    feats.append(rng.normal([0, 20], 0.1, size=(2, 2)))
    labels += [0] * 2
    feats.append(rng.normal([10, 0], 0.3, size=(100, 2)))  # mode A of cluster 1
    feats.append(rng.normal([-10, 0], 0.3, size=(100, 2)))  # mode B of cluster 1
    labels += [1] * 200
    feats.append(rng.normal([0, 10], 0.3, size=(60, 2)))
    labels += [2] * 60
    feats.append(rng.normal([0, -10], 0.3, size=(60, 2)))
    labels += [3] * 60
    features = np.concatenate(feats)
    labels = np.array(labels)
    scores = np.full((len(labels), 4), 0.05)
    scores[np.arange(len(labels)), labels] = 0.85
    # the tiny cluster's members: own cluster best, then cluster 3, then 1, then 2
    scores[:2] = [0.6, 0.15, 0.05, 0.2]
    return labels, scores, features


def test_split_small_clusters_bimodal_case():
    labels, scores, features = bimodal_case()
    min_size = 20
    new, reseeded = pl.split_small_clusters(labels, scores, features, min_size, seed=0)
    assert reseeded == 1
    sizes = np.bincount(new, minlength=4)
    assert sizes.min() >= min_size
    assert sizes.sum() == len(labels)
    # the tiny cluster's members went to their best non-small cluster (3, not 1 or 2)
    assert new[:2].tolist() == [3, 3]
    # the huge cluster was split exactly along its two modes; one mode took id 0
    mode_a, mode_b = new[2:102], new[102:202]
    assert len(set(mode_a)) == 1 and len(set(mode_b)) == 1
    assert {int(mode_a[0]), int(mode_b[0])} == {0, 1}
    # the other clusters are untouched
    assert (new[202:262] == 2).all() and (new[262:] == 3).all()
    assert sizes.tolist() == [100, 100, 60, 62]
    # input not modified
    assert (labels[:2] == 0).all()


def test_split_small_clusters_empty_cluster_gets_reseeded():
    labels, scores, features = bimodal_case()
    labels = labels.copy()
    labels[:2] = 3  # cluster 0 now has no member at all
    new, reseeded = pl.split_small_clusters(labels, scores, features, 20, seed=0)
    assert reseeded == 1
    assert np.bincount(new, minlength=4).min() >= 20


def test_split_small_clusters_several_small():
    rng = np.random.default_rng(1)
    # 4 well-separated modes all labelled 0; clusters 1 and 2 have 1 member each
    centres = np.array([[10, 10], [10, -10], [-10, 10], [-10, -10]])
    features = np.concatenate([rng.normal(c, 0.2, size=(50, 2)) for c in centres] + [rng.normal(0, 0.2, size=(2, 2))])
    labels = np.array([0] * 200 + [1, 2])
    scores = np.full((202, 3), 1 / 3)
    new, reseeded = pl.split_small_clusters(labels, scores, features, min_size=30, seed=0)
    assert reseeded == 2
    sizes = np.bincount(new, minlength=3)
    assert sizes.min() >= 30 and sizes.sum() == 202


def test_split_small_clusters_noop_when_nothing_small():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 30)
    scores = rng.dirichlet(np.ones(3), size=90)
    features = rng.normal(size=(90, 4))
    new, reseeded = pl.split_small_clusters(labels, scores, features, min_size=30)
    assert reseeded == 0
    assert np.array_equal(new, labels)
    new[0] = 2
    assert labels[0] == 0  # a copy, not the input


def test_split_small_clusters_noop_when_everything_small():
    labels = np.array([0, 1, 2])
    new, reseeded = pl.split_small_clusters(labels, np.eye(3), np.eye(3), min_size=5)
    assert reseeded == 0 and np.array_equal(new, labels)


def test_min_cluster_size():
    assert pl.min_cluster_size(1000, 10, 0.2) == 20
    assert pl.min_cluster_size(1797, 10, 0.2) == 35  # floor(35.94)
    assert pl.min_cluster_size(100, 3, 0.0) == 0
    assert pl.min_cluster_size(60000, 20, 1.0) == 3000


def _moons_on_the_sphere(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half-moons placed on the unit sphere of 16-d (as the tasks' features are
    L2-normalised; the moons sit on a plane at distance 3 from the origin, so normalising keeps
    their shape): connected, non-convex classes that K-means cuts across."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n, noise=0.05, random_state=seed)
    f = np.hstack([x, np.full((n, 1), 3.0), np.zeros((n, 13))])
    return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32), y


def test_umap_kmeans_separates_non_convex_classes_that_kmeans_cuts():
    """init_labels: umap_kmeans (ours, issue 10): K-means on a UMAP embedding follows the
    k-NN graph, so it recovers the two moons, where K-means on the features themselves splits
    them across the middle."""
    from sklearn.metrics import adjusted_rand_score

    f, y = _moons_on_the_sphere()
    plain = adjusted_rand_score(y, pl.kmeans_partition(f, 2, 0))
    umap_km = pl.umap_kmeans_partition(f, 2, 0)
    assert adjusted_rand_score(y, umap_km) > 0.95 and plain < 0.6, (plain, adjusted_rand_score(y, umap_km))
    assert umap_km.dtype == np.int64 and set(umap_km.tolist()) == {0, 1}
    assert np.array_equal(umap_km, pl.umap_kmeans_partition(f, 2, 0))  # seeded: the same start every time


def test_umap_kmeans_falls_back_to_kmeans_on_too_few_points():
    f = np.eye(6, dtype=np.float32)[[0, 0, 1, 1, 2, 2]] + 0.01 * np.arange(6)[:, None]
    assert np.array_equal(pl.umap_kmeans_partition(f, 3, 0), pl.kmeans_partition(f, 3, 0))
    assert set(pl.START_PARTITIONS) == {"kmeans", "umap_kmeans"}


def test_umap_embedding_runs_in_a_child_and_its_failure_names_the_fix():
    """The embedding runs in a child process (numba's OpenMP pool must not start in the
    trainer's); a failure there comes back as an error that says what to do, not a hang."""
    from scl.umap_embedding import embed, embed_in_child

    f, _ = _moons_on_the_sphere(200)
    assert np.array_equal(embed_in_child(f, 10, 0), embed(f, 10, 0))  # the same numbers as in-process
    with pytest.raises(RuntimeError, match="(?s)UMAP embedding of init_labels: umap_kmeans failed.*Input contains NaN.*init_labels: kmeans"):
        embed_in_child(np.full((50, 4), np.nan, np.float32), 10, 0)


def test_align_labels_renames_a_permuted_partition_back():
    """A pure renaming of the reference comes back as the reference itself."""
    ref = np.array([0, 0, 1, 1, 2, 2])
    assert pl.align_labels(np.array([2, 2, 0, 0, 1, 1]), ref, 3).tolist() == ref.tolist()


def test_align_labels_hand_case_with_overlap_and_an_empty_cluster():
    """new cluster 1 = {0, 1, 2} overlaps reference 3 on 2 samples, 0 on 1; new cluster 0 =
    {3, 4} lies in reference 0; new 2 = {5} too. One-to-one: 1 -> 3 (2 shared), 0 -> 0 (2),
    and 2 must take a free index: of 1 and 2 (0 overlap each), the Hungarian solver's pick;
    the partition itself is unchanged (same groups), only its names move."""
    labels = np.array([1, 1, 1, 0, 0, 2])
    ref = np.array([3, 3, 0, 0, 0, 0])
    out = pl.align_labels(labels, ref, 4)
    assert out[:3].tolist() == [3, 3, 3] and out[3:5].tolist() == [0, 0]
    assert out[5] in (1, 2)
    # the same partition: equal labels stay equal, different stay different
    assert ((labels[:, None] == labels[None, :]) == (out[:, None] == out[None, :])).all()


def test_align_labels_maximises_agreement_over_every_renaming():
    """On random labels, no renaming (all 4! = 24) agrees with the reference more often."""
    import itertools

    rng = np.random.default_rng(0)
    labels, ref = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    best = max((np.array(p)[labels] == ref).sum() for p in itertools.permutations(range(4)))
    assert (pl.align_labels(labels, ref, 4) == ref).sum() == best
