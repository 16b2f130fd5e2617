"""The end-of-epoch clustering update (scl/cluster_state.py) on hand-computed cases:
eq. 5 refresh, eq. 6 label-change counts, ODC guard (a) class weights, guard (b), and the
memory refill. Milliseconds; no model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scl.cluster_state import ClusterState, reweight_task, start_from_kmeans, update_clusters
from scl.memory import SemanticMemory


def _probs(labels, c):
    """N x C probabilities whose argmax is `labels` (confidence 0.7)."""
    p = np.full((len(labels), c), 0.3 / (c - 1), np.float32)
    p[np.arange(len(labels)), labels] = 0.7
    return p


def _outs(task_labels: dict[str, list[int]], clusters: dict[str, int], dim: int = 2):
    outs = {}
    for t, y in task_labels.items():
        outs[f"prob_{t}"] = _probs(np.array(y), clusters[t])
        # features: member i of the batch is the unit vector at angle i (distinct, recognisable)
        ang = np.arange(len(y), dtype=np.float32)
        outs[f"feat_{t}"] = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    return outs


def _state(pseudo: dict[str, list[int]], counts):
    return ClusterState(pseudo={t: np.array(y, np.int64) for t, y in pseudo.items()},
                        class_weights={t: np.ones(max(y) + 1, np.float32) for t, y in pseudo.items()},
                        change_counts=np.array(counts, np.float32))


def _update(state, outs, clusters, **kw):
    kw = {"split_small": False, "min_cluster_ratio": 0.5, "split_seed": 0, **kw}
    return update_clusters(state, outs, clusters, **kw)


def test_eq5_labels_eq6_counts_and_the_log_record():
    clusters = {"target": 2}
    old = _state({"target": [0, 0, 0, 1, 1, 1]}, [1, 1, 3, 1, 1, 1])
    new_state, rec, raw = _update(old, _outs({"target": [0, 1, 0, 1, 1, 0]}, clusters), clusters)
    assert new_state.pseudo["target"].tolist() == [0, 1, 0, 1, 1, 0]
    assert raw["target"].tolist() == [0, 1, 0, 1, 1, 0]
    # eq. 6: s^e = s^{e-1} + 1[label changed]; samples 1 and 5 changed
    assert new_state.change_counts.tolist() == [1, 2, 3, 1, 1, 2]
    assert rec == {"changed_target": 2, "reseeded_target": 0, "sizes_target": [3, 3]}
    # the input state is not modified
    assert old.pseudo["target"].tolist() == [0, 0, 0, 1, 1, 1]
    assert old.change_counts.tolist() == [1, 1, 3, 1, 1, 1]


def test_counts_follow_the_target_task_only():
    clusters = {"target": 2, "under": 3}
    old = _state({"target": [0, 0, 1, 1], "under": [0, 1, 2, 2]}, [1, 1, 1, 1])
    # target: sample 3 changes; under: samples 0 and 1 change (not counted)
    outs = _outs({"target": [0, 0, 1, 0], "under": [1, 0, 2, 2]}, clusters)
    new_state, rec, _ = _update(old, outs, clusters)
    assert new_state.change_counts.tolist() == [1, 1, 1, 2]
    assert rec["changed_target"] == 1 and rec["changed_under"] == 2
    assert reweight_task(("under", "instance")) == "under"
    assert reweight_task(("instance",)) is None
    # under alone: its changes are counted
    only_under = _state({"under": [0, 1, 2, 2]}, [1, 1, 1, 1])
    s2, _, _ = _update(only_under, _outs({"under": [1, 0, 2, 2]}, {"under": 3}), {"under": 3})
    assert s2.change_counts.tolist() == [2, 2, 1, 1]


def test_class_weights_are_recomputed_from_the_new_labels():
    clusters = {"target": 2}
    old = _state({"target": [0, 0, 0, 1, 1, 1]}, [1] * 6)
    new_state, _, _ = _update(old, _outs({"target": [0, 0, 1, 1, 1, 1]}, clusters), clusters)
    # sizes 2 and 4: w ~ (1/2)^0.5, (1/4)^0.5 = 0.7071, 0.5, scaled to mean 1 over the 2 clusters
    w0, w1 = 0.5 ** 0.5, 0.5
    expected = [2 * w0 / (w0 + w1), 2 * w1 / (w0 + w1)]  # 1.1716, 0.8284
    assert new_state.class_weights["target"] == pytest.approx(expected, abs=1e-6)


def test_guard_b_reseeds_an_empty_cluster_and_counts_it():
    clusters = {"target": 3}
    old = _state({"target": [0, 0, 1, 1, 2, 2]}, [1] * 6)
    # eq. 5 puts nobody in cluster 2: guard (b) gives it half of the largest cluster
    new_state, rec, raw = _update(old, _outs({"target": [0, 0, 0, 1, 1, 1]}, clusters), clusters,
                                  split_small=True, min_cluster_ratio=0.5)
    assert rec["reseeded_target"] == 1
    assert rec["sizes_target"] == [3, 3, 0]  # sizes are those of eq. 5's labels
    assert raw["target"].tolist() == [0, 0, 0, 1, 1, 1]
    assert (new_state.pseudo["target"] == 2).sum() > 0
    assert rec["changed_target"] == int((new_state.pseudo["target"] != old.pseudo["target"]).sum())


def test_refill_rebuilds_each_bank_from_its_new_members():
    clusters = {"target": 2}
    mem = SemanticMemory(2, 3, 2, "random", torch.Generator().manual_seed(0))
    old = _state({"target": [0, 0, 0, 1, 1, 1]}, [1] * 6)
    outs = _outs({"target": [1, 1, 0, 0, 0, 1]}, clusters)
    _update(old, outs, clusters, refill_seed=7, memories={"target": mem})
    feats = torch.from_numpy(outs["feat_target"])
    for c, members in ((0, [2, 3, 4]), (1, [0, 1, 5])):
        got = {tuple(k.tolist()) for k in mem.fifo(c)}
        assert got == {tuple(feats[i].tolist()) for i in members}
    # no refill without a seed (refill_memory: false)
    mem2 = SemanticMemory(2, 3, 2, "random", torch.Generator().manual_seed(0))
    before = mem2.keys.clone()
    _update(old, outs, clusters, refill_seed=None, memories={"target": mem2})
    assert torch.equal(mem2.keys, before)


def test_initial_state_is_a_balanced_random_partition():
    s = ClusterState.initial(10, {"target": 2, "under": 5}, 1.0, seed=3)
    assert np.bincount(s.pseudo["target"]).tolist() == [5, 5]
    assert np.bincount(s.pseudo["under"]).tolist() == [2] * 5
    assert s.change_counts.tolist() == [1.0] * 10
    assert s.class_weights["under"].tolist() == [1.0] * 5
    again = ClusterState.initial(10, {"target": 2, "under": 5}, 1.0, seed=3)
    assert all(np.array_equal(s.pseudo[t], again.pseudo[t]) for t in s.pseudo)


def test_start_from_kmeans_finds_the_blobs_and_restarts_counts_weights_and_memory():
    """init_labels: kmeans: each task's labels are K-means on its own features (three tight
    blobs for the target task, two for under), the eq. 6 counts start again at s^0, the
    class weights follow the new sizes, and each bank is refilled from its cluster."""
    rng = np.random.default_rng(0)
    centres = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
    truth = np.repeat([0, 1, 2], [4, 3, 5])  # sizes 4, 3, 5
    feat = centres[truth] + 0.01 * rng.standard_normal((12, 2)).astype(np.float32)
    under_truth = (truth == 2).astype(int)
    outs = {"feat_target": feat, "feat_under": centres[[0, 2]][under_truth] + 0.01}
    clusters = {"target": 3, "under": 2}
    old = ClusterState.initial(12, clusters, 1.0, seed=0)
    old = ClusterState(old.pseudo, old.class_weights, np.arange(12, dtype=np.float32))  # counts moved on
    mem = SemanticMemory(3, 2, 2, "random", torch.Generator().manual_seed(0))
    new, rec = start_from_kmeans(old, outs, clusters, s0=1.0, seed=0, refill_seed=3, memories={"target": mem,
                                 "under": SemanticMemory(2, 2, 2, "random", torch.Generator().manual_seed(0))})
    for task, want in (("target", truth), ("under", under_truth)):
        got = new.pseudo[task]
        # the same partition up to a renaming of the clusters
        assert len({(a, b) for a, b in zip(got, want)}) == clusters[task], (task, got, want)
    assert sorted(rec["sizes_target"]) == [3, 4, 5]
    assert new.change_counts.tolist() == [1.0] * 12
    sizes = np.bincount(new.pseudo["target"], minlength=3)
    w = new.class_weights["target"]
    assert w[sizes.argmin()] > w[sizes.argmax()] and w.mean() == pytest.approx(1.0)
    for c in range(3):  # every key of bank c is the feature of a member of cluster c
        members = {tuple(feat[i].tolist()) for i in np.flatnonzero(new.pseudo["target"] == c)}
        assert {tuple(k.tolist()) for k in mem.fifo(c)} <= members
    assert old.change_counts[5] == 5.0  # the old state is untouched
