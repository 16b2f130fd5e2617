"""scl.gpu_slots: each job gets a device of its own, with fake device ids on the CPU."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scl import gpu_slots as gs

ROOT = Path(__file__).resolve().parents[1]


def test_parse_ids_and_candidates():
    assert gs.parse_ids(" 0, 1,,GPU-ab12 ") == ["0", "1", "GPU-ab12"]
    never = lambda: pytest.fail("nvidia-smi must not be asked when the devices are given")  # noqa: E731
    # --devices wins, then CUDA_VISIBLE_DEVICES, then the probe (flagged: nvidia-smi numbering)
    assert gs.candidate_devices({"CUDA_VISIBLE_DEVICES": "3"}, "1,2", probe=never) == (["1", "2"], False)
    assert gs.candidate_devices({"CUDA_VISIBLE_DEVICES": "2,3"}, probe=never) == (["2", "3"], False)
    assert gs.candidate_devices({"CUDA_VISIBLE_DEVICES": ""}, probe=never) == ([], False)  # GPUs hidden
    assert gs.candidate_devices({}, probe=lambda: ["0", "1"]) == (["0", "1"], True)
    assert gs.candidate_devices({}, probe=lambda: []) == ([], True)


def test_acquire_hands_out_distinct_devices_and_waits_when_all_are_taken(tmp_path):
    (a,), fa = gs.acquire(["g0", "g1"], tmp_path, poll_s=0.01)
    (b,), fb = gs.acquire(["g0", "g1"], tmp_path, poll_s=0.01)
    assert {a, b} == {"g0", "g1"}
    waits = []
    with pytest.raises(TimeoutError, match="g0, g1"):
        gs.acquire(["g0", "g1"], tmp_path, poll_s=0.01, timeout_s=0.05, on_wait=lambda: waits.append(1))
    assert waits == [1]  # told once that it is waiting
    os.close(fa[0])  # the holder ends: its device is free again, the other stays taken
    (c,), fc = gs.acquire(["g0", "g1"], tmp_path, poll_s=0.01, timeout_s=1)
    assert c == a
    for fd in fb + fc:
        os.close(fd)
    with pytest.raises(ValueError):
        gs.acquire([], tmp_path)


def test_acquire_several_devices_is_all_or_nothing(tmp_path):
    got, fds = gs.acquire(["g0", "g1", "g2"], tmp_path, count=2, poll_s=0.01)
    assert got == ["g0", "g1"]
    # one device left: a job asking for two waits, and holds none of them meanwhile
    with pytest.raises(TimeoutError):
        gs.acquire(["g0", "g1", "g2"], tmp_path, count=2, poll_s=0.01, timeout_s=0.05)
    fd = gs.try_lock(tmp_path, "g2")
    assert fd is not None
    for f in fds + [fd]:
        os.close(f)
    with pytest.raises(ValueError, match="3 of 2"):
        gs.acquire(["g0", "g1"], tmp_path, count=3)


def _fake_exec(calls):
    def execvpe(file, argv, env):
        calls.append((file, list(argv), dict(env)))
    return execvpe


def test_main_sets_cuda_visible_devices_and_passes_the_lock_on(tmp_path):
    calls = []
    rc = gs.main(["--lock-dir", str(tmp_path), "--", "scl", "train", "--set", "epochs=2"],
                 env={"CUDA_VISIBLE_DEVICES": "5,7", "PATH": os.environ["PATH"]}, execvpe=_fake_exec(calls))
    assert rc == 0
    (file, argv, env), = calls
    assert (file, argv) == ("scl", ["scl", "train", "--set", "epochs=2"])
    assert env["CUDA_VISIBLE_DEVICES"] == "5"
    assert "CUDA_DEVICE_ORDER" not in env  # the user's numbering is kept as it is
    # the (fake) exec did not happen, so this process still holds device 5's lock
    assert gs.try_lock(tmp_path, "5") is None
    assert (tmp_path / "gpu5.lock").exists()


def test_main_uses_nvidia_smi_numbering_when_probing(tmp_path, monkeypatch):
    monkeypatch.setattr(gs, "nvidia_smi_ids", lambda: ["0", "1"])
    calls = []
    gs.main(["--lock-dir", str(tmp_path), "--", "true"], env={}, execvpe=_fake_exec(calls))
    assert calls[0][2]["CUDA_VISIBLE_DEVICES"] == "0"
    assert calls[0][2]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


@pytest.mark.parametrize("env", [
    {},  # a CPU machine: nothing to hand out
    {"SLURM_JOB_ID": "17", "CUDA_VISIBLE_DEVICES": "0"},  # SLURM already gave the job its GPU
])
def test_main_leaves_the_environment_alone_without_devices_or_under_slurm(tmp_path, monkeypatch, env):
    monkeypatch.setattr(gs, "nvidia_smi_ids", lambda: [])
    calls = []
    gs.main(["--lock-dir", str(tmp_path / "locks"), "--", "true"], env=dict(env), execvpe=_fake_exec(calls))
    assert calls[0][2] == env
    assert not (tmp_path / "locks").exists()  # no lock taken


def test_main_without_a_gpu_resource_runs_the_command_as_it_is(tmp_path):
    calls = []
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    gs.main(["--gpus", "0", "--lock-dir", str(tmp_path / "locks"), "--", "true"], env=dict(env),
            execvpe=_fake_exec(calls))
    assert calls[0][2] == env and not (tmp_path / "locks").exists()


def test_main_usage_errors(capsys):
    assert gs.main([], env={}) == 2
    assert "no command" in capsys.readouterr().err
    assert gs.main(["--poll", "0", "--", "true"], env={}) == 2
    assert gs.main(["--gpus", "-1", "--", "true"], env={}) == 2
    # more GPUs asked for than the machine has: an error, not an endless wait
    assert gs.main(["--gpus", "3", "--devices", "0,1", "--", "true"], env={}) == 2
    assert "only 2 (0, 1)" in capsys.readouterr().err
    assert gs.main(["--devices", "", "--", "no-such-command-scl"], env={"PATH": "/nonexistent"}) == 127


def _start(tmp_path, name, release):
    """A job that records its device, then runs until `release` exists (a fake training run)."""
    script = (f"echo $CUDA_VISIBLE_DEVICES > {tmp_path / name}.dev; "
              f"while [ ! -e {release} ]; do sleep 0.02; done")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("SLURM_JOB_ID", None)
    return subprocess.Popen([sys.executable, "-m", "scl.gpu_slots", "--devices", "g0,g1", "--poll", "0.02",
                             "--lock-dir", str(tmp_path / "locks"), "--", "sh", "-c", script],
                            env=env, stderr=subprocess.PIPE, text=True)


def _wait_for(path, timeout=20.0):
    end = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text().strip()


def test_concurrent_jobs_get_their_own_device_and_the_third_waits(tmp_path):
    """Three real processes on two fake GPUs: the lock goes through exec to the command."""
    procs = {}
    try:
        procs["a"] = _start(tmp_path, "a", tmp_path / "release_a")
        dev_a = _wait_for(tmp_path / "a.dev")
        procs["b"] = _start(tmp_path, "b", tmp_path / "release_b")
        dev_b = _wait_for(tmp_path / "b.dev")
        assert {dev_a, dev_b} == {"g0", "g1"}
        # the wrapper has exec'd into `sh`: the command itself holds the lock
        assert gs.try_lock(tmp_path / "locks", dev_a) is None
        procs["c"] = _start(tmp_path, "c", tmp_path / "release_c")
        time.sleep(1.0)
        assert not (tmp_path / "c.dev").exists(), "a third job started while both devices were taken"
        (tmp_path / "release_a").touch()  # a ends: c gets a's device
        assert procs["a"].wait(timeout=20) == 0
        assert _wait_for(tmp_path / "c.dev") == dev_a
        (tmp_path / "release_c").touch()
        assert procs["c"].wait(timeout=20) == 0
        assert "in use; waiting" in procs["c"].stderr.read()
    finally:
        for name in "abc":
            (tmp_path / f"release_{name}").touch()
        for p in procs.values():
            p.wait(timeout=20)

