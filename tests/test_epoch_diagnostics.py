"""Per-epoch diagnostics (scl/epoch_diagnostics.py): hand-made cases with known answers, the
sample, and that a run with diagnostics on trains bit for bit as one with them off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scl.epoch_diagnostics import diagnostic_sample, epoch_diagnostics

ROOT = Path(__file__).resolve().parents[1]


def _blobs(n_per: int = 30, c: int = 3, d: int = 8, seed: int = 0):
    """c well-separated blobs along the first c axes (unit vectors + small noise)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(c), n_per)
    centres = np.eye(c, d) * 10.0
    x = centres[labels] + rng.normal(scale=0.1, size=(len(labels), d))
    return x.astype(np.float32), labels


def _onehot(labels, c):
    p = np.full((len(labels), c), 0.01, np.float32)
    p[np.arange(len(labels)), labels] = 0.98
    return p


def test_separable_blobs_and_a_perfect_head_score_one():
    x, y = _blobs()
    outs = {"backbone": x, "feat_target": x[:, ::-1].copy(), "prob_target": _onehot(y, 3)}
    d = epoch_diagnostics(outs, y, 3, seed=0, sample_size=1000, memory_assign=lambda f: y.copy())
    assert d == {"diag_sample": 90, "diag_head_acc": 1.0, "diag_kmeans_target_acc": 1.0,
                 "diag_kmeans_backbone_acc": 1.0, "diag_memory_acc": 1.0, "diag_head_kmeans_agreement": 1.0}


def test_permuted_head_is_matched_by_hungarian_and_a_collapsed_head_is_not():
    x, y = _blobs()
    perm = np.array([2, 0, 1])
    outs = {"backbone": x, "feat_target": x, "prob_target": _onehot(perm[y], 3)}
    d = epoch_diagnostics(outs, y, 3, seed=0, sample_size=1000)
    assert d["diag_head_acc"] == 1.0 and d["diag_head_kmeans_agreement"] == 1.0
    assert "diag_memory_acc" not in d  # no memory given
    collapsed = {**outs, "prob_target": _onehot(np.zeros_like(y), 3)}
    d = epoch_diagnostics(collapsed, y, 3, seed=0, sample_size=1000)
    # one cluster holds everything: one class in three is matched, and K-means agrees with it as little
    assert d["diag_head_acc"] == pytest.approx(1 / 3)
    assert d["diag_head_kmeans_agreement"] == pytest.approx(1 / 3)
    assert d["diag_kmeans_target_acc"] == 1.0


def test_memory_readings_are_scored_on_the_sample():
    x, y = _blobs(n_per=50)
    seen = []

    def assign(f):
        seen.append(len(f))
        return np.zeros(len(f), np.int64)  # every image to one cluster

    outs = {"backbone": x, "feat_target": x, "prob_target": _onehot(y, 3)}
    d = epoch_diagnostics(outs, y, 3, seed=1, sample_size=60, memory_assign=assign)
    idx = diagnostic_sample(150, 60, 1)
    assert seen == [60] and d["diag_sample"] == 60
    assert d["diag_memory_acc"] == pytest.approx(np.bincount(y[idx]).max() / 60)


def test_without_a_target_task_only_the_backbone_is_read():
    x, y = _blobs()
    d = epoch_diagnostics({"backbone": x, "feat_instance": x}, y, 3, seed=0, memory_assign=lambda f: f)
    assert set(d) == {"diag_sample", "diag_kmeans_backbone_acc"}


@pytest.mark.parametrize("n,size", [(10, 5000), (10_000, 500), (501, 500)])
def test_sample_is_deterministic_distinct_and_never_larger_than_the_limit(n, size):
    a, b = diagnostic_sample(n, size, 3), diagnostic_sample(n, size, 3)
    assert np.array_equal(a, b)
    assert len(a) == min(n, size) and len(np.unique(a)) == len(a)
    assert a.min() >= 0 and a.max() < n and (np.diff(a) > 0).all()
    if n > size:
        assert not np.array_equal(a, diagnostic_sample(n, size, 4))


def test_sample_refuses_a_non_positive_size():
    with pytest.raises(ValueError, match="diagnostics_sample"):
        diagnostic_sample(10, 0, 0)


def test_diagnostics_do_not_touch_torchs_global_rng():
    x, y = _blobs()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    epoch_diagnostics({"backbone": x, "feat_target": x, "prob_target": _onehot(y, 3)}, y, 3, seed=0)
    assert torch.equal(before, torch.get_rng_state())


def test_diagnostics_are_execution_settings():
    from scl.config import EXECUTION_SETTINGS, load_params, resolve, run_identity

    params = load_params(ROOT / "params.yaml")
    on = resolve(params, "digits", "scl", 0, {"diagnostics": True, "diagnostics_sample": 100})
    off = resolve(params, "digits", "scl", 0, {"diagnostics": False})
    assert {"diagnostics", "diagnostics_sample"} <= EXECUTION_SETTINGS
    assert run_identity(on) == run_identity(off)


@pytest.mark.slow
def test_a_run_with_diagnostics_trains_exactly_as_one_without(tmp_path):
    """Two epochs of digits with diagnostics on and off: same weights, same metrics.json, the
    same epoch records apart from the diag_* keys, which only the run with them has."""
    from scl.config import load_params, resolve
    from scl.data.prepared import load_prepared
    from scl.data.registry import prepare
    from scl.train import Trainer

    data = load_prepared(prepare("digits", tmp_path / "digits.npz"))
    params = load_params(ROOT / "params.yaml")
    runs = {}
    for flag in (True, False):
        s = resolve(params, "digits", "scl", 0, {"threads": 2, "epochs": 2, "diagnostics": flag,
                                                   "diagnostics_sample": 1000})
        t = Trainer(s, data, tmp_path / str(flag), progress=False)
        t.run()
        runs[flag] = t
    on, off = runs[True], runs[False]
    a, b = on.model.state_dict(), off.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "True/metrics.json").read_bytes() == (tmp_path / "False/metrics.json").read_bytes()
    log_on = [json.loads(x) for x in (tmp_path / "True/log.jsonl").read_text().splitlines()]
    log_off = [json.loads(x) for x in (tmp_path / "False/log.jsonl").read_text().splitlines()]
    for r_on, r_off in zip(log_on, log_off, strict=True):
        diag = {k for k in r_on if k.startswith("diag_")}
        assert diag >= {"diag_head_acc", "diag_kmeans_target_acc", "diag_kmeans_backbone_acc", "diag_memory_acc",
                        "diag_head_kmeans_agreement"}
        assert r_on["diag_sample"] == 1000
        assert not any(k.startswith("diag_") for k in r_off)
        keep = lambda r: {k: v for k, v in r.items() if not k.startswith("diag_") and "time" not in k  # noqa: E731
                          and k not in ("samples_per_s", "execution")}
        assert keep(r_on) == keep(r_off)
