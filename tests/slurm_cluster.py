"""A single-node SLURM cluster on this machine, for tests/test_pipeline.py (and by hand).

munged, slurmctld and slurmd (Debian: `apt-get install slurm-wlm munge`) run from a scratch
folder with their own munge key, ports, state and logs. Only the configuration file goes to
the standard place, /etc/slurm/slurm.conf: the SLURM executor's job step removes every
SLURM_* variable (SLURM_CONF included) before it calls `srun`, so `srun` inside a job finds
its configuration only there. It is written only when no configuration exists, and removed
by `stop()`.

Accounting: no slurmdbd; finished jobs are written by the `jobcomp/filetxt` plugin, which
`sacct --completion` (`sacct -c`) reads. The executor therefore checks job states with
`squeue` (`--slurm-status-command squeue`; `MinJobAge` keeps finished jobs visible).

    python tests/slurm_cluster.py start /tmp/slurm    # prints what it started
    python tests/slurm_cluster.py stop /tmp/slurm
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sacct", "sinfo", "scontrol")


class Unavailable(RuntimeError):
    """SLURM cannot run here (the message says why): tests skip with it."""


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None)


def check_available() -> None:
    missing = [n for n in DAEMONS + CLIENTS if _which(n) is None]
    if missing:
        raise Unavailable(f"SLURM is not installed ({', '.join(missing)} missing): "
                          "apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        raise Unavailable("slurmd must run as root to start jobs; run the SLURM test as root")
    if CONF.exists() and _stale_test_conf():
        CONF.unlink()  # left by a test cluster whose daemons are gone (the test was killed)
    if CONF.exists():
        raise Unavailable(f"{CONF} exists: this machine has a SLURM configuration of its own, "
                          "which the test will not replace")


MARKER = "# written by tests/slurm_cluster.py"


def _stale_test_conf() -> bool:
    """True when /etc/slurm/slurm.conf is one this module wrote and its slurmctld is not running."""
    text = CONF.read_text(errors="replace")
    if not text.startswith(MARKER):
        return False
    for line in text.splitlines():
        if line.startswith("SlurmctldPidFile="):
            pid_file = Path(line.split("=", 1)[1])
            try:
                return not _alive(int(pid_file.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                return True  # no pid file: its cluster folder is gone
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 4000


@dataclass
class Cluster:
    root: Path
    cpus: int
    memory_mb: int
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def jobcomp(self) -> Path:
        return self.root / "log" / "jobcomp.txt"

    def config(self, host: str, ctld_port: int, slurmd_port: int) -> str:
        r = self.root
        return f"""{MARKER} for a test cluster in {r}; removed when it stops
ClusterName=scltest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
MinJobAge=3600
NodeName={host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""

    def _spawn(self, name: str, cmd: list[str], env: dict) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pids[name] = p.pid
        (self.root / "pids.json").write_text(json.dumps(self.pids))

    def start(self, timeout: float = 60.0) -> "Cluster":
        check_available()
        r = self.root
        for sub in ("munge", "state", "spool", "log"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o400)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        self._spawn("munged", [_which("munged"), "-F", "-f", f"--socket={r}/munge/munge.sock",
                               f"--key-file={key}", f"--pid-file={r}/munge/munged.pid",
                               f"--seed-file={r}/munge/seed", f"--log-file={r}/log/munged.log"], env)
        host = socket.gethostname().split(".")[0]
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(self.config(host, _free_port(), _free_port()))
        (r / "owns-conf").touch()
        self._wait(lambda: (r / "munge" / "munge.sock").exists(), timeout, "munged did not start")
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i"], env)
        self._spawn("slurmd", [_which("slurmd"), "-D"], env)
        self._wait(self.idle, timeout, "the node did not come up idle")
        return self

    def idle(self) -> bool:
        p = subprocess.run([_which("sinfo"), "-h", "-o", "%T"], capture_output=True, text=True)
        return p.returncode == 0 and p.stdout.strip() == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not ready():
            dead = [n for n, pid in self.pids.items() if not _alive(pid)]
            if dead or time.monotonic() > end:
                logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                                 for p in sorted((self.root / "log").glob("*")) if p.is_file())
                self.stop()
                raise Unavailable(f"{what}{' (' + ', '.join(dead) + ' exited)' if dead else ''}:\n{logs}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the daemons this cluster started (by pid) and remove its configuration."""
        stop(self.root)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop(root: Path) -> None:
    pids_file = root / "pids.json"
    pids = json.loads(pids_file.read_text()) if pids_file.exists() else {}
    for name in reversed(DAEMONS):  # slurmd, slurmctld, then munged
        pid = pids.get(name)
        if pid is None or not _alive(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    if (root / "owns-conf").exists():
        CONF.unlink(missing_ok=True)
        (root / "owns-conf").unlink()
    pids_file.unlink(missing_ok=True)


def start(root: Path, cpus: int | None = None, memory_mb: int | None = None) -> Cluster:
    return Cluster(Path(root), cpus or os.cpu_count() or 1, memory_mb or _memory_mb() * 3 // 4).start()


if __name__ == "__main__":
    action, folder = sys.argv[1], Path(sys.argv[2])
    if action == "start":
        c = start(folder)
        print(json.dumps({"root": str(c.root), "pids": c.pids, "conf": str(CONF)}))
    elif action == "stop":
        stop(folder)
    else:
        sys.exit("usage: python tests/slurm_cluster.py start|stop FOLDER")
