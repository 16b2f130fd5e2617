"""The Snakemake + DVC pipeline, end to end, in temporary copies of the repository.

1. smoke: the `smoke` experiment set (digits, 3 epochs) through every target; then nothing
   is left to do, and one ablation target reruns only its own table.
2. bad params: Snakemake stops before any job with a message naming the problem.
3. DVC: `make push REMOTE=published` to a folder, served read-only by a plain HTTP server on
   127.0.0.1; a fresh clone configures that HTTP remote, `dvc pull`s and restores the
   timestamps: Snakemake finds nothing to retrain.
4. SLURM: bring up a single-node SLURM cluster (munged, slurmctld, slurmd: tests/slurm_cluster.py),
   run the smoke set through the SLURM executor profile (workflow/profiles/slurm) in another
   copy; every job went through `sbatch` (`sacct` lists it) and every run's metrics.json equals
   the local run's; then stop the daemons. Skipped with the reason when SLURM is not installed
   or cannot start (`apt-get install slurm-wlm munge`; root).

Uses the snakemake and dvc of this interpreter's environment (the project's .venv).
Set SCL_TEST_REPORT=DIR to keep what 3 and 4 measured (sizes, job lists, times) as JSON in DIR.
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
SNAKEMAKE = BIN / "snakemake"
DVC = BIN / "dvc"
SMOKE = ["--config", "experiment_set=smoke"]
# what a clone of the repository holds of the workflow (scl/ for the schema the workflow validates with)
WORKFLOW_FILES = ["Snakefile", "params.yaml", "workflow", "profiles", "scl", "dvc.yaml", ".dvc/config",
                  ".dvc/.gitignore", ".dvcignore", ".gitignore", "results/.gitignore", "results/runs.dvc",
                  "data/.gitignore", "data/prepared.dvc", "Makefile"]

pytestmark = pytest.mark.skipif(not (SNAKEMAKE.exists() and DVC.exists()),
                                reason="snakemake/dvc not installed in this environment (make setup)")


def _env() -> dict:
    # no SLURM_* of a job this test may run in: the test cluster's jobs must not see them
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "pipeline test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "pipeline-test@example.invalid"
    env.pop("SNAKEMAKE_PROFILE", None)
    return env


def run(cwd: Path, *cmd, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True,
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
        if src.is_symlink():
            (dest / name).symlink_to(os.readlink(src))
        elif src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, ignore=ignore)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def set_params(repo: Path, edit) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    edit(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def nothing_to_do(repo: Path, *args) -> bool:
    p = run(repo, SNAKEMAKE, "-n", *args)
    return "Nothing to be done" in p.stdout + p.stderr


def run_metrics(repo: Path) -> dict[str, dict]:
    """Every run's metrics.json (wall-clock times are in timing.json, not here)."""
    return {str(p.relative_to(repo)): json.loads(p.read_text())
            for p in sorted((repo / "results" / "runs").rglob("metrics.json"))}


def keep(name: str, data) -> None:
    """Write a measurement to $SCL_TEST_REPORT/<name>.json (for the closing notes)."""
    folder = os.environ.get("SCL_TEST_REPORT")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(data, indent=2))


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


# ------------------------------------------------------------------ the smoke set, once


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory) -> Path:
    """A git repository with the workflow committed and the smoke set run through `all`."""
    repo = copy_workflow(tmp_path_factory.mktemp("pipeline") / "repo")
    run(repo, "git", "init", "-q")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "workflow")
    start = time.monotonic()
    run(repo, SNAKEMAKE, "--cores", "2", "all", *SMOKE, timeout=1200)
    keep("local_smoke", {"wall_s": round(time.monotonic() - start, 1)})
    return repo


@pytest.mark.slow
def test_smoke_set_makes_every_table_and_figure(smoke_repo):
    repo = smoke_repo
    for table in ("table1", "table2", "table3"):
        for ext in ("md", "csv", "tex"):
            assert (repo / "results" / "tables" / "smoke" / f"{table}.{ext}").stat().st_size > 0
    for fig in ("fig3", "fig4", "fig5_digits", "fig6_digits", "curves_digits", "confusion_digits"):
        assert (repo / "results" / "figures" / "smoke" / f"{fig}.png").stat().st_size > 0
    assert "k-NN" in (repo / "results" / "tables" / "smoke" / "diagnosis_digits.md").read_text()
    # what a set reports lives under its name: another set's tables are never overwritten
    assert not list((repo / "results" / "tables").glob("*.md"))
    runs = repo / "results" / "runs" / "smoke" / "digits"  # the set's own run tree
    for variant, seeds in {"scl": (0, 1), "moco": (0, 1), "no_reweight": (0,), "no_cross_cluster": (0,),
                           "no_online_cd": (0,), "target_only": (0,), "under_only": (0,),
                           "instance_only": (0,)}.items():
        for seed in seeds:
            run_dir = runs / variant / f"seed{seed}"
            for name in ("metrics.json", "log.jsonl", "checkpoint.pt", "assignments.npz", "features.npz"):
                assert (run_dir / name).exists(), run_dir / name
            # wall-clock times only in timing.json: the result files reproduce byte for byte
            assert "train_time_s" not in json.loads((run_dir / "metrics.json").read_text())
            assert "time" not in (run_dir / "log.jsonl").read_text()
            assert json.loads((run_dir / "timing.json").read_text())["train_time_s"] > 0
            assert (repo / "logs" / "train" / "smoke" / "digits" / variant / f"seed{seed}.log").exists()
            assert (repo / "benchmarks" / "train" / "smoke" / "digits" / variant / f"seed{seed}.tsv").exists()
    for method in ("kmeans", "spectral", "agglomerative", "nmf"):
        assert (repo / "results" / "baselines" / "digits" / method / "seed0" / "metrics.json").exists()
    assert (repo / "results" / "metrics" / "smoke" / "runs" / "digits" / "scl" / "mean.json").exists()
    assert (repo / "results" / "plots" / "smoke" / "digits" / "scl" / "seed0.csv").exists()
    summary = json.loads((repo / "results" / "summaries" / "smoke.json").read_text())
    assert summary["experiment_set"] == "smoke" and "mean" in summary["runs"]["digits"]["scl"]

    # everything is up to date, by the default target and by name
    assert nothing_to_do(repo, *SMOKE)
    assert nothing_to_do(repo, "all", *SMOKE)

    # one ablation target redoes only what it needs: its table, no training
    for ext in ("md", "csv", "tex"):
        (repo / "results" / "tables" / "smoke" / f"table3.{ext}").unlink()
    p = run(repo, SNAKEMAKE, "-n", "ablation_table3", *SMOKE)
    assert "table " in p.stdout and "train " not in p.stdout, p.stdout
    run(repo, SNAKEMAKE, "--cores", "2", "ablation_table3", *SMOKE)
    assert nothing_to_do(repo, "all", *SMOKE)

    # a change to the training code (eq. 1) retrains every run; one to the report code only redoes the report
    losses = repo / "scl" / "losses.py"
    original = losses.read_text()
    losses.write_text(original + "\n# eq. 1 edited\n")
    p = run(repo, SNAKEMAKE, "-n", "all", *SMOKE)
    assert p.stdout.count("rule train:") == 10 and "params have changed" in (p.stdout + p.stderr).lower(), p.stdout
    losses.write_text(original)
    assert nothing_to_do(repo, "all", *SMOKE)
    tables_py = repo / "scl" / "report" / "tables.py"
    original = tables_py.read_text()
    tables_py.write_text(original + "\n# edited\n")
    p = run(repo, SNAKEMAKE, "-n", "all", *SMOKE)
    assert "rule train:" not in p.stdout and "rule table:" in p.stdout, p.stdout
    tables_py.write_text(original)
    assert nothing_to_do(repo, "all", *SMOKE)
    # what a cluster job asks for is an execution setting: changing it reruns nothing
    params = (repo / "params.yaml").read_text()
    set_params(repo, lambda p: p["experiment_sets"]["smoke"].update(
        resources={"train": {"mem_mb": 2000, "runtime": 5}}))
    assert nothing_to_do(repo, "all", *SMOKE)
    (repo / "params.yaml").write_text(params)

    # the HTML report holds the tables and figures
    run(repo, SNAKEMAKE, "--report", "results/report.html", *SMOKE)
    html = (repo / "results" / "report.html").read_text(errors="replace")
    assert "fig3.png" in html and "table1.csv" in html


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
    """serve(folder) -> (URL, requests): a plain HTTP server on 127.0.0.1, stopped after the test."""
    servers = []

    def serve(folder: Path):
        requests = []
        handler = type("Handler", (_Handler,), {"requests": requests})
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder)))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", requests

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_dvc_push_serve_over_http_clone_pull_finds_nothing_to_retrain(smoke_repo, http_server, tmp_path):
    repo, remote, clone = smoke_repo, tmp_path / "remote", tmp_path / "clone"
    # publish as maintainers do: record the large outputs in their .dvc files + cache and push them
    # to a named remote (`make push REMOTE=published`: dvc commit -f + dvc push --remote), the small
    # results to git
    run(repo, DVC, "remote", "add", "published", remote)
    (repo / ".venv").symlink_to(ROOT / ".venv")  # the Makefile's tools, without reinstalling anything
    run(repo, "make", "-o", "setup", "push", "REMOTE=published")
    assert "up to date" in run(repo, DVC, "status").stdout
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "smoke results")
    assert (repo / "results" / ".gitignore").read_text().strip() == "/runs"
    tracked = run(repo, "git", "ls-files").stdout.split()
    assert "results/runs.dvc" in tracked and "results/tables/smoke/table1.md" in tracked
    assert not any(f.endswith((".pt", ".npz", "timing.json")) for f in tracked)
    assert (remote / "files" / "md5").is_dir()

    # serve the remote folder as static files; a user's clone pulls from that URL, read-only
    url, requests = http_server(remote)
    run(tmp_path, "git", "clone", "-q", repo, clone)
    assert not (clone / "data" / "prepared" / "digits.npz").exists()
    run(clone, DVC, "remote", "add", "--local", "-d", "public", url)  # .dvc/config.local, not committed
    start = time.monotonic()
    p = run(clone, DVC, "pull")
    pull_s = time.monotonic() - start
    assert requests, "dvc pull fetched nothing over HTTP"
    for path in ("data/prepared/digits.npz", "results/runs/smoke/digits/scl/seed0/checkpoint.pt",
                 "results/runs/smoke/digits/scl/seed1/features.npz", "results/runs/smoke/digits/moco/seed0/metrics.json",
                 "results/runs/smoke/digits/no_reweight/seed0/assignments.npz"):
        assert (clone / path).exists(), path
    assert "up to date" in run(clone, DVC, "status").stdout

    p_restore = run(clone, "workflow/scripts/restore-timestamps.sh", *SMOKE)
    assert "nothing to rerun" in p_restore.stdout, p_restore.stdout + p_restore.stderr
    assert nothing_to_do(clone, "all", *SMOKE)
    assert nothing_to_do(clone, *SMOKE)
    assert run_metrics(clone) == run_metrics(repo)

    # the numbers are there for DVC too
    metrics = run(clone, DVC, "metrics", "show", "--md").stdout
    assert "results/metrics/smoke/runs/digits/scl/seed0.json" in metrics
    assert "results/metrics/smoke/baselines/digits/kmeans/seed0.json" in metrics

    # what the pull gave, by kind
    runs = clone / "results" / "runs"
    kinds = {
        "prepared data (data/prepared)": du(clone / "data" / "prepared"),
        "checkpoints (checkpoint.pt and its .sha256)": sum(du(p) for p in runs.rglob("checkpoint.pt*")),
        "features (features.npz, features_init.npz)": sum(du(p) for p in runs.rglob("features*.npz")),
        "assignments (assignments.npz)": sum(du(p) for p in runs.rglob("assignments.npz")),
        "metrics and logs (metrics.json, log.jsonl)": sum(du(p) for p in runs.rglob("*") if p.suffix in (".json", ".jsonl")),
    }
    total = du(clone / "data" / "prepared") + du(runs)
    assert sum(kinds.values()) == total  # every pulled file is one of the kinds
    keep("http_pull", {"bytes": kinds, "total_bytes": total, "remote_bytes": du(remote),
                       "runs": len(list(runs.rglob("metrics.json"))), "dvc_pull_s": round(pull_s, 1),
                       "http_get_requests": len(requests), "dvc_pull_output": p.stdout.strip().splitlines()[-3:]})


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


@pytest.mark.slow
@pytest.mark.slurm
def test_smoke_set_through_slurm_equals_the_local_run(slurm, smoke_repo, tmp_path):
    repo = copy_workflow(tmp_path / "repo")
    start = time.monotonic()
    p = run(repo, SNAKEMAKE, "--workflow-profile", "profiles/slurm", "all", *SMOKE,
            # this test cluster has no accounting database (see tests/slurm_cluster.py) and no accounts
            "--slurm-status-command", "squeue", "--slurm-no-account",
            "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "10", timeout=2400)
    wall_s = time.monotonic() - start
    out = p.stdout + p.stderr
    slurm_ids = {line.split("SLURM jobid ")[1].split()[0] for line in out.splitlines()
                 if "has been submitted with SLURM jobid" in line}

    # every job but the local `all` went through sbatch, and SLURM's own record lists each as completed
    dry = run(smoke_repo, SNAKEMAKE, "-n", "-F", "all", *SMOKE).stdout
    total = int(dry.split("\ntotal")[1].split()[0])
    assert len(slurm_ids) == total - 1, out[-3000:]
    sacct = run(repo, "sacct", "--completion", "--parsable2", "--noheader", "--format=JobID,JobName,State,Elapsed",
                "--starttime", "now-1day").stdout
    accounted = {r[0]: r for r in (line.split("|") for line in sacct.strip().splitlines()) if r[0] in slurm_ids}
    assert set(accounted) == slurm_ids
    assert all(r[2] == "COMPLETED" for r in accounted.values()), accounted

    # the same numbers as the local run
    assert run_metrics(repo) == run_metrics(smoke_repo)
    for table in ("table1", "table2", "table3"):
        assert (repo / "results" / "tables" / "smoke" / f"{table}.md").read_text() == \
            (smoke_repo / "results" / "tables" / "smoke" / f"{table}.md").read_text()
    assert nothing_to_do(repo, "all", *SMOKE)
    keep("slurm", {"wall_s": round(wall_s, 1), "jobs_submitted": len(slurm_ids),
                   "sacct": ["|".join(r) for r in sorted(accounted.values(), key=lambda r: int(r[0]))],
                   "runs_compared": len(run_metrics(repo))})


# ------------------------------------------------------------------ bad settings


def _unknown_key(p):
    p["train"]["epoch"] = 3


def _wrong_type(p):
    p["train"]["lr"] = "fast"


def _unknown_dataset(p):
    p["experiment_sets"]["smoke"]["datasets"] = ["digits", "mnist"]


def _negative_epochs(p):
    p["experiment_sets"]["smoke"]["train"]["epochs"] = -1


def _unknown_variant_of_ablation(p):
    del p["variants"]["no_reweight"]


@pytest.mark.parametrize("edit, message", [
    (_unknown_key, "epoch"),
    (_wrong_type, "fast"),
    (_unknown_dataset, "unknown dataset 'mnist'"),
    (_negative_epochs, "-1"),
    (_unknown_variant_of_ablation, "no_reweight"),
    (None, "experiment_set 'nope' is not defined"),
], ids=["unknown-key", "wrong-type", "unknown-dataset", "negative-epochs", "missing-variant", "unknown-set"])
def test_bad_params_stop_before_any_job(tmp_path, edit, message):
    repo = copy_workflow(tmp_path / "repo")
    config = SMOKE
    if edit is None:
        config = ["--config", "experiment_set=nope"]
    else:
        set_params(repo, edit)

    def outputs() -> set[Path]:  # a clone already holds results/.gitignore, data/prepared.dvc ...
        return {p for made in ("results", "data", "logs", "benchmarks") for p in (repo / made).rglob("*")}

    before = outputs()
    p = run(repo, SNAKEMAKE, "--cores", "1", "all", *config, check=False, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert message in out, out
    assert outputs() == before, f"{sorted(map(str, outputs() - before))} were created:\n{out}"


# ------------------------------------------------------------------ the folder set's plan


def _jobs(repo: Path, folder: Path) -> dict[str, int]:
    p = run(repo, SNAKEMAKE, "-n", "--quiet", "rules", "all", "--config", "experiment_set=folder",
            f'data={{"folder": "{folder}", "raw_dir": "data/raw"}}')
    counts = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.slow
def test_folder_set_plans_from_the_readers_class_rule(tmp_path):
    """A flat folder with one image-less sub-folder is unlabelled for the workflow too (it used
    to plan a baseline that failed after prepare); class sub-folders get scored."""
    from PIL import Image

    repo = copy_workflow(tmp_path / "repo")
    flat, classes = tmp_path / "flat", tmp_path / "classes"
    (flat / "thumbs").mkdir(parents=True)
    (flat / "thumbs" / "index.txt").write_text("not an image")
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(flat / f"{i}.png")
        for c in ("a", "b"):
            (classes / c).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (i, 0, 0)).save(classes / c / f"{i}.png")
    unlabelled = _jobs(repo, flat)
    assert "baseline" not in unlabelled and "table" not in unlabelled
    assert unlabelled["train"] == 1 and unlabelled["clusters"] == 1
    labelled = _jobs(repo, classes)
    assert labelled["baseline"] == 1 and labelled["table"] == 1 and labelled["clusters"] == 1
