"""Issue 10's study table: every setting of results/tuning/fashion/study/ (and the starting
point, results/tuning/fashion/diagnostics/) side by side, mean +- sample std over seeds.

Per setting: the head's final ACC (metrics.json, all 20,000 images), and from the last
epoch's diag_* readings (a seeded 5,000-image sample, scl/epoch_diagnostics.py): K-means on
the backbone and on the target-task features, and the head's best epoch.
Usage: python workflow/scripts/fashion_study_table.py   -> study/summary.md and summary.json
       python workflow/scripts/fashion_study_table.py --full   -> the same for full-study/ (all
       70,000 images, `FULL=1 workflow/scripts/fashion-study.sh`; no starting-point row)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "results" / "tuning" / "fashion"


def _runs(folder: Path) -> list[dict]:
    """The finished, not failed runs of one setting (scl.report.collect.scan_results), in seed order."""
    from scl.io import read_jsonl
    from scl.report.collect import scan_results

    out = []
    for _, _, seed, path in scan_results(folder / "runs"):
        metrics = json.loads(path.read_text())
        log = read_jsonl(path.parent / "log.jsonl")
        out.append({"seed": seed, "acc": metrics["acc"], "nmi": metrics["nmi"],
                    "kmeans_backbone": log[-1].get("diag_kmeans_backbone_acc"),
                    "kmeans_target": log[-1].get("diag_kmeans_target_acc"),
                    "best_epoch_acc": max(r["acc"] for r in log if not r.get("warmup"))})
    return out


def _mean_std(values) -> str:
    """mean ± sample std by the tables' one rule (scl.report.collect.mean_std)."""
    from scl.report.collect import mean_std

    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean, std = mean_std(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ± {std:.3f}"


def main(argv: list[str]) -> int:
    full = argv == ["--full"]
    if argv and not full:
        print("usage: fashion_study_table.py [--full]", file=sys.stderr)
        return 2
    study = ROOT / ("full-study" if full else "study")
    if not study.is_dir():
        print(f"fashion_study_table.py: {study} does not exist: run workflow/scripts/fashion-study.sh first",
              file=sys.stderr)
        return 2
    settings = [] if full else [("start (the fashion set as it was)", ROOT / "diagnostics", "(none)")]
    for folder in sorted(p for p in study.iterdir() if p.is_dir()):
        text = (folder / "settings.txt").read_text().split() if (folder / "settings.txt").exists() else []
        settings.append((folder.name, folder, " ".join(text) or "(none)"))
    rows, summary = [], {}
    for name, folder, overrides in settings:
        runs = _runs(folder)
        if not runs:
            continue
        summary[name] = {"overrides": overrides, "runs": runs}
        rows.append(f"| {name} | `{overrides}` | {len(runs)} | **{_mean_std([r['acc'] for r in runs])}** | "
                    + " ".join(f"{r['acc']:.3f}" for r in runs) + " | "
                    + f"{_mean_std([r['kmeans_backbone'] for r in runs])} | {_mean_std([r['kmeans_target'] for r in runs])} | "
                    + f"{_mean_std([r['best_epoch_acc'] for r in runs])} |")
    table = "\n".join([
        "| setting | overrides | n | head ACC (mean ± sample std) | per seed | K-means backbone (last epoch, 5k sample) "
        "| K-means target feat. | head's best epoch |",
        "|---|---|---|---|---|---|---|---|", *rows])
    (study / "summary.md").write_text(table + "\n")
    (study / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
