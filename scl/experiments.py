"""An experiment set of params.yaml (`experiment_sets.<name>`) as a plain, validated object.

    es = ExperimentSet.from_params(load_params(), "digits")
    es.runs()                 every training run of the set: Run(dataset, variant, seed)
    es.product_runs("fig3")   the runs one table/figure needs
    es.run_settings(run)      the resolved settings of one run (scl.config.resolve + the set's train block)
    es.all_outputs()          every file `snakemake all` makes for the set

What the set asks for (datasets, seeds, runs, which variants each table/figure compares,
baselines, output paths) is computed here, in plain Python tested in milliseconds
(tests/test_experiments.py); workflow/rules/common.smk only adapts it to Snakemake.
A bad set raises ConfigError naming the key and the fix, before any job starts.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from scl import job_resources, paths
from scl.config import ConfigError, RunSettings, code_digest, identity_digest, resolve
from scl.job_resources import JobResources

# which variants each table/figure compares (spec section 10)
PRODUCT_VARIANTS = {
    "table1": ("scl",),
    "table2": ("moco", "scl"),
    "table3": ("scl", "no_reweight"),
    "fig3": ("moco", "no_cross_cluster", "no_online_cd", "scl"),
    "fig4": ("under_only", "target_only", "instance_only", "scl"),
}
TABLES = ("table1", "table2", "table3")
FIGURES = ("fig3", "fig4", "fig5", "fig6", "curves", "confusion")
ABLATIONS = ("fig3", "fig4", "table3")  # the ablation_seeds' products
ABLATION_FIGURES = ("fig3", "fig4")  # one figure over datasets; the others are one per dataset
DATASET_FIGURES = ("fig5", "fig6", "curves", "confusion")
# a flat `folder` (no class sub-folders) has no labels: no scores, no tables, no baselines,
# only assignments and the figures that need no labels
LABEL_FREE_FIGURES = ("fig6", "curves")
TABLE_FORMATS = ("md", "csv", "tex")

# The code each kind of job runs besides training (scl.config.NOT_TRAINING_CODE says what
# training runs): part of each job's rerun trigger, with its settings (scl.config.code_digest)
PREPARE_CODE = ("data/", "io.py")
BASELINE_CODE = ("baselines.py", "metrics.py", "io.py")
# (cli.py holds every command's handler; the report's are cheap to rerun, the baselines' are
# not, and their handler only writes what scl.baselines computed)
REPORT_CODE = ("report/", "reference/", "cli.py", "metrics.py", "io.py", "assign.py")
# datasets of image files get what a user sorting images wants (scl clusters, for every SCL
# seed): clusters.csv (path, cluster, confidence), a contact sheet per cluster, index.md
CLUSTER_DATASETS = ("folder",)


@dataclass(frozen=True, order=True)
class Run:
    dataset: str
    variant: str
    seed: int


def gpu_present() -> bool:
    """A cheap guess (no torch import at DAG time): an NVIDIA driver tool is installed."""
    return shutil.which("nvidia-smi") is not None


def _names(value, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    return list(value)


@dataclass(frozen=True)
class ExperimentSet:
    name: str
    params: dict = field(repr=False, compare=False)
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    ablation_seeds: tuple[int, ...]
    baseline_seeds: tuple[int, ...]
    train: dict  # training overrides of every run of the set
    threads: int
    gpu: bool | str
    resources: dict[str, JobResources]  # "train"/"baseline" -> memory and time limit of one job
    baseline_methods: tuple[str, ...]
    tables: tuple[str, ...]  # as asked for (those with no dataset to cover are dropped by `set_tables`)
    table2: tuple[str, ...]
    ablations: dict  # fig3/fig4/table3 -> datasets
    figures: dict  # fig5/fig6/curves/confusion -> datasets
    diagnosis: tuple[str, ...]
    labelled: dict  # dataset -> whether it has ground-truth labels

    # -------------------------------------------------------------- building and checking
    @classmethod
    def from_params(cls, params: dict, name: str | None = None,
                    has_labels: Callable[[str], bool] | None = None) -> "ExperimentSet":
        """The set `name` (default: params' experiment_set), checked against params.yaml.

        `has_labels(folder)` decides whether a user folder has class sub-folders (default:
        scl.data.folder.has_class_folders); it is called only for sets with dataset `folder`."""
        name = str(name if name is not None else params.get("experiment_set"))
        sets = params.get("experiment_sets") or {}
        where = f"experiment_sets.{name}"
        if name not in sets:
            raise ConfigError(f"experiment_set {name!r} is not defined under experiment_sets; "
                              f"defined: {', '.join(sets) or '(none)'}. Fix: pick one of them "
                              f"(--config experiment_set=NAME) or add it to params.yaml")
        es = sets[name]
        if "datasets" not in es or "seeds" not in es:
            raise ConfigError(f"{where}: needs `datasets` and `seeds` (e.g. datasets: [digits], seeds: [0, 1, 2])")
        datasets = _names(es["datasets"], f"{where}.datasets")
        seeds = [int(s) for s in _names(es["seeds"], f"{where}.seeds")]
        if not datasets or not seeds:
            raise ConfigError(f"{where}: `datasets` and `seeds` must each name at least one")
        ablations = {k: _names(v, f"{where}.ablations.{k}") for k, v in (es.get("ablations") or {}).items()}
        figures = {k: _names(v, f"{where}.figures.{k}") for k, v in (es.get("figures") or {}).items()}
        out = cls(
            name=name, params=params, datasets=tuple(datasets), seeds=tuple(seeds),
            ablation_seeds=tuple(int(s) for s in es.get("ablation_seeds", seeds)),
            baseline_seeds=tuple(int(s) for s in es.get("baseline_seeds", seeds)),
            train=dict(es.get("train") or {}), threads=int(es.get("threads", 2)), gpu=es.get("gpu", "auto"),
            resources=job_resources.for_set(es.get("resources"), f"{where}.resources", datasets),
            baseline_methods=tuple(_names(es.get("baselines"), f"{where}.baselines")),
            tables=tuple(_names(es.get("tables"), f"{where}.tables")),
            table2=tuple(_names(es.get("table2"), f"{where}.table2")),
            ablations=ablations, figures=figures,
            diagnosis=tuple(_names(es.get("diagnosis"), f"{where}.diagnosis")),
            labelled={},
        )
        out._check()
        labelled = {d: out._has_labels(d, has_labels) for d in out.datasets}
        object.__setattr__(out, "labelled", labelled)
        return out

    def _check(self) -> None:
        from scl.baselines import METHODS
        from scl.data import DATASET_NAMES

        where = f"experiment_sets.{self.name}"
        known = self.params.get("datasets") or {}
        named = [("datasets", self.datasets), ("table2", self.table2), ("diagnosis", self.diagnosis)]
        named += [(f"ablations.{k}", v) for k, v in self.ablations.items()]
        named += [(f"figures.{k}", v) for k, v in self.figures.items()]
        for key, names in named:
            for d in names:
                if d not in known:
                    raise ConfigError(f"{where}.{key}: unknown dataset {d!r}; datasets defined in params.yaml: "
                                      f"{', '.join(known)}. Fix: use one of them or add a datasets.{d} block")
                if d not in DATASET_NAMES:
                    raise ConfigError(f"{where}.{key}: `scl prepare` cannot make dataset {d!r}; it knows: "
                                      f"{', '.join(DATASET_NAMES)}")
        for key, allowed, given in (("tables", TABLES, self.tables), ("ablations", ABLATIONS, self.ablations),
                                    ("figures", DATASET_FIGURES, self.figures)):
            for p in given:
                if p not in allowed:
                    raise ConfigError(f"{where}.{key}: unknown product {p!r}; choose from {', '.join(allowed)}")
        for m in self.baseline_methods:
            if m not in METHODS:
                raise ConfigError(f"{where}.baselines: unknown method {m!r}; choose from {', '.join(METHODS)}")
        for product, variants in PRODUCT_VARIANTS.items():
            for v in variants:
                if v not in (self.params.get("variants") or {}):
                    raise ConfigError(f"{product} needs variant {v!r}, which is not defined under variants. "
                                      f"Fix: add `{v}:` to the variants block of params.yaml")
        if self.gpu not in (True, False, "auto"):
            raise ConfigError(f"{where}.gpu: expected true, false or auto, got {self.gpu!r}")
        for d in self.datasets:  # every run's settings resolve (raises ConfigError naming the key)
            for v in self.variants_of(d):
                resolve(self.params, d, v, 0, self.train)

    def _has_labels(self, dataset: str, has_labels: Callable[[str], bool] | None) -> bool:
        if dataset != "folder":
            return True
        folder = self.data_root("folder")
        if not folder:
            raise ConfigError(f"experiment set {self.name!r} uses dataset `folder`: set data.folder to your image "
                              "folder (class sub-folders give labels; a flat folder is clustered without scores)")
        if not Path(folder).is_dir():
            raise ConfigError(f"data.folder {folder!r} is not a folder. Fix: set data.folder to your image folder")
        if has_labels is None:
            from scl.data.folder import has_class_folders as has_labels
        return bool(has_labels(folder))

    # -------------------------------------------------------------- what the set covers
    @property
    def scored(self) -> list[str]:
        """Datasets with labels: those that get scores, tables and baselines."""
        return [d for d in self.datasets if self.labelled.get(d, True)]

    def product_datasets(self, product: str) -> list[str]:
        """Datasets a table/figure of this set covers (labelled ones where it needs labels)."""
        if product == "table1":
            ds = list(self.datasets)
        elif product == "table2":
            ds = list(self.table2)
        elif product in ABLATIONS:
            ds = list(self.ablations.get(product, []))
        elif product == "diagnosis":
            ds = list(self.diagnosis)
        else:
            ds = list(self.figures.get(product, []))
        if product in LABEL_FREE_FIGURES:
            return ds
        return [d for d in ds if self.labelled.get(d, True)]

    def product_seeds(self, product: str) -> tuple[int, ...]:
        """The seeds a table/figure averages over: exactly those its runs were asked for."""
        return self.seeds if product in ("table1", "table2") else self.ablation_seeds

    def product_runs(self, product: str) -> list[Run]:
        """Every run a table/figure compares."""
        return [Run(d, v, s) for d in self.product_datasets(product)
                for v in PRODUCT_VARIANTS[product] for s in self.product_seeds(product)]

    def runs(self) -> list[Run]:
        """Every run of the set: SCL on every dataset and seed, plus what its tables/ablations need."""
        runs = [Run(d, "scl", s) for d in self.datasets for s in self.seeds]
        for product in PRODUCT_VARIANTS:
            if product == "table1" or product in self.tables or product in self.ablations:
                runs += self.product_runs(product)
        return list(dict.fromkeys(runs))

    def variants_of(self, dataset: str) -> list[str]:
        return list(dict.fromkeys(r.variant for r in self.runs() if r.dataset == dataset)) or ["scl"]

    def set_tables(self) -> list[str]:
        return [t for t in self.tables if self.product_datasets(t)]

    def baselines(self) -> list[tuple[str, str, int]]:
        """(dataset, method, seed) of every baseline of the set."""
        return [(d, m, s) for d in self.scored for m in self.baseline_methods for s in self.baseline_seeds]

    def baseline_max_samples(self, method: str) -> int:
        """baselines.<method>.max_samples of params.yaml, as `scl baseline --max-samples` takes it (0 = all)."""
        return int(((self.params.get("baselines") or {}).get(method) or {}).get("max_samples") or 0)

    @property
    def figure_seed(self) -> int:
        """The run whose features/assignments Figures 5 and 6 show (report.figure_seed, if the set has it)."""
        seed = (self.params.get("report") or {}).get("figure_seed", self.seeds[0])
        return seed if seed in self.seeds else self.seeds[0]

    def figure_runs(self, figure: str, dataset: str) -> list[Run]:
        """Runs one dataset's figure reads: Figure 5/6 and the confusion one run, the curves every SCL seed."""
        if figure == "curves":
            return [Run(dataset, "scl", s) for s in self.seeds]
        return [Run(dataset, "scl", self.figure_seed)]

    def diagnosis_variants(self, dataset: str) -> list[str]:
        """SCL, and MoCo where the set trains it (Table 2): the runs `scl diagnose` reads."""
        return ["scl"] + (["moco"] if dataset in self.product_datasets("table2") else [])

    def diagnosis_runs(self, dataset: str) -> list[Run]:
        return [Run(dataset, v, s) for v in self.diagnosis_variants(dataset) for s in self.seeds]

    # -------------------------------------------------------------- settings of a run
    def run_settings(self, run: Run, threads: int | None = None) -> RunSettings:
        """The resolved settings of one run: params.yaml + the set's train block (+ device=cpu for gpu: false)."""
        overrides = dict(self.train)
        if self.gpu is False:
            overrides["device"] = "cpu"
        if threads is not None:
            overrides["threads"] = threads
        try:
            return resolve(self.params, run.dataset, run.variant, run.seed, overrides)
        except ConfigError as e:
            raise ConfigError(f"experiment set {self.name!r}: {e}") from None

    def run_identity(self, run: Run) -> str:
        """The digest of the run's method settings and training code (scl.config.identity_digest)."""
        return identity_digest(self.run_settings(run))

    def uses_gpu(self, present: Callable[[], bool] = gpu_present) -> bool:
        """Whether a training job holds one `gpu` resource. With `gpu: auto`, `present()` says
        whether the machines the jobs run on have a GPU: the workflow passes "yes" for a cluster
        executor (the node that builds the job graph says nothing about the compute nodes), and
        gpu_present() (this machine's nvidia-smi) for local execution."""
        wanted = self.train.get("device", self.params["train"].get("device", "auto"))
        return (self.gpu is True or (self.gpu == "auto" and present())) and wanted != "cpu"

    # -------------------------------------------------------------- data
    def data_root(self, dataset: str) -> str | None:
        """The user folder `scl prepare` reads for a dataset (None: it downloads or needs none).
        A dataset that cannot be downloaded reads data.folder (`folder`) or data.imagenet_root."""
        from scl.data.registry import get_spec

        data = self.params.get("data") or {}
        root = (self.params["datasets"][dataset] or {}).get("root")
        spec = get_spec(dataset)
        if spec.takes_root and not spec.resources and dataset != "digits":
            root = data.get("folder" if dataset == "folder" else "imagenet_root") or root
        return str(Path(root).expanduser()) if root else None

    def prepare_args(self, dataset: str) -> list[str]:
        """`scl prepare` arguments of a dataset: raw folder, image size (resizable ones), user folder."""
        from scl.data.registry import get_spec

        ds = self.params["datasets"][dataset]
        args = ["--raw-dir", str((self.params.get("data") or {}).get("raw_dir", "data/raw"))]
        if get_spec(dataset).resizable and ds.get("image_size") is not None:  # folder: null = from the images
            args += ["--image-size", str(ds["image_size"])]
        if dataset == "folder":
            args += ["--channels", str(ds.get("channels", 3))]
        root = self.data_root(dataset)
        if root:
            args += ["--root", root]
        return args

    def missing_root(self, dataset: str) -> str:
        """Non-empty (the fix) when a dataset needs a folder that params.yaml does not give."""
        from scl.data.registry import get_spec

        spec = get_spec(dataset)
        if self.data_root(dataset) or not spec.takes_root or spec.resources:
            return ""
        if dataset == "folder":
            return "set data.folder in params.yaml to your image folder"
        return f"{dataset} is read from ImageNet: set data.imagenet_root in params.yaml to your ILSVRC-2012 train folder"

    # -------------------------------------------------------------- output paths
    # where the set's outputs go (scl/paths.py): every one under the set's name
    runs_root = property(lambda self: paths.runs_root(self.name))
    tables_dir = property(lambda self: paths.tables_dir(self.name))
    figures_dir = property(lambda self: paths.figures_dir(self.name))
    metrics_dir = property(lambda self: paths.metrics_dir(self.name))
    plots_dir = property(lambda self: paths.plots_dir(self.name))
    summary = property(lambda self: paths.summary(self.name))

    def run_dir(self, run: Run) -> str:
        return paths.run_dir(self.runs_root, run.dataset, run.variant, run.seed)

    def run_metrics(self, run: Run) -> str:
        return f"{self.run_dir(run)}/{paths.RUN_METRICS}"

    def baseline_metrics(self) -> list[str]:
        return [paths.baseline_metrics(d, m, s) for d, m, s in self.baselines()]

    def table_outputs(self, table: str) -> list[str]:
        return [f"{self.tables_dir}/{table}.{ext}" for ext in TABLE_FORMATS]

    def figure_outputs(self, figure: str) -> list[str]:
        datasets = self.product_datasets(figure)
        if figure in ABLATION_FIGURES:
            return [f"{self.figures_dir}/{figure}.png"] if datasets else []
        return [f"{self.figures_dir}/{figure}_{d}.png" for d in datasets]

    def set_figures(self) -> list[str]:
        out = [f for name in ABLATION_FIGURES if name in self.ablations for f in self.figure_outputs(name)]
        return out + [f for name in self.figures for f in self.figure_outputs(name)]

    def diagnosis_outputs(self) -> list[str]:
        return [f"{self.tables_dir}/diagnosis_{d}.md" for d in self.product_datasets("diagnosis")]

    def cluster_runs(self) -> list[Run]:
        return [Run(d, "scl", s) for d in self.datasets if d in CLUSTER_DATASETS for s in self.seeds]

    def clusters_dir(self, run: Run) -> str:
        return paths.clusters_dir(self.name, run.dataset, run.seed)

    def cluster_outputs(self) -> list[str]:
        return [f"{self.clusters_dir(r)}/clusters.csv" for r in self.cluster_runs()]

    def table_inputs(self, table: str) -> list[str]:
        files = [self.run_metrics(r) for r in self.product_runs(table)]
        return files + (self.baseline_metrics() if table == "table1" else [])

    def all_outputs(self) -> list[str]:
        out = [self.run_metrics(r) for r in self.runs()] + self.set_figures() + self.diagnosis_outputs()
        out += self.cluster_outputs()
        out.append(self.summary)
        for t in self.set_tables():
            out += self.table_outputs(t)
        return out


def code_digests() -> dict[str, str]:
    """The code digest of each kind of job: with its settings, what makes it rerun."""
    return {"train": code_digest(), "prepare": code_digest(include=PREPARE_CODE),
            "baseline": code_digest(include=BASELINE_CODE), "report": code_digest(include=REPORT_CODE)}
