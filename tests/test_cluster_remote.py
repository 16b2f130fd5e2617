"""Beyond one machine: the smoke set through a real SLURM scheduler, and artifacts pulled over HTTP.

Both tests share one local run of the `smoke` set (digits, 2 epochs) in a temporary git
repository (`local_smoke`):

1. HTTP remote: push its DVC artifacts to a folder remote (as `make push REMOTE=...` does),
   serve that folder with a plain HTTP server on 127.0.0.1, clone the repository into a fresh
   folder, point it at the HTTP remote, `dvc pull`, restore the timestamps: `snakemake -n` has
   nothing to do.
2. SLURM: bring up a single-node SLURM cluster (munged, slurmctld, slurmd: tests/slurm_cluster.py),
   run the smoke set through the SLURM executor profile (workflow/profiles/slurm) in another copy,
   check that every job went through `sbatch` (`sacct` lists it) and that every run's
   metrics.json equals the local run's, then stop the daemons. Skipped with the reason when
   SLURM is not installed or cannot start (`apt-get install slurm-wlm munge`; root).

Set SCL_TEST_REPORT=DIR to keep what they measured (sizes, job lists, times) as JSON in DIR.
"""

import http.server
import json
import os
import shutil
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

import slurm_cluster

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE, DVC = BIN / "snakemake", BIN / "dvc"
SMOKE = ["--config", "experiment_set=smoke"]
# what a clone holds of the workflow (those of the last line where the repository has them)
WORKFLOW_FILES = ["Snakefile", "params.yaml", "workflow", "profiles", "scl", "dvc.yaml", ".dvc/config",
                  ".dvc/.gitignore", ".dvcignore", ".gitignore", "Makefile", "requirements.lock", "pyproject.toml",
                  "results/.gitignore", "results/runs.dvc", "data/.gitignore", "data/prepared.dvc"]
# what `scl train` writes that depends on the clock, not on the computation
CLOCK_KEYS = {"train_time_s"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SNAKEMAKE.exists() and DVC.exists()),
                       reason="snakemake/dvc not installed in this environment (make setup)"),
]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "cluster test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "cluster-test@example.invalid"
    env.pop("SNAKEMAKE_PROFILE", None)
    env.update(extra)
    return env


def run(cwd: Path, *cmd, check: bool = True, timeout: int = 900, **env) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout[-4000:]}\n"
                             f"{p.stderr[-4000:]}")
    return p


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if not src.exists() and not src.is_symlink():
            continue
        if src.is_symlink():
            (dest / name).symlink_to(os.readlink(src))
        elif src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, ignore=ignore)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    # name the smoke set in params.yaml too, so that commands without --config (make push/pull) mean it
    text = (dest / "params.yaml").read_text()
    (dest / "params.yaml").write_text(text.replace("\nexperiment_set: digits", "\nexperiment_set: smoke", 1))
    return dest


def nothing_to_do(repo: Path, *args) -> bool:
    p = run(repo, SNAKEMAKE, "-n", *args)
    return "Nothing to be done" in p.stdout + p.stderr


def run_metrics(repo: Path) -> dict[str, dict]:
    """Every run's metrics.json, without the wall-clock entries."""
    out = {}
    for path in sorted((repo / "results" / "runs").rglob("metrics.json")):
        m = json.loads(path.read_text())
        out[str(path.relative_to(repo))] = {k: v for k, v in m.items() if k not in CLOCK_KEYS}
    return out


def keep(name: str, data) -> None:
    """Write a measurement to $SCL_TEST_REPORT/<name>.json (for the closing note)."""
    folder = os.environ.get("SCL_TEST_REPORT")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(data, indent=2))


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


@pytest.fixture(scope="module")
def local_smoke(tmp_path_factory) -> Path:
    """A git repository with the workflow committed and the smoke set run locally through `all`."""
    repo = copy_workflow(tmp_path_factory.mktemp("local") / "repo")
    run(repo, "git", "init", "-q")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "workflow")
    start = time.monotonic()
    run(repo, SNAKEMAKE, "--cores", "2", "all", *SMOKE, timeout=1800)
    keep("local_smoke", {"wall_s": round(time.monotonic() - start, 1)})
    return repo


# ------------------------------------------------------------------ HTTP remote


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves one folder, read-only (GET/HEAD only), and records the paths it was asked for."""

    requests: list  # set per server

    def log_message(self, *args):  # no request log on stderr
        pass

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def http_server():
    """serve(folder) -> (URL, requests): a plain HTTP server on 127.0.0.1 that stops after the test."""
    servers = []

    def serve(folder: Path):
        requests = []
        handler = type("Handler", (_Handler,), {"requests": requests})
        server = socketserver.ThreadingTCPServer(
            ("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder)))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", requests

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_push_serve_over_http_clone_pull_finds_nothing_to_do(local_smoke, http_server, tmp_path):
    repo, remote, clone = local_smoke, tmp_path / "remote", tmp_path / "clone"
    # publish: what `make push REMOTE=published` does, to a folder a web server can serve
    run(repo, DVC, "remote", "add", "published", remote)
    (repo / ".venv").symlink_to(ROOT / ".venv")  # the Makefile's tools, without reinstalling anything
    run(repo, "make", "-o", "setup", "push", "REMOTE=published")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "smoke results")
    assert (remote / "files" / "md5").is_dir()

    url, requests = http_server(remote)
    run(tmp_path, "git", "clone", "-q", repo, clone)
    assert not (clone / "data" / "prepared").exists() and not (clone / "results" / "runs").exists()
    # a user's clone: the published HTTP remote as default, in .dvc/config.local (not committed)
    run(clone, DVC, "remote", "add", "--local", "-d", "public", url)
    start = time.monotonic()
    p = run(clone, DVC, "pull")
    pull_s = time.monotonic() - start
    assert requests, "dvc pull fetched nothing over HTTP"
    assert "up to date" in run(clone, DVC, "status").stdout
    p_restore = run(clone, "workflow/scripts/restore-timestamps.sh", *SMOKE)
    assert "nothing to rerun" in p_restore.stdout, p_restore.stdout + p_restore.stderr
    assert nothing_to_do(clone, "all", *SMOKE)
    assert run_metrics(clone) == run_metrics(repo)

    # what the pull gave, by kind
    runs = clone / "results" / "runs"
    kinds = {
        "prepared data (data/prepared)": du(clone / "data" / "prepared"),
        "checkpoints (checkpoint.pt)": sum(du(p) for p in runs.rglob("checkpoint.pt")),
        "features (features.npz, features_init.npz)": sum(du(p) for p in runs.rglob("features*.npz")),
        "assignments (assignments.npz)": sum(du(p) for p in runs.rglob("assignments.npz")),
        "metrics and logs (metrics.json, log.jsonl)":
            sum(du(p) for p in runs.rglob("*") if p.suffix in (".json", ".jsonl")),
    }
    total = du(clone / "data" / "prepared") + du(runs)
    assert sum(kinds.values()) == total  # every pulled file is in one of the kinds
    assert kinds["checkpoints (checkpoint.pt)"] > 0 and kinds["features (features.npz, features_init.npz)"] > 0
    keep("http_pull", {"bytes": kinds, "total_bytes": total, "remote_bytes": du(remote),
                       "runs": len(list(runs.rglob("metrics.json"))), "dvc_pull_s": round(pull_s, 1), "http_get_requests": len(requests),
                       "dvc_pull_output": p.stdout.strip().splitlines()[-3:]})


# ------------------------------------------------------------------ SLURM


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A single-node SLURM cluster on this machine, stopped after the module's tests."""
    try:
        slurm_cluster.check_available()
        cluster = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    except slurm_cluster.Unavailable as e:
        pytest.skip(f"SLURM cannot start here: {e}")
    yield cluster
    cluster.stop()


@pytest.mark.slurm
def test_smoke_set_through_slurm_equals_a_local_run(slurm, local_smoke, tmp_path):
    repo = copy_workflow(tmp_path / "repo")
    start = time.monotonic()
    p = run(repo, SNAKEMAKE, "--workflow-profile", "profiles/slurm", "all", *SMOKE,
            # this test cluster has no accounting database (see tests/slurm_cluster.py) and no accounts
            "--slurm-status-command", "squeue", "--slurm-no-account",
            "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10", timeout=2400)
    wall_s = time.monotonic() - start
    out = p.stdout + p.stderr
    submitted = [line for line in out.splitlines() if "has been submitted with SLURM jobid" in line]
    slurm_ids = {line.split("SLURM jobid ")[1].split()[0] for line in submitted}

    # every job went through sbatch, and SLURM's own record lists each of them as completed
    dry = run(local_smoke, SNAKEMAKE, "-n", "-F", "all", *SMOKE).stdout
    total = int(dry.split("\ntotal")[1].split()[0])
    local_rules = 1  # `all` is a local rule
    assert len(slurm_ids) == total - local_rules, out[-3000:]
    sacct = run(repo, "sacct", "--completion", "--parsable2", "--noheader", "--format=JobID,JobName,State,Elapsed",
                "--starttime", "now-1day").stdout
    rows = [line.split("|") for line in sacct.strip().splitlines()]
    accounted = {r[0]: r for r in rows if r[0] in slurm_ids}
    assert set(accounted) == slurm_ids
    assert all(r[2] == "COMPLETED" for r in accounted.values()), accounted

    # the same numbers as the local run
    assert run_metrics(repo) == run_metrics(local_smoke)
    for table in ("table1", "table2", "table3"):
        assert (repo / "results" / "tables" / "smoke" / f"{table}.md").read_text() == \
            (local_smoke / "results" / "tables" / "smoke" / f"{table}.md").read_text()
    assert nothing_to_do(repo, "all", *SMOKE)
    keep("slurm", {"wall_s": round(wall_s, 1), "jobs_submitted": len(slurm_ids),
                   "sacct": ["|".join(r) for r in sorted(accounted.values(), key=lambda r: int(r[0]))],
                   "runs_compared": len(run_metrics(repo))})
