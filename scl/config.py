"""params.yaml -> validated settings of one training run.

Resolution order, later wins (params.yaml's header says the same):
    train  <-  datasets.<dataset>.train  <-  variants.<variant>  <-  --set overrides

Everything is checked before any work starts: the file against the JSON schema
(`scl/params.schema.json`, also used by the Snakemake workflow), then the resolved
run settings for what a schema cannot express. Errors name the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A bad setting. The message names the key, the value and what would be accepted."""

    exit_code = 2  # scl.errors


@dataclass(frozen=True)
class TrainSettings:
    backbone: str
    cnn_width: int
    augment: str
    epochs: int
    batch_size: int
    lr: float
    lr_schedule: str
    warmup_epochs: int
    weight_decay: float
    sgd_momentum: float
    classifier_lr_mult: float
    temperature: float
    ema_momentum: float
    feature_dim: int
    memory_size: int
    memory_init: str
    tasks: tuple[str, ...]
    cross_cluster: bool
    online_cd: bool
    reweight: bool
    reweight_s0: float
    balance_loss: bool
    split_small: bool
    refill_memory: bool
    min_cluster_ratio: float
    eval_batch_size: int
    eval_every: int
    save_features: bool
    device: str
    threads: int
    amp: str = "auto"
    channels_last: bool | str = "auto"
    compile: bool = False
    checkpoint_every: int = 1
    diagnostics: bool = False
    diagnostics_sample: int = 5000
    cluster_warmup_epochs: int = 0  # ours (issue 10): epochs before pseudo-labels are used (scl/train.py)
    init_labels: str = "random"  # random (spec section 6) | kmeans | umap_kmeans (ours): the partition clustering starts from
    eval_crop: float = 1.0  # ours (issue 10): side fraction of the centred crop the un-augmented path reads; 1 = whole image
    projection: str = "linear"  # linear (spec section 2) | mlp (ours, issue 10): each task's feature space on the backbone
    bn_splits: int = 1  # ours (issue 10): > 1 = MoCo's shuffle BN on one device (scl/models/split_batchnorm.py)
    relabel_epochs: tuple[int, ...] = ()  # ours (issue 10): after these epochs the pseudo-labels start again from
    # `init_labels` on the features as they are then (scl/train.py); () = never (the paper)


@dataclass(frozen=True)
class DatasetSettings:
    name: str
    num_classes: int | None  # None: from the prepared data's classes (`with_data`)
    image_size: int | None  # None: from the prepared data's images (`with_data`)
    channels: int
    root: str | None = None


@dataclass(frozen=True)
class RunSettings:
    dataset: DatasetSettings
    variant: str
    seed: int
    train: TrainSettings
    overrides: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainSettings))


def load_schema() -> dict:
    return json.loads(resources.files("scl").joinpath("params.schema.json").read_text())


# ------------------------------------------------------------------ strict reading
# JSON Schema counts 64.0 as an integer and lets NaN through every bound (NaN compares
# false with everything). Here an integer is an int (not a float, not a bool) and a
# number is finite, so `epochs: 64.0` and `lr: .nan` are refused before any work starts.
def _is_int(checker, x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_finite_number(checker, x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_int, "number": _is_finite_number}),
)

# YAML 1.2 floats without a dot (5e-2, 1E+3), which PyYAML (YAML 1.1) reads as strings
_FLOAT_NO_DOT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last
    silently) and reads `5e-2` as the number YAML 1.2 and every other tool mean."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            first: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    line = first.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if line != key_node.start_mark.line + 1:
                    raise ConfigError(
                        f"line {key_node.start_mark.line + 1}: key {key!r} is given twice in one block (first on "
                        f"line {line}); YAML would silently keep the last one. Fix: delete one of them")
        return super().construct_mapping(node, deep)


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_NO_DOT, list("-+0123456789."))


def load_yaml_strict(text: str, source: str = "params.yaml"):
    """YAML text -> Python, refusing duplicate keys (ConfigError naming the line)."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source} is not valid YAML: {e}") from e


def _coerce_strings(params: Any, validator) -> list[str]:
    """Read strings as YAML scalars where the schema refuses them as strings.

    Snakemake's `--config 'train={"epochs": 5}'` delivers every value as a string ("5"),
    and Snakemake's own YAML 1.1 reader turns `lr: 5e-2` into "5e-2". A string that reads
    as a number, bool or null which the schema then accepts is replaced in place (so
    Snakemake's `config` gets the value too); anything else is left for the error message.
    Returns the paths changed.
    """
    changed = []
    for _ in range(100):  # each pass fixes what the previous one uncovered
        progress = False
        for err in validator.iter_errors(params):
            if not isinstance(err.instance, str) or not err.absolute_path:
                continue
            try:
                value = yaml.load(err.instance, Loader=StrictLoader)  # noqa: S506
            except (yaml.YAMLError, ConfigError):
                continue
            if isinstance(value, str) or not validator.evolve(schema=err.schema).is_valid(value):
                continue
            *parents, last = err.absolute_path
            container = params
            for key in parents:
                container = container[key]
            container[last] = value
            changed.append(".".join(map(str, err.absolute_path)))
            progress = True
            break  # the error list is stale now
        if not progress:
            return changed
    return changed


def _format_schema_error(err: jsonschema.ValidationError, source: str) -> str:
    where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "type" and not isinstance(err.instance, bool):
        x, expected = err.instance, err.validator_value
        if isinstance(x, float) and not math.isfinite(x):
            return f"{source}: {where}: {x} is not a finite number; give a finite value"
        if isinstance(x, float) and expected == "integer" and x.is_integer():
            return f"{source}: {where}: {x} is not an integer; write {int(x)} (without a decimal point)"
        if isinstance(x, str) and _FLOAT_NO_DOT.match(x.strip()):
            return (f"{source}: {where}: {x!r} was read as a string (YAML 1.1 needs a dot in a float); "
                    f"write {float(x)!r}")
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed] if isinstance(err.instance, dict) else []
        hints = []
        for k in extra:
            close = difflib.get_close_matches(k, allowed, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"{source}: unknown key {', '.join(hints)} under {where}; allowed keys: {', '.join(allowed)}"
    return f"{source}: {where}: {err.message}"


def validate_params(params: Any, source: str = "params.yaml") -> dict:
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(params).__name__}")
    validator = StrictValidator(load_schema())
    _coerce_strings(params, validator)
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("\n".join(_format_schema_error(e, source) for e in errors))
    missing = [k for k in TRAIN_KEYS if k not in params["train"]]
    if missing:
        raise ConfigError(f"{source}: the top-level `train` block must set every key; missing: {', '.join(missing)}")
    return params


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found; run from the project root or pass --params PATH")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is unreadable ({e})") from e
    return validate_params(load_yaml_strict(text, str(path)), str(path))


def parse_overrides(items: list[str] | None) -> dict:
    """`--set key=value` pairs; values parsed as YAML (so `tasks=[target]`, `lr=0.1`)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=5")
        key, value = item.split("=", 1)
        key = key.strip().removeprefix("train.")
        if key not in TRAIN_KEYS:
            close = difflib.get_close_matches(key, TRAIN_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"--set {key}: unknown training setting{hint}; known: {', '.join(TRAIN_KEYS)}")
        out[key] = load_yaml_strict(value, f"--set {item}")  # "1e-3" is a number, as in params.yaml
    return out


def resolve(params: dict, dataset: str, variant: str = "scl", seed: int = 0, overrides: dict | None = None) -> RunSettings:
    """The settings of one run: dataset x variant x seed (+ overrides), validated."""
    if dataset not in params["datasets"]:
        raise ConfigError(f"unknown dataset {dataset!r}; params.yaml defines: {', '.join(params['datasets'])}")
    if variant not in params["variants"]:
        raise ConfigError(f"unknown variant {variant!r}; params.yaml defines: {', '.join(params['variants'])}")
    ds = params["datasets"][dataset]
    merged = {**params["train"], **ds.get("train", {}), **params["variants"][variant], **(overrides or {})}
    if merged.get("amp") is False:  # YAML 1.1 reads an unquoted `off` as false
        merged["amp"] = "off"
    # overrides bypass the file's schema: check the merged block against the same schema
    train_schema = {"$defs": load_schema()["$defs"], "$ref": "#/$defs/train"}
    errors = list(StrictValidator(train_schema).iter_errors(merged))
    if errors:
        raise ConfigError("\n".join(_format_schema_error(e, f"run {dataset}/{variant}") for e in errors))
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    train = _train_settings(merged)
    _check_schedule(train, f"run {dataset}/{variant}")
    dataset_settings = DatasetSettings(name=dataset, **{k: v for k, v in ds.items() if k != "train"})
    settings = RunSettings(dataset=dataset_settings, variant=variant, seed=seed, train=train, overrides=dict(overrides or {}))
    if dataset_settings.num_classes is not None:
        _check_memory(settings)
    return settings


def _train_settings(d: dict) -> TrainSettings:
    """TrainSettings from a schema-checked train block (lists become tuples: the settings are frozen)."""
    return TrainSettings(**{**d, "tasks": tuple(d["tasks"]), "relabel_epochs": tuple(d["relabel_epochs"])})


def _check_schedule(train: TrainSettings, where: str) -> None:
    """What the schema cannot say: the epoch settings against each other."""
    if train.cluster_warmup_epochs >= train.epochs:
        raise ConfigError(
            f"{where}: cluster_warmup_epochs {train.cluster_warmup_epochs} leaves no clustering epoch "
            f"of {train.epochs}; lower cluster_warmup_epochs below epochs (0 = the paper's Algorithm 1)")
    if train.batch_size % train.bn_splits:
        raise ConfigError(
            f"{where}: bn_splits {train.bn_splits} does not divide batch_size {train.batch_size}; "
            f"choose a divisor of it (1 = BN over the whole batch)")
    if train.relabel_epochs:
        if train.init_labels == "random":
            raise ConfigError(
                f"{where}: relabel_epochs {list(train.relabel_epochs)} start the labels again from init_labels, "
                f"which is random; set init_labels to kmeans or umap_kmeans, or relabel_epochs to []")
        late = [e for e in train.relabel_epochs if not train.cluster_warmup_epochs < e < train.epochs]
        if late:
            raise ConfigError(
                f"{where}: relabel_epochs {late} must lie after the warm-up (cluster_warmup_epochs "
                f"{train.cluster_warmup_epochs}) and before the last epoch ({train.epochs}), so that training "
                f"follows each new partition; choose epochs in {train.cluster_warmup_epochs + 1}..{train.epochs - 1}")


def _check_memory(settings: RunSettings) -> None:
    c, m = settings.dataset.num_classes, settings.train.memory_size
    if m < c - 1:
        raise ConfigError(f"memory_size {m} gives empty banks for {c} clusters; use at least {c - 1}")


def with_data(settings: RunSettings, class_names, image_shape) -> RunSettings:
    """Fill what params.yaml leaves to the data (null): num_classes = the prepared data's
    class count (class sub-folders), image_size = its images' side. A flat folder has no
    classes, so there the number of clusters must be given."""
    ds = settings.dataset
    num_classes, image_size = ds.num_classes, ds.image_size
    if num_classes is None:
        if len(class_names) < 2:
            raise ConfigError(
                f"datasets.{ds.name}.num_classes is null (take it from the class sub-folders), but the prepared "
                f"data has {'no classes (a flat folder)' if not len(class_names) else 'one class'}: set "
                f"datasets.{ds.name}.num_classes in params.yaml to the number of clusters you want")
        num_classes = len(class_names)
    if image_size is None:
        image_size = int(image_shape[0])
    if (num_classes, image_size) == (ds.num_classes, ds.image_size):
        return settings
    filled = dataclasses.replace(settings, dataset=dataclasses.replace(ds, num_classes=num_classes, image_size=image_size))
    _check_memory(filled)
    return filled


# ------------------------------------------------------------------ run identity
# What defines a run, decided once here and used by the trainer's resume check
# (scl/train.py) and by the workflow's rerun trigger (scl/experiments.py -> train.smk).
#
# Execution settings say how the computation runs, not what it computes: an interrupted run
# may be resumed with other values, and changing them does not retrain. amp / channels_last /
# compile change the numerics slightly (rounding), as a change of device does; the method is
# the same; checkpoint_every changes only when checkpoints are written (a resume replays the
# epochs since the last one exactly). Every other setting is a method setting.
# diagnostics / diagnostics_sample only add readings to the epoch log (numpy / sklearn RNG,
# never torch's): the trained model is bit for bit the same (tests/test_epoch_diagnostics.py).
EXECUTION_SETTINGS = frozenset({"device", "threads", "eval_batch_size", "amp", "channels_last", "compile",
                                "checkpoint_every", "diagnostics", "diagnostics_sample"})
METHOD_SETTINGS = tuple(k for k in TRAIN_KEYS if k not in EXECUTION_SETTINGS)

# The code that computes a run: every module of the package except those that only prepare
# data (the prepared .npz is the run's input), score baselines, benchmark or report. A new
# training module is included by itself; a change to any included file retrains.
# cli.py is left out too: it parses options and hands the resolved settings to scl.train
# (and holds the exit-code handler); so are the checks that only refuse to start a run
# (preflight.py: settings vs data and device; run_lock.py: one `scl train` per folder),
# assign.py (applies a trained run to new images), and what says where and how long a job
# runs (gpu_slots.py: its device; job_resources.py), and epoch_diagnostics.py (readings added to
# the epoch log only; proven not to change what is trained). estimate.py stays in: the trainer runs it
# before the first epoch (on copies, under a forked RNG, but inside the run).
NOT_TRAINING_CODE = ("data/", "report/", "reference/", "cli.py", "__main__.py", "bench.py", "baselines.py",
                     "paths.py", "experiments.py", "preflight.py", "run_lock.py", "assign.py", "hostsync.py",
                     "bench_reference.py", "gpucheck.py", "gpu_slots.py", "job_resources.py",
                     "epoch_diagnostics.py")


def method_settings(settings: RunSettings) -> dict:
    """The settings that define a run's result: dataset, variant, seed, method settings."""
    d = settings.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k not in EXECUTION_SETTINGS}
    d["train"]["tasks"] = list(d["train"]["tasks"])
    d["train"]["relabel_epochs"] = list(d["train"]["relabel_epochs"])
    d.pop("overrides", None)  # already merged into `train`
    return d


@functools.lru_cache(maxsize=None)  # once per process: the code this process runs
def code_digest(exclude: tuple[str, ...] = NOT_TRAINING_CODE, include: tuple[str, ...] | None = None) -> str:
    """sha256 (16 hex digits) of the package's source files (.py, .json, .csv): all but `exclude`,
    or only `include`. Paths are relative to the package; a trailing / names a folder."""
    import hashlib

    def matches(rel: str, parts: tuple[str, ...]) -> bool:
        return any(rel.startswith(p) if p.endswith("/") else rel == p for p in parts)

    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.suffix not in (".py", ".json", ".csv") or "__pycache__" in rel:
            continue
        if (include is not None and not matches(rel, include)) or (include is None and matches(rel, exclude)):
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def run_identity(settings: RunSettings) -> dict:
    """A run's identity: its method settings and a digest of the code that computes it.
    Two runs with equal identities compute the same thing (a checkpoint of one resumes the other)."""
    return {"settings": method_settings(settings), "code": code_digest()}


def identity_digest(settings: RunSettings) -> str:
    """sha256 (16 hex digits) of `run_identity`: the workflow's rerun trigger."""
    import hashlib

    blob = json.dumps(run_identity(settings), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def settings_to_json(settings: RunSettings) -> str:
    """The resolved settings as one line of JSON: what the workflow hands to `scl train --settings`."""
    return json.dumps(settings.to_dict(), sort_keys=True, separators=(",", ":"))


def settings_from_json(text: str, source: str = "--settings") -> RunSettings:
    """Inverse of `settings_to_json`, checked against the same schema as params.yaml's train block."""
    try:
        d = json.loads(text)
        train, dataset = dict(d["train"]), dict(d["dataset"])
        variant, seed = d["variant"], d["seed"]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{source}: not the JSON of resolved run settings ({e}); "
                          "the workflow writes it with scl.config.settings_to_json") from None
    train_schema = {"$defs": load_schema()["$defs"], "$ref": "#/$defs/train"}
    # strict as params.yaml: an integer is an int, a number finite (json.loads reads NaN)
    errors = list(StrictValidator(train_schema).iter_errors(train))
    if errors:
        raise ConfigError("\n".join(_format_schema_error(e, source) for e in errors))
    missing = [k for k in TRAIN_KEYS if k not in train]
    if missing:
        raise ConfigError(f"{source}: train is missing {', '.join(missing)}")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{source}: seed must be a non-negative integer, got {seed!r}")
    try:
        ds = DatasetSettings(**dataset)
    except TypeError as e:
        raise ConfigError(f"{source}: dataset block: {e}") from None
    settings = RunSettings(dataset=ds, variant=variant, seed=seed, train=_train_settings(train),
                           overrides=dict(d.get("overrides") or {}))
    _check_schedule(settings.train, source)
    return settings
