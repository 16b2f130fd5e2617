"""Hand each training job its own GPU: a per-device lock that sets CUDA_VISIBLE_DEVICES.

Snakemake's `resources: gpu=N` only caps how many GPU jobs run at once; it does not say
*which* device a job gets, and `device: auto` means `cuda`, i.e. GPU 0, for every job. On a
machine with several GPUs every concurrent run would then share GPU 0 while the others idle.

    python -m scl.gpu_slots [--gpus 1] [--devices 0,1] [--lock-dir DIR] -- scl train ...

takes the first free device of this machine (an exclusive `flock` on `<lock-dir>/gpu<id>.lock`),
exports `CUDA_VISIBLE_DEVICES=<id>` and `exec`s the command. The lock lives on the open file,
which the command inherits, so it is held exactly as long as the command runs and the kernel
releases it when the command exits or is killed (no stale lock files to clean up). When every
device is taken it waits (Snakemake's `--resources gpu=N` normally prevents that). `--gpus N`
hands out N devices at once (all or none, so two waiting jobs cannot deadlock).

It does nothing but `exec` the command when
- the job holds no GPU (`--gpus 0`: the workflow passes the job's `gpu` resource), or
- there is no GPU to hand out (no `CUDA_VISIBLE_DEVICES`, no `nvidia-smi`): CPU machines, or
- a scheduler already gave the job its devices (inside a SLURM job, `SLURM_JOB_ID` is set and
  SLURM sets `CUDA_VISIBLE_DEVICES` for `--gpus`): the allocation is the scheduler's business,
  and a lock folder shared between nodes must not serialise jobs on different machines.

The candidates are `--devices`, else `CUDA_VISIBLE_DEVICES` (a user restricting the workflow
to some GPUs), else the indices `nvidia-smi` lists (then `CUDA_DEVICE_ORDER=PCI_BUS_ID`, so that
CUDA numbers the devices as nvidia-smi does). Ids are opaque strings: tests use fake ones on
the CPU.

Exit codes: the command's own; 2 bad arguments; 127 the command was not found.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

# machine-wide (GPUs are per machine): every user's jobs on this machine see the same locks
DEFAULT_LOCK_DIR = "/tmp/scl-gpu-slots"
LOCK_DIR_ENV = "SCL_GPU_LOCK_DIR"


def nvidia_smi_ids() -> list[str]:
    """The GPU indices `nvidia-smi` lists ([] when it is missing or fails: no usable driver)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def parse_ids(text: str) -> list[str]:
    """'0, 1,,2' -> ['0', '1', '2'] (CUDA_VISIBLE_DEVICES syntax: ids or GPU UUIDs)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def scheduler_assigned(env: Mapping[str, str]) -> bool:
    """True inside a SLURM job: SLURM gave the job its GPUs (CUDA_VISIBLE_DEVICES) itself."""
    return "SLURM_JOB_ID" in env


def candidate_devices(env: Mapping[str, str], devices: str | None = None,
                      probe: Callable[[], list[str]] | None = None) -> tuple[list[str], bool]:
    """The devices to choose from, and whether they came from the probe (nvidia-smi numbering)."""
    if devices is not None:
        return parse_ids(devices), False
    if "CUDA_VISIBLE_DEVICES" in env:
        return parse_ids(env["CUDA_VISIBLE_DEVICES"]), False
    return (probe or nvidia_smi_ids)(), True


def _lock_name(device: str) -> str:
    # a GPU UUID (GPU-xxxxxxxx-...) or an index: keep a file name that is safe anywhere
    return "gpu" + "".join(c if c.isalnum() or c in "-_." else "_" for c in device) + ".lock"


def try_lock(lock_dir: Path, device: str) -> int | None:
    """An fd holding the exclusive lock of `device`, or None when another process holds it."""
    path = lock_dir / _lock_name(device)
    # O_RDONLY is enough for flock; 0o666 lets other users lock the same file
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_lock_dir(lock_dir: Path) -> Path:
    """The lock folder, writable by everybody (sticky, like /tmp) when this call creates it."""
    if not lock_dir.is_dir():
        lock_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(lock_dir, 0o1777)
        except PermissionError:  # made by another user between the check and mkdir
            pass
    return lock_dir


def acquire(devices: Sequence[str], lock_dir: Path, count: int = 1, poll_s: float = 5.0,
            timeout_s: float | None = None, on_wait: Callable[[], None] | None = None) -> tuple[list[str], list[int]]:
    """Lock `count` free devices, first free first (waiting while too few are free):
    (device ids, lock fds). Raises TimeoutError after `timeout_s` seconds (None: wait for ever)."""
    if not 1 <= count <= len(devices):
        raise ValueError(f"cannot hand out {count} of {len(devices)} device(s) ({', '.join(devices) or 'none'})")
    make_lock_dir(lock_dir)
    start = time.monotonic()
    waited = False
    while True:
        got, fds = [], []
        for device in devices:
            fd = try_lock(lock_dir, device)
            if fd is not None:
                got.append(device)
                fds.append(fd)
                if len(got) == count:
                    return got, fds
        for fd in fds:  # too few free: hold none while waiting (no deadlock between two jobs)
            os.close(fd)
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            raise TimeoutError(f"{count} of the devices ({', '.join(devices)}) were not free for {timeout_s:g} s")
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(poll_s)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scl.gpu_slots",
        description="Run a command on a GPU of its own: lock a free device, set CUDA_VISIBLE_DEVICES, exec.")
    p.add_argument("--gpus", type=int, default=1, help="how many devices the command gets (0: run it as it is; "
                   "the workflow passes the job's `gpu` resource)")
    p.add_argument("--devices", help="comma-separated device ids to choose from "
                   "(default: CUDA_VISIBLE_DEVICES, else the GPUs nvidia-smi lists)")
    p.add_argument("--lock-dir", help=f"folder of the lock files (default: ${LOCK_DIR_ENV} or {DEFAULT_LOCK_DIR}; "
                   "must be local to this machine)")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between tries while every device is taken")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    return p


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None,
         execvpe: Callable[..., None] = os.execvpe) -> int:
    args = build_parser().parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("python -m scl.gpu_slots: no command given (usage: python -m scl.gpu_slots -- CMD ...)",
              file=sys.stderr)
        return 2
    env = dict(os.environ if env is None else env)
    if args.poll <= 0:
        print(f"python -m scl.gpu_slots: --poll must be positive, got {args.poll:g}", file=sys.stderr)
        return 2
    if args.gpus < 0:
        print(f"python -m scl.gpu_slots: --gpus must be 0 or more, got {args.gpus}", file=sys.stderr)
        return 2
    if args.gpus and not scheduler_assigned(env):
        devices, probed = candidate_devices(env, args.devices)
        if len(devices) < args.gpus:
            if devices:  # some, but fewer than asked for: a setup error, not something to wait for
                print(f"python -m scl.gpu_slots: {args.gpus} GPU(s) asked for, but only {len(devices)} "
                      f"({', '.join(devices)}) on this machine", file=sys.stderr)
                return 2
        else:
            lock_dir = Path(args.lock_dir or env.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)

            def waiting():
                print(f"scl.gpu_slots: every device ({', '.join(devices)}) is in use; waiting",
                      file=sys.stderr, flush=True)

            got, fds = acquire(devices, lock_dir, count=args.gpus, poll_s=args.poll, on_wait=waiting)
            for fd in fds:
                os.set_inheritable(fd, True)  # the command keeps the locks until it exits
            env["CUDA_VISIBLE_DEVICES"] = ",".join(got)
            if probed:
                env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
            print(f"scl.gpu_slots: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}", file=sys.stderr, flush=True)
    try:
        execvpe(command[0], command, env)
    except FileNotFoundError:
        print(f"python -m scl.gpu_slots: command not found: {command[0]}", file=sys.stderr)
        return 127
    return 0  # only reached when execvpe is replaced (tests)


if __name__ == "__main__":
    sys.exit(main())
