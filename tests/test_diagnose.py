"""scl diagnose: the k-NN probe against a loop, per-class recall by hand, and the command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scl.cli import main
from scl.data.prepared import save_prepared
from scl.report.diagnose import class_recall, knn_accuracy


def knn_loop(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Leave-one-out k-NN, one image at a time, written from the definition."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    correct = 0
    for i in range(len(x)):
        sims = [(float(x[i] @ x[j]), j) for j in range(len(x)) if j != i]
        sims.sort(key=lambda t: -t[0])
        votes = np.bincount([y[j] for _, j in sims[:k]], minlength=y.max() + 1)
        correct += int(np.argmax(votes) == y[i])  # argmax: ties to the smallest label
    return correct / len(x)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_accuracy_matches_a_loop(k):
    rng = np.random.default_rng(k)
    y = rng.integers(0, 3, 40)
    x = rng.normal(size=(40, 6)) + 1.5 * np.eye(6)[y]
    assert knn_accuracy(x, y, k=k, chunk=7) == pytest.approx(knn_loop(x, y, k))


def test_knn_separable_and_self_excluded():
    # two tight pairs: each image's only close neighbour is its twin, never itself
    x = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], np.float32)
    assert knn_accuracy(x, np.array([0, 0, 1, 1]), k=1) == 1.0
    assert knn_accuracy(x, np.array([0, 1, 0, 1]), k=1) == 0.0  # the twin always has the other label


def test_class_recall_hand_computed():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    pred = np.array([5, 5, 5, 7, 7, 7, 5, 9, 9])
    # Hungarian: 5 -> class 0 (3), 7 -> class 1 (2), 9 -> class 2 (2)
    assert class_recall(labels, pred) == {0: 0.75, 1: pytest.approx(2 / 3), 2: 1.0}
    # more classes than clusters: one of classes 1, 2 gets cluster 1, the other none (recall 0)
    r = class_recall(np.array([0, 0, 1, 2]), np.array([0, 0, 1, 1]))
    assert r[0] == 1.0 and sorted([r[1], r[2]]) == [0.0, 1.0]


def _fake_run(root, seed, rng, labels, spread):
    d = root / "toy" / "scl" / f"seed{seed}"
    d.mkdir(parents=True)
    centers = rng.normal(size=(3, 8)) * 4
    feats = centers[labels] + spread * rng.normal(size=(len(labels), 8))
    np.savez(d / "features.npz", backbone=feats.astype(np.float16), labels=labels)
    pred = labels.copy()
    pred[:5] = (pred[:5] + 1) % 3
    np.savez(d / "assignments.npz", pred=pred, labels=labels)
    (d / "metrics.json").write_text(json.dumps({"acc": 0.9, "nmi": 0.8, "ari": 0.7}))


def _two_fake_runs(tmp_path):
    """Seeds 0 and 1 of toy/scl under tmp_path/runs: 3 classes of 20, well-separated features."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    runs = tmp_path / "runs"
    for seed in (0, 1):
        _fake_run(runs, seed, rng, labels, spread=0.1)
    return rng, labels, runs


def test_scl_diagnose_writes_md_and_json(tmp_path, capsys):
    rng, labels, runs = _two_fake_runs(tmp_path)
    images = (rng.random((60, 4, 4, 1)) * 255).astype(np.uint8)
    data = save_prepared(tmp_path / "toy.npz", images, labels, ["a", "b", "c"])
    out = tmp_path / "out" / "diag"
    assert main(["diagnose", "--dataset", "toy", "--runs", str(runs), "--data", str(data), "--out", str(out)]) == 0
    doc = json.loads((tmp_path / "out" / "diag.json").read_text())
    assert [r["seed"] for r in doc["runs"]] == [0, 1]
    r = doc["runs"][0]
    assert r["head"]["acc"] == 0.9 and r["kmeans"]["acc"] == 1.0 and r["knn"] == 1.0  # well-separated features
    assert r["recall"]["0"] == 0.75  # 5 of class 0's 20 images moved to another cluster
    assert 0 < doc["raw_pixels"]["knn"] <= 1  # random pixels: the reference row is there
    md = (tmp_path / "out" / "diag.md").read_text()
    assert "raw pixels" in md and "| a |" in md and "scl seed 1" in md
    # --seeds picks runs; a dataset without runs fails with the command that makes them
    assert main(["diagnose", "--dataset", "toy", "--runs", str(runs), "--seeds", "1", "--no-pixels",
                 "--out", str(out)]) == 0
    assert [r["seed"] for r in json.loads((tmp_path / "out" / "diag.json").read_text())["runs"]] == [1]
    capsys.readouterr()
    assert main(["diagnose", "--dataset", "other", "--runs", str(runs), "--out", str(out)]) == 2
    assert "scl train --dataset other" in capsys.readouterr().err


def test_scl_diagnose_shows_the_per_epoch_diagnostics_of_log_jsonl(tmp_path, capsys):
    """A run whose log.jsonl holds diag_* readings gets a per-epoch table; one without, none."""
    _, _, runs = _two_fake_runs(tmp_path)
    log = [{"epoch": 1, "loss": 2.0, "diag_sample": 60, "diag_head_acc": 0.25, "diag_kmeans_target_acc": 0.625,
            "diag_kmeans_backbone_acc": 0.5, "diag_memory_acc": 0.375, "diag_head_kmeans_agreement": 0.125},
           {"epoch": 2, "loss": 1.5},  # an epoch that was not evaluated
           {"epoch": 3, "loss": 1.0, "diag_sample": 60, "diag_head_acc": 0.75, "diag_kmeans_backbone_acc": 0.5}]
    (runs / "toy" / "scl" / "seed0" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    out = tmp_path / "diag"
    assert main(["diagnose", "--dataset", "toy", "--runs", str(runs), "--no-pixels", "--out", str(out)]) == 0
    doc = json.loads((tmp_path / "diag.json").read_text())
    assert [e["epoch"] for e in doc["runs"][0]["epochs"]] == [1, 3]
    assert doc["runs"][0]["epochs"][0]["diag_memory_acc"] == 0.375
    assert doc["runs"][1]["epochs"] == []  # no log.jsonl
    md = (tmp_path / "diag.md").read_text()
    assert "Per-epoch diagnostics, scl seed 0 (ACC on a sample of 60 images" in md
    assert "Per-epoch diagnostics, scl seed 1" not in md
    assert "| 1 | 0.250 | 0.625 | 0.500 | 0.375 | 0.125 |" in md
    assert "| 3 | 0.750 |  | 0.500 |  |  |" in md
    capsys.readouterr()
