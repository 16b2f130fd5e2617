"""Where every file of the pipeline lives: the one home of the project's path layout.

The command line's defaults, the Snakemake workflow (through scl/experiments.py) and the
report code build their paths here, so a layout change is one edit.

    data/prepared/<dataset>.npz                                  scl prepare
    results/runs/<set>/<dataset>/<variant>/seed<k>/              scl train (one run folder)
    results/baselines/<dataset>/<method>/seed<k>/metrics.json    scl baseline
    results/{tables,figures,metrics,plots}/<set>/, results/summaries/<set>.json   the report
    results/clusters/<set>/<dataset>/seed<k>/                    scl clusters (image folders)

Each experiment set has its own run tree (results/runs/<set>/...): the smoke set's 2-epoch
runs never overwrite the digits set's 40-epoch ones. A run started by hand (`scl train`
without --out) goes to the `manual` tree. Baselines do not depend on the set (they read
only the prepared data and baselines.<method> of params.yaml), so every set shares them.
"""

from __future__ import annotations

PREPARED_DIR = "data/prepared"
RUNS_DIR = "results/runs"
BASELINES_DIR = "results/baselines"
MANUAL_SET = "manual"  # the run tree of `scl train` without --out

# files of a run folder (scl/train.py writes them; metrics.json last = the run is complete)
RUN_METRICS = "metrics.json"
RUN_LOG = "log.jsonl"
RUN_ASSIGNMENTS = "assignments.npz"
# wall-clock times of a run or baseline: kept out of the result files, so that a regeneration
# that reproduces the numbers leaves them byte-identical (git and DVC ignore timing.json)
TIMING = "timing.json"


def prepared(dataset: str) -> str:
    return f"{PREPARED_DIR}/{dataset}.npz"


def runs_root(experiment_set: str = MANUAL_SET) -> str:
    """The run tree of one experiment set: <root>/<dataset>/<variant>/seed<k>."""
    return f"{RUNS_DIR}/{experiment_set}"


def run_dir(root: str, dataset: str, variant: str, seed: int | str) -> str:
    """One run folder under a run tree (`runs_root(set)`, or any --runs folder)."""
    return f"{root}/{dataset}/{variant}/seed{seed}"


def baseline_metrics(dataset: str, method: str, seed: int | str, root: str = BASELINES_DIR) -> str:
    return f"{root}/{dataset}/{method}/seed{seed}/metrics.json"


def tables_dir(experiment_set: str) -> str:
    return f"results/tables/{experiment_set}"


def figures_dir(experiment_set: str) -> str:
    return f"results/figures/{experiment_set}"


def metrics_dir(experiment_set: str) -> str:
    return f"results/metrics/{experiment_set}"


def plots_dir(experiment_set: str) -> str:
    return f"results/plots/{experiment_set}"


def summary(experiment_set: str) -> str:
    return f"results/summaries/{experiment_set}.json"


def clusters_dir(experiment_set: str, dataset: str, seed: int | str) -> str:
    """What `scl clusters` writes for one run: clusters.csv, index.md, sheets/."""
    return f"results/clusters/{experiment_set}/{dataset}/seed{seed}"
