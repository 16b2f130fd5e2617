"""Issue 10's moonshot: would another partition method give `relabel_epochs` a better partition
to restart from? Scored on the last epoch's features of finished runs, no training.

A relabel restarts the clustered tasks from `init_labels` (UMAP with 20 neighbours + K-means on
`feat_target`), and the head then keeps that partition (results/tuning/fashion/relabel-study):
the head can only be as good as the partition it is handed. This scores, on each run's
`features.npz`, that partition and a few others, one change at a time:
- `umap20-kmeans` on `feat_target`: the partition a relabel computes (`umap_kmeans_partition`);
- `umap20-gmm`: a Gaussian mixture instead of K-means on the same embedding (N2D's choice);
- `umap10-kmeans`, `umap50-kmeans`: a smaller and a larger k-NN graph;
- `umap20-kmeans` on `feat_instance` and on `backbone`: other features of the same network.
Each variant's UMAP is seeded by the run's seed, as in training.

Usage: python workflow/scripts/relabel_partition_check.py --runs DIR [DIR ...] --out JSON
       python workflow/scripts/relabel_partition_check.py --table JSON [JSON ...] > table.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# (name, feature key, UMAP neighbours, clusterer)
VARIANTS = [
    ("umap20-kmeans", "feat_target", 20, "kmeans"),
    ("umap20-gmm", "feat_target", 20, "gmm"),
    ("umap10-kmeans", "feat_target", 10, "kmeans"),
    ("umap50-kmeans", "feat_target", 50, "kmeans"),
    ("umap20-kmeans", "feat_instance", 20, "kmeans"),
    ("umap20-kmeans", "backbone", 20, "kmeans"),
]


def gmm_partition(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """N2D's clusterer on the UMAP embedding: a full-covariance Gaussian mixture."""
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(n_components=k, covariance_type="full", random_state=seed).fit_predict(x)


def table(paths: list[Path]) -> str:
    """The rows of one or more --out files as markdown: one row per (feature key, variant), one
    column per seed, then the mean ± sample std and that mean minus the head's."""
    from scl.report.collect import mean_std

    rows = [r for p in paths for r in json.loads(p.read_text())]
    seeds = sorted({r["seed"] for r in rows})
    head = {r["seed"]: r["head_acc"] for r in rows}
    lines = ["| features | partition | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std | minus the head |",
             "|---|---|" + "---|" * (len(seeds) + 2)]
    lines.append("| (the head itself) | classifier | " + " | ".join(f"{head[s]:.3f}" for s in seeds)
                 + " | {:.3f} ± {:.3f} | |".format(*mean_std([head[s] for s in seeds])))
    for key, name in dict.fromkeys((r["key"], r["variant"]) for r in rows):
        acc = {r["seed"]: r["acc"] for r in rows if (r["key"], r["variant"]) == (key, name)}
        m, sd = mean_std(list(acc.values()))
        dm, _ = mean_std([acc[s] - head[s] for s in acc])
        lines.append(f"| `{key}` | {name} | " + " | ".join(f"{acc[s]:.3f}" if s in acc else "" for s in seeds)
                     + f" | {m:.3f} ± {sd:.3f} | {dm:+.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from scl.io import atomic_write_json
    from scl.metrics import evaluate
    from scl.pseudo_labels import kmeans_partition
    from scl.umap_embedding import embed_in_child

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", type=Path, help="finished runs (with features.npz)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--table", nargs="+", type=Path, help="print --out files as a markdown table instead")
    a = ap.parse_args(argv)
    if a.table:
        print(table(a.table))
        return 0
    if not (a.runs and a.out):
        ap.error("give --runs and --out (or --table)")
    rows = []
    for run in a.runs:
        z = np.load(run / "features.npz")
        metrics = json.loads((run / "metrics.json").read_text())
        labels, seed = z["labels"], metrics["seed"]
        k = int(labels.max()) + 1
        embeddings: dict[tuple[str, int], np.ndarray] = {}  # one UMAP per (key, neighbours)
        for name, key, neighbours, clusterer in VARIANTS:
            t0 = time.perf_counter()
            if (key, neighbours) not in embeddings:
                embeddings[key, neighbours] = embed_in_child(z[key], neighbours, seed)
            e = embeddings[key, neighbours]
            pred = kmeans_partition(e, k, seed) if clusterer == "kmeans" else gmm_partition(e, k, seed)
            row = {"run": str(run), "seed": seed, "head_acc": metrics["acc"], "variant": name, "key": key,
                   "acc": evaluate(labels, pred)["acc"], "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(f"{run} seed {seed} {key} {name}: ACC {row['acc']:.3f} (head {row['head_acc']:.3f}, "
                  f"{row['seconds']} s)", flush=True)
            atomic_write_json(a.out, rows)  # what is done so far survives an interruption
    return 0


if __name__ == "__main__":
    sys.exit(main())
