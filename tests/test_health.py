"""Run health: a diverged or collapsed result is named, a usable one is not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scl.health import failure_message, read_run_status, run_problems
from scl.metrics import evaluate

rng = np.random.default_rng(0)
LABELS = np.repeat(np.arange(10), 50)


def _scores(pred, labels=LABELS):
    m = evaluate(labels, pred)
    return {k: m[k] for k in ("acc", "nmi", "ari")}


def test_everything_in_one_cluster_is_a_collapse():
    pred = np.zeros(500, np.int64)
    problems = run_problems(pred, 10, LABELS, _scores(pred))
    assert any("collapsed: one cluster holds 500 of the 500 images (100.0%), 1 of 10" in p for p in problems)
    assert any(p.startswith("no signal: ARI 0.000 and NMI 0.000 are at chance level (ACC 0.100; the "
                            "largest class alone gives 0.100)") for p in problems)


def test_nearly_everything_in_one_cluster_is_a_collapse_without_labels():
    pred = np.zeros(500, np.int64)
    pred[:10] = np.arange(10)
    assert run_problems(pred, 10)[0].startswith("collapsed: one cluster holds 491 of the 500")


def test_a_random_assignment_has_no_signal_but_is_no_collapse():
    pred = rng.integers(0, 10, 500)
    problems = run_problems(pred, 10, LABELS, _scores(pred))
    assert len(problems) == 1 and problems[0].startswith("no signal")


def test_a_good_or_mediocre_clustering_is_a_result():
    good = LABELS.copy()
    assert run_problems(good, 10, LABELS, _scores(good)) == []
    mediocre = np.where(rng.random(500) < 0.5, LABELS, rng.integers(0, 10, 500))
    assert run_problems(mediocre, 10, LABELS, _scores(mediocre)) == []


def test_data_that_unbalanced_is_no_collapse():
    labels = np.r_[np.zeros(97, np.int64), np.ones(3, np.int64)]
    assert run_problems(labels.copy(), 2, labels, _scores(labels.copy(), labels)) == []


def test_non_finite_outputs_and_scores():
    pred = LABELS.copy()
    prob = np.full((500, 10), 0.1, np.float32)
    prob[3, 2] = np.nan
    problems = run_problems(pred, 10, LABELS, {"acc": float("nan")}, {"prob_target": prob})
    assert "1 non-finite values in the final prob_target (the run diverged)" in problems
    assert "acc is nan" in problems


def test_failure_message_names_the_fix():
    msg = failure_message(["collapsed: x"], lr=50.0)
    assert "collapsed: x" in msg and "lower lr (now 50.0)" in msg and "--restart" in msg


def test_read_run_status(tmp_path):
    assert read_run_status(tmp_path)[0] == "absent"
    (tmp_path / "metrics.json").write_text("")
    status, _, note = read_run_status(tmp_path)
    assert status == "unreadable" and "metrics.json is unreadable" in note
    (tmp_path / "metrics.json").write_text("[1]")
    assert read_run_status(tmp_path)[0] == "unreadable"
    (tmp_path / "metrics.json").write_text(json.dumps({"acc": 0.5}))
    assert read_run_status(tmp_path)[:2] == ("complete", {"acc": 0.5})
    (tmp_path / "metrics.json").write_text(json.dumps({"acc": 0.1, "status": "failed", "failure": ["collapsed"]}))
    assert read_run_status(tmp_path)[0::2] == ("failed", "collapsed")
