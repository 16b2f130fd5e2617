# What the chosen experiment set asks for, computed once from params.yaml (`config`).
# Everything here is plain Python on the config: no file is read but params.yaml and,
# for the `folder` set, the listing of data.folder. The functions below give the rules
# their inputs, params and resources; the rules themselves are in the other .smk files.

import hashlib
import json
import shlex
import shutil
from pathlib import Path

from snakemake.exceptions import WorkflowError

from scl.config import ConfigError, resolve
from scl.data import DATASET_NAMES

# which variants each table/figure compares (spec section 10)
PRODUCT_VARIANTS = {
    "table1": ["scl"],
    "table2": ["moco", "scl"],
    "table3": ["scl", "no_reweight"],
    "fig3": ["moco", "no_cross_cluster", "no_online_cd", "scl"],
    "fig4": ["target_only", "under_only", "instance_only", "scl"],
}
ABLATIONS = ("fig3", "fig4", "table3")
TABLES = ("table1", "table2", "table3")
BASELINE_METHODS = ("kmeans", "spectral", "agglomerative", "nmf")
# datasets decoded from image files: `scl prepare --image-size` may change their size
RESIZABLE = ("imagenet10", "imagenet-dogs", "tiny-imagenet", "folder")
IMAGENET_SUBSETS = ("imagenet10", "imagenet-dogs")
# execution settings (may differ between an interrupted run and its resumption, scl/train.py):
# changing them does not retrain
RESUMABLE = ("device", "threads", "eval_batch_size", "amp", "channels_last", "compile")


def _fail(message):
    raise WorkflowError(f"params.yaml: {message}")


# ------------------------------------------------------------------ the experiment set
SET_NAME = str(config["experiment_set"])
if SET_NAME not in config.get("experiment_sets", {}):
    _fail(
        f"experiment_set {SET_NAME!r} is not defined under experiment_sets; "
        f"defined: {', '.join(config.get('experiment_sets', {})) or '(none)'}"
    )
ES = config["experiment_sets"][SET_NAME]
# Runs and baselines are shared by every set (results/runs, results/baselines); what a set
# reports (tables, figures, metrics, curves, summary) goes under its own name, so running
# the fashion set never overwrites the digits tables.
TABLES_DIR = f"results/tables/{SET_NAME}"
FIGURES_DIR = f"results/figures/{SET_NAME}"
METRICS_DIR = f"results/metrics/{SET_NAME}"
PLOTS_DIR = f"results/plots/{SET_NAME}"
SUMMARY = f"results/summaries/{SET_NAME}.json"
DATASETS = list(ES["datasets"])
SEEDS = list(ES["seeds"])
ABLATION_SEEDS = list(ES.get("ablation_seeds", SEEDS))
BASELINE_SEEDS = list(ES.get("baseline_seeds", SEEDS))
SET_TRAIN = dict(ES.get("train", {}))
THREADS = int(ES.get("threads", 2))
DATA_CFG = config.get("data", {})
REPORT_CFG = config.get("report", {})


def _check_datasets(where, names):
    for name in names:
        if name not in config["datasets"]:
            _fail(
                f"experiment_sets.{SET_NAME}.{where}: unknown dataset {name!r}; "
                f"datasets defined in params.yaml: {', '.join(config['datasets'])}"
            )
        if name not in DATASET_NAMES:
            _fail(
                f"experiment_sets.{SET_NAME}.{where}: `scl prepare` cannot make dataset {name!r}; "
                f"it knows: {', '.join(DATASET_NAMES)}"
            )


_check_datasets("datasets", DATASETS)
_check_datasets("table2", ES.get("table2", []))
for _k, _v in ES.get("ablations", {}).items():
    _check_datasets(f"ablations.{_k}", _v)
for _k, _v in ES.get("figures", {}).items():
    _check_datasets(f"figures.{_k}", _v)
_check_datasets("diagnosis", ES.get("diagnosis", []))
for _product, _variants in PRODUCT_VARIANTS.items():
    for _variant in _variants:
        if _variant not in config["variants"]:
            _fail(f"{_product} needs variant {_variant!r}, which is not defined under variants")

# ------------------------------------------------------------------ labels
# A flat `folder` (no class sub-folders) has no labels: no scores, no tables, no baselines,
# only assignments and the figures that need no labels.
LABEL_FREE_FIGURES = ("fig6", "curves")


def _has_labels(dataset):
    if dataset != "folder":
        return True
    folder = DATA_CFG.get("folder") or config["datasets"]["folder"].get("root")
    if not folder:
        _fail(
            f"experiment set {SET_NAME!r} uses dataset `folder`: set data.folder to your image folder "
            "(class sub-folders give labels; a flat folder is clustered without scores)"
        )
    path = Path(folder).expanduser()
    if not path.is_dir():
        _fail(f"data.folder {folder!r} is not a folder")
    return any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


LABELLED = {d: _has_labels(d) for d in DATASETS}
SCORED = [d for d in DATASETS if LABELLED[d]]


def product_datasets(product):
    """Datasets a table/figure of this set covers (labelled ones where it needs labels)."""
    if product == "table1":
        ds = DATASETS
    elif product == "table2":
        ds = ES.get("table2", [])
    elif product in ABLATIONS:
        ds = ES.get("ablations", {}).get(product, [])
    elif product == "diagnosis":
        ds = ES.get("diagnosis", [])
    else:
        ds = ES.get("figures", {}).get(product, [])
    if product in LABEL_FREE_FIGURES:
        return list(ds)
    return [d for d in ds if LABELLED.get(d, True)]


def set_tables():
    return [t for t in ES.get("tables", []) if product_datasets(t)]


# ------------------------------------------------------------------ runs
def run_dir(dataset, variant, seed):
    return f"results/runs/{dataset}/{variant}/seed{seed}"


def run_metrics(dataset, variant, seed):
    return f"{run_dir(dataset, variant, seed)}/metrics.json"


def product_runs(product):
    """metrics.json of every run a table/figure needs."""
    seeds = product_seeds(product)
    return [
        run_metrics(d, v, s)
        for d in product_datasets(product)
        for v in PRODUCT_VARIANTS[product]
        for s in seeds
    ]


def set_runs():
    """Every run of the set: SCL on every dataset and seed, plus what the products need."""
    runs = [run_metrics(d, "scl", s) for d in DATASETS for s in SEEDS]
    for product in PRODUCT_VARIANTS:
        if product == "table1" or product in ES.get("tables", []) or product in ES.get("ablations", {}):
            runs += product_runs(product)
    return list(dict.fromkeys(runs))


_SETTINGS_CACHE = {}


def run_settings(dataset, variant):
    """The resolved settings of a run (seed aside), as scl/config.py resolves them."""
    key = (dataset, variant)
    if key not in _SETTINGS_CACHE:
        try:
            s = resolve(config, dataset, variant, 0, SET_TRAIN).to_dict()
        except ConfigError as e:
            _fail(f"experiment set {SET_NAME!r}: {e}")
        for name in RESUMABLE:
            s["train"].pop(name, None)
        s.pop("seed", None)
        _SETTINGS_CACHE[key] = s
    return _SETTINGS_CACHE[key]


def settings_hash(wildcards):
    """Changes when anything that changes the run's result changes: the params trigger."""
    blob = json.dumps(run_settings(wildcards.dataset, wildcards.variant), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _gpu_present():
    """A cheap guess (no torch import at DAG time): an NVIDIA driver tool is installed."""
    return shutil.which("nvidia-smi") is not None


GPU_MODE = ES.get("gpu", "auto")
USE_GPU = GPU_MODE is True or (GPU_MODE == "auto" and _gpu_present())


def train_overrides(wildcards):
    """`--set` arguments of the experiment set (params.yaml's experiment_sets.<set>.train)."""
    items = dict(SET_TRAIN)
    if GPU_MODE is False:
        items["device"] = "cpu"
    args = []
    for key, value in items.items():
        text = json.dumps(value) if not isinstance(value, str) else value
        args += ["--set", shlex.quote(f"{key}={text}")]
    return " ".join(args)


def train_gpu(wildcards):
    """1 when the run holds a GPU: the profile's `resources: [gpu=N]` caps concurrent GPU jobs."""
    wanted = SET_TRAIN.get("device", config["train"].get("device", "auto"))
    return int(USE_GPU and wanted != "cpu")


# ------------------------------------------------------------------ data
def prepared(dataset):
    return f"data/prepared/{dataset}.npz"


def prepare_args(wildcards):
    d = wildcards.dataset
    ds = config["datasets"][d]
    args = ["--raw-dir", shlex.quote(str(DATA_CFG.get("raw_dir", "data/raw")))]
    if d in RESIZABLE:
        args += ["--image-size", str(ds["image_size"])]
    root = ds.get("root")
    if d in IMAGENET_SUBSETS:
        root = DATA_CFG.get("imagenet_root") or root
    elif d == "folder":
        root = DATA_CFG.get("folder") or root
    if root:
        args += ["--root", shlex.quote(str(Path(root).expanduser()))]
    return " ".join(args)


def prepare_missing_root(wildcards):
    """Non-empty (the fix) when a dataset needs a folder that params.yaml does not give."""
    d = wildcards.dataset
    if "--root" in prepare_args(wildcards):
        return ""
    if d in IMAGENET_SUBSETS:
        return f"{d} is read from ImageNet: set data.imagenet_root in params.yaml to your ILSVRC-2012 train folder"
    if d == "folder":
        return "set data.folder in params.yaml to your image folder"
    return ""


# ------------------------------------------------------------------ baselines
def baseline_metrics(dataset, method, seed):
    return f"results/baselines/{dataset}/{method}/seed{seed}/metrics.json"


def set_baselines():
    methods = ES.get("baselines", [])
    return [baseline_metrics(d, m, s) for d in SCORED for m in methods for s in BASELINE_SEEDS]


def baseline_args(wildcards):
    """--max-samples from params.yaml (null = every image: 0 for `scl baseline`)."""
    n = config.get("baselines", {}).get(wildcards.method, {}).get("max_samples")
    return f"--max-samples {n or 0}"


# ------------------------------------------------------------------ tables and figures
def table_outputs(name):
    return [f"{TABLES_DIR}/{name}.{ext}" for ext in ("md", "csv", "tex")]


def figure_outputs(name):
    if name in ("fig3", "fig4"):
        return [f"{FIGURES_DIR}/{name}.png"] if product_datasets(name) else []
    return [f"{FIGURES_DIR}/{name}_{d}.png" for d in product_datasets(name)]


def set_figures():
    out = []
    for name in ("fig3", "fig4"):
        if name in ES.get("ablations", {}):
            out += figure_outputs(name)
    for name in ES.get("figures", {}):
        out += figure_outputs(name)
    return out


def table_inputs(wildcards):
    name = wildcards.table
    runs = product_runs(name)
    if name == "table1":
        runs += [b for b in set_baselines()]
    return runs


def product_seeds(product):
    """The seeds a table/figure averages over: exactly those its runs were asked for."""
    return SEEDS if product in ("table1", "table2") else ABLATION_SEEDS


def table_args(wildcards):
    args = ["--datasets", *product_datasets(wildcards.table)]
    args += ["--seeds", *map(str, product_seeds(wildcards.table))]
    extra = REPORT_CFG.get("extra_reported")
    if extra and wildcards.table == "table1":
        args += ["--extra-reported", extra]
    return " ".join(shlex.quote(a) for a in args)


def figure_seed():
    seed = REPORT_CFG.get("figure_seed", SEEDS[0])
    return seed if seed in SEEDS else SEEDS[0]


def figure_runs(wildcards):
    """Runs one dataset's figure reads: Figure 5/6 one run, the curves every SCL seed."""
    if wildcards.figure == "curves":
        return [run_metrics(wildcards.dataset, "scl", s) for s in SEEDS]
    return [run_metrics(wildcards.dataset, "scl", figure_seed())]


def diagnosis_outputs():
    return [f"{TABLES_DIR}/diagnosis_{d}.md" for d in product_datasets("diagnosis")]


def diagnosis_variants(dataset):
    """SCL, and MoCo where the set trains it (Table 2): the runs `scl diagnose` reads."""
    return ["scl"] + (["moco"] if dataset in product_datasets("table2") else [])


def diagnosis_runs(wildcards):
    return [run_metrics(wildcards.dataset, v, s) for v in diagnosis_variants(wildcards.dataset) for s in SEEDS]


def all_outputs():
    out = set_runs() + set_figures() + diagnosis_outputs() + [SUMMARY]
    for name in set_tables():
        out += table_outputs(name)
    return out
