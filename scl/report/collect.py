"""Finished results -> pandas tables, and their mean/std over seeds.

  collect_runs(runs_dir)        <runs>/<dataset>/<variant>/seed<k>/metrics.json   (scl train)
  collect_baselines(dir)        <dir>/<dataset>/<method>/seed<k>/metrics.json     (scl baseline)
  scan_results(root)            (dataset, name, seed, metrics.json) of every finished result
  summarise(df)                 mean and std over seeds per (dataset, variant|method)
  reported(name)                the paper's numbers, scl/reference/<name>.csv

A run marked failed by `scl train` (metrics.json with "status": "failed": it diverged or
collapsed, scl/health.py) is left out, with a warning naming it: it is no result to average.
The folder names are authoritative for dataset, variant/method and seed (they are what
the Snakemake rules ask for). A metrics.json without `acc` (unlabelled data) gives NaN.
Std is the sample standard deviation over seeds (ddof=1): NaN for a single seed.
"""

from __future__ import annotations

import json
import re
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from scl.report import ReportError

# the order datasets appear in, in every table and figure (others follow, sorted)
DATASET_ORDER = ("digits", "fashion", "cifar10", "cifar100-20", "stl10", "imagenet10", "imagenet-dogs", "tiny-imagenet")
PAPER_DATASETS = ("cifar10", "cifar100-20", "stl10", "imagenet10", "imagenet-dogs", "tiny-imagenet")
METRICS = ("nmi", "acc", "ari")
_SEED = re.compile(r"^seed(\d+)$")


def order_datasets(names) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [d for d in DATASET_ORDER if d in names]
    return known + sorted(d for d in names if d not in DATASET_ORDER)


def _read_metrics(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"{path} is unreadable ({e}); delete it and run the command that made it again") from e


def _is_failed(path: Path) -> bool:
    """A metrics.json marked failed (scl/health.py); says so on stderr, since it is left out."""
    m = _read_metrics(path)
    if isinstance(m, dict) and m.get("status") == "failed":
        why = "; ".join(m.get("failure") or []) or "marked failed"
        warnings.warn(f"left out {path.parent}: the run failed ({why})", stacklevel=3)
        return True
    return False


def scan_results(root, seeds=None) -> list[tuple[str, str, int, Path]]:
    """(dataset, name, seed, metrics.json) under root; only `seeds` when given, so a table
    never depends on which other runs happen to be finished."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.glob("*/*/seed*/metrics.json")):
        m = _SEED.match(path.parent.name)
        if m is None:
            continue
        if seeds is not None and int(m.group(1)) not in seeds:
            continue
        if _is_failed(path):
            continue
        found.append((path.parent.parent.parent.name, path.parent.parent.name, int(m.group(1)), path))
    return found


def _frame(rows: list[dict], key: str, extra: tuple[str, ...]) -> pd.DataFrame:
    columns = ["dataset", key, "seed", *METRICS, *extra]
    df = pd.DataFrame(rows)
    for c in columns:
        if c not in df.columns:
            df[c] = np.nan
    rest = [c for c in df.columns if c not in columns]
    df = df[columns + sorted(rest)]
    if len(df):
        df = df.sort_values(["dataset", key, "seed"]).reset_index(drop=True)
    return df


def collect_runs(runs_dir, seeds=None) -> pd.DataFrame:
    """One row per finished training run: dataset, variant, seed, acc, nmi, ari, and per
    task `<metric>_<task>` (e.g. acc_under), epochs, train_time_s, assignment, n."""
    rows = []
    for dataset, variant, seed, path in scan_results(runs_dir, seeds):
        m = _read_metrics(path)
        row = {"dataset": dataset, "variant": variant, "seed": seed, "path": str(path.parent)}
        for k in METRICS:
            row[k] = float(m[k]) if m.get(k) is not None else np.nan
        for task, tm in (m.get("tasks") or {}).items():
            for k in METRICS:
                if tm.get(k) is not None:
                    row[f"{k}_{task}"] = float(tm[k])
        for k in ("epochs", "n", "train_time_s", "assignment"):
            if k in m:
                row[k] = m[k]
        rows.append(row)
    return _frame(rows, "variant", ("path",))


def collect_baselines(baselines_dir, seeds=None) -> pd.DataFrame:
    """One row per baseline result: dataset, method, seed, acc, nmi, ari, n, subsample, time_s."""
    rows = []
    for dataset, method, seed, path in scan_results(baselines_dir, seeds):
        m = _read_metrics(path)
        row = {"dataset": dataset, "method": method, "seed": seed, "path": str(path.parent)}
        for k in METRICS:
            row[k] = float(m[k]) if m.get(k) is not None else np.nan
        for k in ("n", "subsample", "time_s"):
            row[k] = m.get(k)
        rows.append(row)
    return _frame(rows, "method", ("n", "subsample", "time_s", "path"))


def metric_columns(df: pd.DataFrame) -> list[str]:
    """acc, nmi, ari and the per-task `<metric>_<task>` columns present in df."""
    return [c for c in df.columns if c in METRICS or any(c.startswith(m + "_") for m in METRICS)]


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of one metric over seeds: the one spread
    every table, figure and summary reports (nan where it is undefined: no value, one value)."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean()) if len(v) else np.nan
    return mean, (float(v.std(ddof=1)) if len(v) > 1 else np.nan)


def summarise(df: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, variant) or (dataset, method).

    Columns: dataset, <by>, n_seeds, seeds ("0,1,2"), and <metric>_mean, <metric>_std for
    every metric column. n_seeds counts the runs with a value of `acc` where there is one.
    """
    if by is None:
        by = "variant" if "variant" in df.columns else "method"
    metrics = metric_columns(df)
    out_cols = ["dataset", by, "n_seeds", "seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    if df.empty:
        return pd.DataFrame(columns=out_cols)
    rows = []
    for (dataset, name), g in df.groupby(["dataset", by], sort=False):
        row = {"dataset": dataset, by: name, "seeds": ",".join(str(s) for s in sorted(g["seed"]))}
        scored = g["acc"].notna() if "acc" in g else pd.Series(True, index=g.index)
        row["n_seeds"] = int(scored.sum()) if scored.any() else len(g)
        for m in metrics:
            v = pd.to_numeric(g[m], errors="coerce").dropna()
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std(v)
        rows.append(row)
    out = pd.DataFrame(rows, columns=out_cols)
    rank = {d: i for i, d in enumerate(order_datasets(out["dataset"]))}
    return out.sort_values(["dataset", by], key=lambda s: s.map(rank) if s.name == "dataset" else s).reset_index(drop=True)


def reported(name: str) -> pd.DataFrame:
    """A CSV of published numbers bundled in scl/reference/ (table1_reported, ...)."""
    fname = name if name.endswith(".csv") else f"{name}.csv"
    res = resources.files("scl").joinpath("reference", fname)
    if not res.is_file():
        raise ReportError(
            f"scl/reference/{fname} is missing from the installed package; copy it from "
            f"shared/reference/{fname} (the paper's published numbers) and reinstall"
        )
    with resources.as_file(res) as p:
        return pd.read_csv(p)
