# Adapters from the experiment set (scl/experiments.py, plain Python with its own unit tests)
# to Snakemake: file lists for inputs, strings for params, resources. No decision is made here.

import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from scl import paths
from scl.config import ConfigError, settings_to_json
from scl.experiments import ABLATION_FIGURES, DATASET_FIGURES, TABLES, ExperimentSet, Run, code_digests, gpu_present

try:
    EXP = ExperimentSet.from_params(config)
except ConfigError as e:
    raise WorkflowError(f"params.yaml: {e}") from None

SET_NAME = EXP.name
CODE = code_digests()  # per kind of job: with its settings, what makes a job rerun
# one run folder, as a pattern: results/runs/<set>/{dataset}/{variant}/seed{seed}
RUN_DIR = paths.run_dir(EXP.runs_root, "{dataset}", "{variant}", "{seed}")


def metrics_of(runs):
    return [EXP.run_metrics(r) for r in runs]


def _run(wildcards):
    return Run(wildcards.dataset, wildcards.variant, int(wildcards.seed))


def _args(items):
    return " ".join(shlex.quote(str(a)) for a in items)


# ------------------------------------------------------------------ training
def run_identity(wildcards):
    """The run's method settings and training code, digested (scl.config): the rerun trigger."""
    return EXP.run_identity(_run(wildcards))


def run_settings(wildcards, threads):
    """The resolved settings `scl train --settings` trains with. Taking `threads` makes this a
    derived param, which Snakemake does not compare: execution settings never retrain."""
    return shlex.quote(settings_to_json(EXP.run_settings(_run(wildcards), threads)))


def _gpus_where_jobs_run():
    """gpu: auto -> a cluster executor's jobs get a GPU (the node building the DAG says nothing
    about the compute nodes); local jobs when this machine has nvidia-smi."""
    return workflow.non_local_exec or gpu_present()


def train_gpu(wildcards):
    """1 when the run holds a GPU: locally `--resources gpu=N` caps concurrent GPU jobs and
    scl.gpu_slots hands each its own device; on SLURM it becomes `--gpus=1`."""
    return int(EXP.uses_gpu(_gpus_where_jobs_run))


def job_mem_mb(kind):
    """resources.mem_mb of a kind of job (train, baseline): the set's `resources` block."""
    return EXP.resources[kind].mem_mb


def job_runtime(kind):
    """resources.runtime (minutes) of a kind of job, per dataset, times the attempt (a retry
    resumes with more time)."""
    return lambda wildcards, attempt: EXP.resources[kind].runtime_for(wildcards.dataset, attempt)


# ------------------------------------------------------------------ data and baselines
def prepare_args(wildcards):
    return _args(EXP.prepare_args(wildcards.dataset))


def prepare_missing_root(wildcards):
    return EXP.missing_root(wildcards.dataset)


def baseline_args(wildcards):
    """--max-samples from params.yaml (null = every image: 0 for `scl baseline`)."""
    return f"--max-samples {EXP.baseline_max_samples(wildcards.method)}"


# ------------------------------------------------------------------ tables and figures
def table_inputs(wildcards):
    return EXP.table_inputs(wildcards.table)


def table_args(wildcards):
    args = ["--datasets", *EXP.product_datasets(wildcards.table), "--seeds", *EXP.product_seeds(wildcards.table)]
    extra = (config.get("report") or {}).get("extra_reported")
    if extra and wildcards.table == "table1":
        args += ["--extra-reported", extra]
    return _args(args)


def figure_runs(wildcards):
    return metrics_of(EXP.figure_runs(wildcards.figure, wildcards.dataset))


def diagnosis_runs(wildcards):
    return metrics_of(EXP.diagnosis_runs(wildcards.dataset))


def all_outputs():
    return EXP.all_outputs()
