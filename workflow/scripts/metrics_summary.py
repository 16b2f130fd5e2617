"""Collect every run's ACC/NMI/ARI, and its training curve as a CSV.

Run by Snakemake's `metrics_summary` rule (the `snakemake` object gives input/output);
also runnable by hand:
    python workflow/scripts/metrics_summary.py OUT.json METRICS_DIR PLOTS_DIR RUN_OR_BASELINE_METRICS...

results/summaries/<set>.json    {"runs": {dataset: {variant: {"seed0": {acc, nmi, ari}, ...,
                                  "mean": {...}, "std": {...}}}}, "baselines": {...}}: everything in one file
results/metrics/<set>/{runs,baselines}/<dataset>/<variant or method>/{seed<k>,mean,std}.json
                                 one small file per row -> `dvc metrics show --md` (a row per run)
results/plots/<set>/<dataset>/<variant>/seed<k>.csv   epoch, loss, acc, nmi, ari, lr per epoch
                                 -> `dvc plots show` (log.jsonl is JSON lines, which DVC cannot plot)
"""


import csv
import json
import sys
from pathlib import Path

from scl.report.collect import mean_std

SCORES = ("acc", "nmi", "ari")
CURVE_FIELDS = ("epoch", "loss", "acc", "nmi", "ari", "lr")


def _scores(path: Path) -> dict:
    m = json.loads(path.read_text())
    return {k: round(float(m[k]), 4) for k in SCORES if isinstance(m.get(k), (int, float))}


def _mean_std(rows: list[dict]) -> tuple[dict, dict]:
    """Mean and sample std (n - 1) over seeds, as the tables compute them (scl.report.collect)."""
    mean, std = {}, {}
    for k in SCORES:
        vals = [r[k] for r in rows if k in r]
        if vals:
            mu, sd = mean_std(vals)
            mean[k] = round(mu, 4)
            if len(vals) > 1:
                std[k] = round(sd, 4)
    return mean, std


def summarise(run_metrics: list[str], baseline_metrics: list[str], experiment_set: str) -> dict:
    runs: dict = {}
    for p in map(Path, run_metrics):  # results/runs/<set>/<dataset>/<variant>/seed<k>/metrics.json
        dataset, variant, seed = p.parts[-4], p.parts[-3], p.parts[-2]
        runs.setdefault(dataset, {}).setdefault(variant, {})[seed] = _scores(p)
    baselines: dict = {}
    for p in map(Path, baseline_metrics):  # results/baselines/<dataset>/<method>/seed<k>/metrics.json
        dataset, method, seed = p.parts[-4], p.parts[-3], p.parts[-2]
        baselines.setdefault(dataset, {}).setdefault(method, {})[seed] = _scores(p)
    for group in (runs, baselines):
        for per_dataset in group.values():
            for name, seeds in per_dataset.items():
                rows = [v for v in seeds.values() if v]
                if len(rows) > 1:
                    seeds["mean"], seeds["std"] = _mean_std(rows)
    return {"experiment_set": experiment_set, "runs": runs, "baselines": baselines}


def write_curves(run_metrics: list[str], plots_dir: Path) -> None:
    for p in map(Path, run_metrics):
        dataset, variant, seed = p.parts[-4], p.parts[-3], p.parts[-2]
        log = p.parent / "log.jsonl"
        out = plots_dir / dataset / variant / f"{seed}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
        fields = [f for f in CURVE_FIELDS if any(f in r for r in records)] or ["epoch"]
        with out.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            for r in records:
                w.writerow({k: (round(r[k], 6) if isinstance(r.get(k), float) else r.get(k)) for k in fields})


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def write_rows(summary: dict, metrics_dir: Path) -> None:
    for group in ("runs", "baselines"):
        for dataset, per_dataset in summary[group].items():
            for name, rows in per_dataset.items():
                for row, scores in rows.items():
                    _write_json(metrics_dir / group / dataset / name / f"{row}.json", scores)


def main(out: str, metrics_dir: str, plots: str, run_metrics: list[str], baseline_metrics: list[str],
         experiment_set: str) -> None:
    summary = summarise(run_metrics, baseline_metrics, experiment_set)
    _write_json(Path(out), summary)
    write_rows(summary, Path(metrics_dir))
    write_curves(run_metrics, Path(plots))
    print(f"{len(run_metrics)} runs, {len(baseline_metrics)} baselines -> {out}, {metrics_dir}/, {plots}/")


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = globals()["snakemake"]
        with open(sm.log[0], "w") as fh:
            sys.stdout = fh
            main(sm.output.summary, sm.output.metrics, sm.output.plots, list(sm.input.runs),
                 list(sm.input.baselines), sm.params.experiment_set)
    else:
        files = sys.argv[4:]
        main(sys.argv[1], sys.argv[2], sys.argv[3], [a for a in files if "/baselines/" not in a],
             [a for a in files if "/baselines/" in a], "manual")
