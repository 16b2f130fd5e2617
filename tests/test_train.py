"""Training runs on the real `digits` data: learning, resume, kill-and-resume, CLI errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scl.config import load_params, resolve
from scl.data.prepared import load_prepared
from scl.data.registry import prepare
from scl.train import Trainer, TrainingError, train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory) -> Path:
    return prepare("digits", tmp_path_factory.mktemp("data") / "digits.npz")


@pytest.fixture(scope="session")
def params():
    return load_params(ROOT / "params.yaml")


def _settings(params, **overrides):
    return resolve(params, "digits", "scl", 0, {"threads": 2, **overrides})


@pytest.mark.slow
def test_short_digits_run_improves_on_its_first_epoch(params, digits_npz, tmp_path):
    metrics = train(_settings(params, epochs=6), load_prepared(digits_npz), tmp_path, progress=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[-1]["acc"] > log[0]["acc"] + 0.15, [r["acc"] for r in log]
    assert set(metrics) >= {"acc", "nmi", "ari", "tasks"}
    assert set(metrics["tasks"]) == {"target", "under"}
    assert metrics["acc"] == pytest.approx(log[-1]["acc"])
    for name in ("checkpoint.pt", "assignments.npz", "features_init.npz", "features.npz", "metrics.json"):
        assert (tmp_path / name).exists(), name
    with np.load(tmp_path / "assignments.npz") as a:
        assert a["pred"].shape == (1797,) and a["conf"].shape == (1797,)
        assert ((a["conf"] > 0) & (a["conf"] <= 1)).all()
    with np.load(tmp_path / "features.npz") as f:
        assert f["backbone"].shape[0] == 1797 and f["feat_target"].shape == (1797, 128)
    # no temporary file is left behind
    assert not list(tmp_path.glob("*.tmp"))


def _state(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(params, digits_npz, tmp_path):
    data = load_prepared(digits_npz)
    settings = _settings(params, epochs=3)
    full = Trainer(settings, data, tmp_path / "full", progress=False)
    full_metrics = full.run()

    first = Trainer(settings, data, tmp_path / "split", progress=False)
    assert first.run(stop_after_epoch=1) is None
    assert not (tmp_path / "split" / "metrics.json").exists()
    second = Trainer(settings, data, tmp_path / "split", progress=False)
    resumed_metrics = second.run()

    assert resumed_metrics["acc"] == full_metrics["acc"]
    assert resumed_metrics["nmi"] == full_metrics["nmi"]
    a, b = _state(full.model), _state(second.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert strip(full.records) == strip(second.records)


def strip(records):
    """Epoch records without what depends on the process (times, the execution choice)."""
    return [{k: v for k, v in r.items() if "time" not in k and k not in ("samples_per_s", "execution")} for r in records]


@pytest.mark.slow
def test_checkpoint_every_k_epochs_resumes_to_the_same_result(params, digits_npz, tmp_path):
    """checkpoint_every=2: an interruption after epoch 3 loses epoch 3 (not yet saved), and
    the resumed run replays it and ends exactly where an uninterrupted run ends."""
    data = load_prepared(digits_npz)
    settings = _settings(params, epochs=4, checkpoint_every=2)
    full = Trainer(settings, data, tmp_path / "full", progress=False)
    full_metrics = full.run()
    first = Trainer(settings, data, tmp_path / "split", progress=False)
    assert first.run(stop_after_epoch=3) is None
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["epoch"] == 2
    assert len((tmp_path / "split" / "log.jsonl").read_text().splitlines()) == 3  # the log goes on every epoch
    second = Trainer(settings, data, tmp_path / "split", progress=False)
    resumed_metrics = second.run()
    for k in ("acc", "nmi", "ari", "cluster_sizes"):
        assert resumed_metrics[k] == full_metrics[k], k
    a, b = _state(full.model), _state(second.model)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert strip(full.records) == strip(second.records)


def test_checkpoint_of_other_settings_is_refused(params, digits_npz, tmp_path):
    data = load_prepared(digits_npz)
    Trainer(_settings(params, epochs=2), data, tmp_path, progress=False).run(stop_after_epoch=1)
    with pytest.raises(TrainingError, match="other settings"):
        Trainer(_settings(params, epochs=2, lr=0.5), data, tmp_path, progress=False).run()


def test_non_finite_loss_stops_with_a_clear_error(params, digits_npz, tmp_path):
    data = load_prepared(digits_npz)
    # an absurd learning rate blows the weights up within an epoch; the device-side flag
    # (scl.tally) is read at the end of the epoch, and the error still names the epoch, the
    # first bad step, its terms and the fix; no checkpoint is written after it
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 1, step \d+: loss=.*mi_instance=.*lower lr"):
        Trainer(_settings(params, epochs=2, lr=1e12, split_small=False), data, tmp_path, progress=False).run()
    assert not (tmp_path / "checkpoint.pt").exists()


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "scl", *args], capture_output=True, text=True, cwd=ROOT, **kw)


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_result(digits_npz, tmp_path):
    common = ["train", "--dataset", "digits", "--data", str(digits_npz), "--no-progress",
              "--set", "epochs=4", "--set", "threads=2"]
    reference = _cli(*common, "--out", str(tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr
    # the run's log (stdout) says what amp / channels_last were chosen and why
    assert json.loads(reference.stdout.splitlines()[-1])["execution"]["amp_why"] == "amp=off as set"

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "scl", *common, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "log.jsonl").exists():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-epoch 2 (or later), no chance to clean up
    proc.wait()
    assert not (out / "metrics.json").exists()
    resumed = _cli(*common, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    got = json.loads((out / "metrics.json").read_text())
    for k in ("acc", "nmi", "ari", "cluster_sizes"):
        assert got[k] == ref[k], k
    assert len((out / "log.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "epochs=-1"], "epochs"),
        (["--set", "epochs=ten"], "epochs"),
        (["--set", "epoch=3"], "did you mean 'epochs'"),
        (["--set", "nonsense"], "KEY=VALUE"),
        (["--variant", "nope"], "unknown variant"),
        (["--set", "backbone=vgg"], "backbone"),
    ],
)
def test_bad_settings_stop_before_any_work(args, message, digits_npz, tmp_path):
    out = tmp_path / "run"
    r = _cli("train", "--dataset", "digits", "--data", str(digits_npz), "--out", str(out), *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert not out.exists()


def test_unknown_dataset_is_a_clear_error(tmp_path):
    r = _cli("train", "--dataset", "mnist", "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "unknown dataset 'mnist'" in r.stderr


def test_missing_data_file_names_the_fix(tmp_path):
    r = _cli("train", "--dataset", "cifar10", "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "scl prepare" in r.stderr


def test_classifiers_get_their_own_learning_rate(params, digits_npz, tmp_path):
    tr = Trainer(_settings(params, epochs=1, classifier_lr_mult=10.0), load_prepared(digits_npz), tmp_path, progress=False)
    encoder_group, head_group = tr.opt.param_groups
    head_params = {id(p) for p in tr.model.classifiers.parameters()}
    assert {id(p) for p in head_group["params"]} == head_params
    assert not head_params & {id(p) for p in encoder_group["params"]}
    tr.run()
    assert head_group["lr"] == pytest.approx(10.0 * encoder_group["lr"])


@pytest.mark.parametrize("init", ["kmeans", "umap_kmeans"])
def test_warmup_epochs_keep_the_random_partition_then_start_from_kmeans(params, digits_npz, tmp_path, init):
    """cluster_warmup_epochs=2, init_labels=kmeans: epochs 1-2 are instance discrimination
    (no CD loss, the random partition untouched), the partition clustering starts from is
    K-means on the target-task features after epoch 2 (logged as such), and epoch 3 clusters.
    With umap_kmeans the start is K-means on a UMAP embedding of those features."""
    from scl.pseudo_labels import START_PARTITIONS
    from scl.metrics import evaluate

    data = load_prepared(digits_npz)
    settings = _settings(params, epochs=3, cluster_warmup_epochs=2, init_labels=init)
    tr = Trainer(settings, data, tmp_path, progress=False)
    initial = {t: v.copy() for t, v in tr.state.pseudo.items()}
    tr.run(stop_after_epoch=1)
    assert all(np.array_equal(tr.state.pseudo[t], initial[t]) for t in initial)
    tr.run(stop_after_epoch=2)
    start = START_PARTITIONS[init](tr._infer_all()["feat_target"], 10, 0)
    assert np.array_equal(tr.state.pseudo["target"], start)
    assert tr.state.change_counts.tolist() == [1.0] * len(data)
    tr.run()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r.get("warmup", False) for r in log] == [True, True, False]
    assert [r["cd_target"] for r in log[:2]] == [0.0, 0.0] and log[2]["cd_target"] > 0
    assert "init_labels" not in log[0] and log[1]["init_labels"] == init
    # epoch 2's score is that of the K-means partition clustering starts from
    assert log[1]["acc"] == pytest.approx(evaluate(data.labels, start)["acc"])
    assert log[1]["acc"] > 0.4 and log[0]["acc"] < 0.2  # K-means on learnt features vs a random partition


@pytest.mark.slow
@pytest.mark.parametrize("warmup,init,relabel,stop", [(2, "kmeans", [], 1), (2, "kmeans", [], 2),
                                                     (0, "kmeans", [], 1), (2, "umap_kmeans", [], 2),
                                                     (1, "kmeans", [2], 2)])
def test_warmup_and_kmeans_start_resume_exactly(params, digits_npz, tmp_path, warmup, init, relabel, stop):
    """An interruption inside the warm-up, right after the K-means start, (without warm-up)
    after the K-means start on the initial features, or right after a `relabel_epochs` relabel
    (its partition lives in the checkpoint) resumes to the uninterrupted run."""
    data = load_prepared(digits_npz)
    settings = _settings(params, epochs=3, cluster_warmup_epochs=warmup, init_labels=init, relabel_epochs=relabel)
    full = Trainer(settings, data, tmp_path / "full", progress=False)
    full_metrics = full.run()
    Trainer(settings, data, tmp_path / "split", progress=False).run(stop_after_epoch=stop)
    second = Trainer(settings, data, tmp_path / "split", progress=False)
    assert second.run()["acc"] == full_metrics["acc"]
    a, b = _state(full.model), _state(second.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert strip(full.records) == strip(second.records)


@pytest.mark.parametrize("moved", [{"epochs": 2, "init_labels": "umap_kmeans"},
                                   {"epochs": 3, "init_labels": "kmeans", "relabel_epochs": [2]}])
def test_a_run_without_clustered_tasks_never_reaches_the_start(params, digits_npz, tmp_path, moved):
    """MoCo and the instance-only ablation have no pseudo-labels, so neither `init_labels` nor
    `relabel_epochs` can move them: they train bit for bit as with the random partition. (Why
    the fashion set's MoCo and instance-only runs were not retrained when its start became
    umap_kmeans, and need not be when it takes a relabel.)"""
    data = load_prepared(digits_npz)
    runs = {}
    for name, overrides in (("random", {"epochs": moved["epochs"], "init_labels": "random"}), ("moved", moved)):
        tr = Trainer(_settings(params, tasks=["instance"], reweight=False, cluster_warmup_epochs=1, **overrides),
                     data, tmp_path / name, progress=False)
        tr.run()
        runs[name] = tr
    a, b = _state(runs["random"].model), _state(runs["moved"].model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert strip(runs["random"].records) == strip(runs["moved"].records)
    assert not any("init_labels" in r or "relabel" in r for r in runs["moved"].records)


def test_relabel_epochs_start_the_labels_again_from_kmeans_on_that_epochs_features(params, digits_npz, tmp_path):
    """relabel_epochs=[2] (ours, issue 10): after epoch 2's own eq. 5 refresh, the target and
    under-clustering labels are replaced by K-means (init_labels) on epoch 2's features, with
    a seed of that epoch, its clusters named after the head's classes; the eq. 6 counts start
    again at s^0; epoch 2's log scores the new partition (`acc`) and the eq. 5 labels it
    replaced (`relabel_from_acc`); epoch 3 trains on the new partition and refreshes it by
    eq. 5 again."""
    from scl.metrics import evaluate
    from scl.pseudo_labels import START_PARTITIONS, align_labels, refresh

    data = load_prepared(digits_npz)
    settings = _settings(params, epochs=3, cluster_warmup_epochs=1, init_labels="kmeans", relabel_epochs=[2])
    tr = Trainer(settings, data, tmp_path, progress=False)
    tr.run(stop_after_epoch=2)
    outs = tr._infer_all()
    start = {}
    for task, c in (("target", 10), ("under", 5)):
        head, _ = refresh(outs[f"prob_{task}"])  # the head's labels after epoch 2, before the relabel
        start[task] = align_labels(START_PARTITIONS["kmeans"](outs[f"feat_{task}"], c, 0 + 2), head, c)
        assert np.array_equal(tr.state.pseudo[task], start[task])
    assert tr.state.change_counts.tolist() == [1.0] * len(data)
    eq5, _ = refresh(outs["prob_target"])
    assert not np.array_equal(eq5, tr.state.pseudo["target"])
    # renamed to the head's classes: agreeing with them more than the overlap any renaming gets by chance
    assert (eq5 == tr.state.pseudo["target"]).mean() > 0.5
    tr.run()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r.get("relabel") for r in log] == [None, "kmeans", None]
    assert log[1]["acc"] == pytest.approx(evaluate(data.labels, start["target"])["acc"])
    assert log[1]["relabel_from_acc"] == pytest.approx(evaluate(data.labels, eq5)["acc"])
    assert log[2]["changed_target"] > 0 and "relabel_from_acc" not in log[2]


@pytest.mark.parametrize("overrides,match", [
    ({"init_labels": "random", "relabel_epochs": [2]}, r"relabel_epochs \[2\] start the labels again from "
                                                        r"init_labels, which is random"),
    ({"init_labels": "kmeans", "cluster_warmup_epochs": 2, "relabel_epochs": [2, 4]},
     r"relabel_epochs \[2\] must lie after the warm-up .* choose epochs in 3\.\.4"),
    ({"init_labels": "kmeans", "relabel_epochs": [5]}, r"relabel_epochs \[5\] must lie .*before the last epoch"),
    ({"init_labels": "kmeans", "relabel_epochs": [0]}, r"relabel_epochs"),
    ({"init_labels": "kmeans", "relabel_epochs": [2, 2]}, r"relabel_epochs"),
    ({"init_labels": "kmeans", "relabel_epochs": 2}, r"relabel_epochs"),
])
def test_relabel_epochs_are_checked_before_any_work(params, overrides, match):
    from scl.config import ConfigError

    with pytest.raises(ConfigError, match=match):
        _settings(params, epochs=5, **overrides)


def test_relabel_epochs_survive_the_settings_json(params):
    """The workflow hands `scl train` its settings as JSON: the schedule comes back as the
    same (frozen) tuple, and a schedule the checks refuse is refused there too."""
    from scl.config import ConfigError, settings_from_json, settings_to_json

    s = _settings(params, epochs=5, cluster_warmup_epochs=1, init_labels="kmeans", relabel_epochs=[4, 2])
    assert s.train.relabel_epochs == (4, 2)
    assert settings_from_json(settings_to_json(s)) == s
    bad = json.loads(settings_to_json(s))
    bad["train"]["relabel_epochs"] = [5]
    with pytest.raises(ConfigError, match="before the last epoch"):
        settings_from_json(json.dumps(bad))


def test_warmup_must_leave_a_clustering_epoch(params):
    from scl.config import ConfigError

    with pytest.raises(ConfigError, match="cluster_warmup_epochs 3 leaves no clustering epoch"):
        _settings(params, epochs=3, cluster_warmup_epochs=3)
    with pytest.raises(ConfigError, match="init_labels"):
        _settings(params, init_labels="spectral")


def test_eval_crop_reaches_the_head_and_scl_assign(params, digits_npz, tmp_path):
    """`eval_crop` (ours, issue 10) is the un-augmented path of the whole run: the final
    assignments come from centre-cropped images, and `scl assign` (load_run) reads the same
    setting from the checkpoint, so it reproduces them; labelling the whole images instead
    gives other probabilities (the setting is not a no-op)."""
    from scl.assign import head_probabilities, load_run
    from scl.augment import build_eval_transform

    data = load_prepared(digits_npz)
    train(_settings(params, epochs=1, eval_crop=0.5), data, tmp_path, progress=False)
    head = load_run(tmp_path, device="cpu")
    assert head.eval_tf.crop == 0.5
    probs = head_probabilities(head, data.images)
    with np.load(tmp_path / "assignments.npz") as a:
        np.testing.assert_array_equal(probs.argmax(1), a["pred"])
    head.eval_tf = build_eval_transform("digits", 8, 1)  # the whole image
    assert not np.allclose(head_probabilities(head, data.images), probs, atol=1e-3)


def test_load_run_of_a_run_without_head_needs_require_head_false(params, digits_npz, tmp_path):
    """`scl assign` needs the target head, so load_run refuses a MoCo run by default; the
    workflow scripts that read backbone features (eval_crop_check) load it with
    require_head=False, with the run's own eval path."""
    from scl.assign import AssignError, load_run

    data = load_prepared(digits_npz)
    train(_settings(params, epochs=1, tasks=["instance"], reweight=False, eval_crop=0.75), data, tmp_path,
          progress=False)
    with pytest.raises(AssignError, match="no target task"):
        load_run(tmp_path, device="cpu")
    run = load_run(tmp_path, device="cpu", require_head=False)
    assert run.eval_tf.crop == 0.75 and run.settings["train"]["tasks"] == ["instance"]
    out = run.model.infer(run.eval_tf(torch.from_numpy(data.images[:4]).permute(0, 3, 1, 2).contiguous()))
    assert out["backbone"].shape[0] == 4 and "prob_target" not in out


def test_kmeans_start_crop_check_reads_the_start_the_run_took(digits_npz, tmp_path, monkeypatch):
    """workflow/scripts/kmeans_start_crop_check.py (issue 10) trains only the warm-up of a run and
    scores K-means on its target-task features at each crop: at the crop the run trains with,
    that is the start the run itself took (its first epoch's logged ACC, bit for bit)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("kscc", ROOT / "workflow/scripts/kmeans_start_crop_check.py")
    kscc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kscc)
    monkeypatch.chdir(ROOT)  # the script reads ./params.yaml, as `scl` does
    out = tmp_path / "out.json"
    assert kscc.main(["--dataset", "digits", "--seeds", "0", "--data", str(digits_npz), "--runs", str(tmp_path / "runs"),
                      "--out", str(out), "--crops", "1", "0.75", "--set", "cluster_warmup_epochs=1",
                      "--set", "init_labels=kmeans", "--set", "epochs=3", "--set", "threads=1"]) == 0
    log = [json.loads(line) for line in (tmp_path / "runs/seed0/log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1] and log[0]["init_labels"] == "kmeans"  # the warm-up only
    assert not (tmp_path / "runs/seed0/metrics.json").exists()
    (row,) = json.loads(out.read_text())
    assert row["warmup_epochs"] == 1 and set(row["read_at"]) == {"1.0", "0.75"}
    assert row["read_at"]["1.0"]["kmeans_start_acc"] == log[0]["acc"]
    assert 0.1 < row["read_at"]["0.75"]["kmeans_start_acc"] < 1
