"""`scl train` against bad files, bad settings and process faults: each case is the fault
itself (a crafted checkpoint, flipped bytes, a full disk, Ctrl-C, a second process ...),
and each must end with a clear message and the documented exit code (scl/errors.py)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import scl.io
from scl.checkpoint import digest_path, load_checkpoint, save_checkpoint
from scl.cli import main
from scl.config import load_params, resolve
from scl.data.prepared import load_prepared, save_prepared
from scl.data.registry import prepare
from scl.train import Trainer, train
from test_checkpoint import flip_bytes_in_largest_tensor

ROOT = Path(__file__).resolve().parents[1]
# small and quick: 400 digits (40 a class), 2 epochs of 6 steps, a narrow CNN.
# `moco` (instance task + K-means) is used where a run must succeed: it never collapses.
FAST = ["--set", "epochs=2", "--set", "batch_size=64", "--set", "cnn_width=8", "--set", "memory_size=128",
        "--set", "threads=1", "--set", "save_features=false"]


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    full = load_prepared(prepare("digits", folder / "digits.npz"))
    idx = np.concatenate([np.flatnonzero(full.labels == c)[:40] for c in range(10)])
    return save_prepared(folder / "small.npz", full.images[idx], full.labels[idx], full.class_names)


def scl_train(npz, out, *extra, variant="moco"):
    return main(["train", "--dataset", "digits", "--variant", variant, "--params", str(ROOT / "params.yaml"),
                 "--data", str(npz), "--out", str(out),
                 "--no-progress", *FAST, *extra])


def _settings(variant="moco", **overrides):
    params = load_params(ROOT / "params.yaml")
    base = {"epochs": 2, "batch_size": 64, "cnn_width": 8, "memory_size": 128, "threads": 1,
            "save_features": False}
    return resolve(params, "digits", variant, 0, {**base, **overrides})


def _one_epoch_checkpoint(npz, out, variant="moco") -> Path:
    assert Trainer(_settings(variant), load_prepared(npz), out, progress=False).run(stop_after_epoch=1) is None
    return out / "checkpoint.pt"


# ------------------------------------------------------------------ checkpoints from disk
class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_in_a_run_folder_runs_no_code(small_npz, tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "code-ran"
    out.mkdir()
    torch.save({"epoch": 1, "settings": {}, "model": RunsCode(marker)}, out / "checkpoint.pt")
    digest = hashlib.sha256((out / "checkpoint.pt").read_bytes()).hexdigest()
    digest_path(out / "checkpoint.pt").write_text(f"{digest}  checkpoint.pt\n")  # even with a digest
    assert scl_train(small_npz, out) == 3
    assert not marker.exists()
    err = capsys.readouterr().err
    assert "holds more than tensors and plain values" in err and "Traceback" not in err


def test_checkpoint_without_digest_is_a_mismatch_the_workflow_restarts(small_npz, tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "code-ran"
    out.mkdir()
    torch.save({"epoch": 1, "model": RunsCode(marker)}, out / "checkpoint.pt")  # e.g. an older scl's
    assert scl_train(small_npz, out) == 3
    assert "no digest file" in capsys.readouterr().err and not (out / "metrics.json").exists()
    assert scl_train(small_npz, out, "--restart-if-changed") == 0  # what the workflow passes
    assert "starting afresh" in capsys.readouterr().err and not marker.exists()
    assert json.loads((out / "metrics.json").read_text())["acc"] > 0


def test_flipped_bytes_in_a_checkpoint_are_refused(small_npz, tmp_path, capsys):
    path = _one_epoch_checkpoint(small_npz, tmp_path)
    flip_bytes_in_largest_tensor(path)
    assert scl_train(small_npz, tmp_path) == 3
    err = capsys.readouterr().err
    assert "is corrupt" in err and "--restart" in err
    assert not (tmp_path / "metrics.json").exists()
    assert scl_train(small_npz, tmp_path, "--restart") == 0  # the fix the message names


def test_checkpoint_of_another_structure(small_npz, tmp_path, capsys):
    path = _one_epoch_checkpoint(small_npz, tmp_path)
    state = load_checkpoint(path)
    state["model"] = {k: v for i, (k, v) in enumerate(state["model"].items()) if i % 2}
    save_checkpoint(path, state)
    assert scl_train(small_npz, tmp_path) == 3
    err = capsys.readouterr().err
    assert "does not fit this model" in err and "--restart" in err and "Traceback" not in err


# ------------------------------------------------------------------ broken runs
def test_a_collapsed_run_fails_and_is_never_averaged_in(small_npz, tmp_path, capsys):
    runs = tmp_path / "runs"
    out = runs / "digits" / "scl" / "seed0"
    assert scl_train(small_npz, out, "--set", "lr=50", variant="scl") == 3
    err = capsys.readouterr().err
    assert "the run finished but its result is unusable" in err and "lower lr (now 50" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["failure"]
    # a rerun does not call it complete
    assert scl_train(small_npz, out, "--set", "lr=50", variant="scl") == 3
    assert "failed run earlier" in capsys.readouterr().err
    # the report leaves it out, loudly
    from scl.report.collect import collect_runs
    from scl.report.figures import finished_logs

    with pytest.warns(UserWarning, match="left out .*seed0: the run failed"):
        assert len(collect_runs(runs)) == 0
    with pytest.warns(UserWarning):
        assert finished_logs(runs, "digits", "scl") == []


def test_curves_draw_only_finished_runs(small_npz, tmp_path):
    runs = tmp_path / "runs"
    base = runs / "digits" / "moco"
    assert scl_train(small_npz, base / "seed0") == 0
    _one_epoch_checkpoint(small_npz, base / "seed1")  # still training (or killed): log, no metrics
    assert (base / "seed1" / "log.jsonl").exists()
    from scl.report.figures import figure_curves, finished_logs

    assert finished_logs(runs, "digits", "moco") == [base / "seed0" / "log.jsonl"]
    assert figure_curves(runs, "digits", "moco")[:4] == b"\x89PNG"


# ------------------------------------------------------------------ settings vs data
@pytest.mark.parametrize("extra, message", [
    (["--set", "augment=mocov2"], "'mocov2' is a 3-channel recipe but digits has 1-channel images"),
    (["--set", "epochs=2.0"], "epochs: 2.0 is not an integer"),
    (["--set", "lr=.nan"], "lr: nan is not a finite number"),
])
def test_bad_settings_end_before_any_work(small_npz, tmp_path, capsys, extra, message):
    assert scl_train(small_npz, tmp_path / "run", *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                    reason="this machine has MPS")
def test_mps_without_mps(small_npz, tmp_path, capsys):
    assert scl_train(small_npz, tmp_path / "run", "--set", "device=mps") == 2
    assert "device 'mps'" in capsys.readouterr().err


def test_one_unknown_label_and_num_classes_mismatch(small_npz, tmp_path, capsys):
    data = load_prepared(small_npz)
    labels = data.labels.copy()
    labels[0] = -1
    bad = save_prepared(tmp_path / "minus1.npz", data.images, labels, data.class_names)
    assert scl_train(bad, tmp_path / "a") == 2
    assert "1 of 400 images have label -1" in capsys.readouterr().err
    keep = data.labels < 7
    seven = save_prepared(tmp_path / "seven.npz", data.images[keep], data.labels[keep], data.class_names[:7])
    assert scl_train(seven, tmp_path / "b") == 2
    assert "the labels have 7 classes but num_classes is 10" in capsys.readouterr().err


def test_zero_byte_metrics_json_is_an_unfinished_run(small_npz, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_bytes(b"")
    assert scl_train(small_npz, out) == 0
    assert "treating the run as unfinished" in capsys.readouterr().err
    assert "acc" in json.loads((out / "metrics.json").read_text())


# ------------------------------------------------------------------ the machine
def test_read_only_results_folder(small_npz, tmp_path, capsys, monkeypatch):
    import scl.run_lock

    def read_only(path, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(scl.run_lock.os, "open", read_only)
    assert scl_train(small_npz, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "read-only file system" in err and "--out" in err and "Traceback" not in err


def test_disk_full_during_a_checkpoint_then_resume(small_npz, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def fsync_fills_the_disk(fd):
        calls.append(fd)
        if len(calls) == 4:  # epoch 1: checkpoint digest, checkpoint, log; epoch 2: digest -> full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(scl.io.os, "fsync", fsync_fills_the_disk)
    assert scl_train(small_npz, out) == 3
    err = capsys.readouterr().err
    assert "the disk is full" in err and "run the same command again" in err
    assert not list(out.glob("*.tmp")) and not (out / "metrics.json").exists()
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    monkeypatch.setattr(scl.io.os, "fsync", real_fsync)
    assert scl_train(small_npz, out) == 0
    assert [r["epoch"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())] == [1, 2]


def test_ctrl_c_exits_130_and_the_same_command_resumes(small_npz, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real = Trainer._train_epoch

    def interrupted_in_epoch_2(self, bar):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real(self, bar)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted_in_epoch_2)
    assert scl_train(small_npz, out) == 130
    assert "resume by running the same command" in capsys.readouterr().err
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    assert scl_train(small_npz, out) == 0
    assert (out / "metrics.json").exists()


def test_unexpected_error_gives_a_short_message_and_the_traceback_file(small_npz, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)

    def bug(self, bar):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Trainer, "_train_epoch", bug)
    assert scl_train(small_npz, tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert "unexpected error: ZeroDivisionError: a bug" in err and "Traceback" not in err
    logged = list((tmp_path / "logs" / "errors").glob("scl-train-*.log"))
    assert len(logged) == 1 and str(logged[0]) in err
    assert "Traceback" in logged[0].read_text() and "_train_epoch" in logged[0].read_text()


# ------------------------------------------------------------------ the run folder
def test_a_second_scl_train_on_one_folder_is_refused(small_npz, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from scl.run_lock import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert scl_train(small_npz, out) == 2
        err = capsys.readouterr().err
        assert f"is in use by another `scl train` (pid {holder.pid})" in err
        assert not (out / "checkpoint.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the killed holder's lock: the folder is free again
    assert scl_train(small_npz, out) == 0


def test_an_interrupt_inside_mkstemp_leaves_no_temporary(tmp_path, monkeypatch):
    """Ctrl-C can land after mkstemp has made the file and before the writer has its name,
    where no except clause can remove it: releasing the run lock sweeps it."""
    import tempfile

    from scl.io import atomic_write_json
    from scl.run_lock import run_lock

    real_mkstemp = tempfile.mkstemp

    def interrupted_mkstemp(*args, **kwargs):
        real_mkstemp(*args, **kwargs)  # the file exists now
        raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with run_lock(out):
            monkeypatch.setattr(tempfile, "mkstemp", interrupted_mkstemp)
            atomic_write_json(out / "timing.json", {"epochs": []})
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == []  # no *.tmp, no lock, no half-written timing.json


def test_stray_temporary_files_are_removed_and_ignored_by_dvc(small_npz, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    strays = [out / "checkpoint.pt.k2j4h1.tmp", out / "metrics.json.abc.tmp"]
    for p in strays:
        p.write_bytes(b"half a file")
    assert scl_train(small_npz, out) == 0
    assert not any(p.exists() for p in strays) and not (out / ".scl-train.lock").exists()
    rules = (ROOT / ".dvcignore").read_text().splitlines()
    assert "*.tmp" in rules and ".scl-train.lock" in rules


@pytest.mark.slow
def test_dvc_ignores_leftovers():
    dvc = Path(sys.executable).with_name("dvc")
    paths = ["results/runs/digits/scl/seed0/checkpoint.pt.k2j4h1.tmp", "results/runs/digits/scl/seed0/.scl-train.lock"]
    proc = subprocess.run([str(dvc), "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.split() == paths
    kept = subprocess.run([str(dvc), "check-ignore", "results/runs/digits/scl/seed0/checkpoint.pt.sha256"],
                          cwd=ROOT, capture_output=True, text=True)
    assert kept.returncode == 1  # the digest travels with the checkpoint


@pytest.mark.slow
def test_real_sigint_exits_130_with_the_resume_hint(small_npz, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "scl", "train", "--dataset", "digits", "--variant", "moco",
                             "--data", str(small_npz), "--out", str(out), "--no-progress", *FAST,
                             "--set", "epochs=500"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            # a shell's background job starts with SIGINT ignored: restore Ctrl-C
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # as Ctrl-C
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "resume by running the same command" in err and "Traceback" not in err
    assert not list(out.glob("*.tmp"))
