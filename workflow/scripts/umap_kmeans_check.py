"""Issue 10: K-means against K-means on a UMAP embedding (`init_labels: umap_kmeans`), on the
features of trained or warmed-up runs.

For each run folder: the features of its last epoch (`features.npz`, written by every finished
run), or, for a folder holding only a checkpoint (a warm-up trained by
workflow/scripts/kmeans_start_crop_check.py), the features that checkpoint reads at the run's
own eval crop. Scores ACC of K-means (`scl.pseudo_labels.kmeans_partition`) and of UMAP +
K-means (`umap_kmeans_partition`) on each key of `--keys` present, with the run's seed.
Answers two questions: how much better a start UMAP gives after the warm-up, and whether
the gain is SCL's or UMAP's (MoCo's features + UMAP + K-means, a baseline the paper lacks).
Usage: python workflow/scripts/umap_kmeans_check.py --runs DIR [DIR ...] --out JSON
           [--keys feat_target feat_instance backbone] [--data data/prepared/fashion.npz]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np


@functools.cache  # one read of the prepared data for all checkpoint-only folders
def prepared(data_path: str):
    from scl.data.prepared import load_prepared

    return load_prepared(data_path)


def features(run: Path, keys: list[str], data_path: str) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """The run's features per key, the true labels and the run's seed."""
    if (run / "features.npz").exists():
        z = np.load(run / "features.npz")
        seed = json.loads((run / "metrics.json").read_text())["seed"]
        return {k: z[k] for k in keys if k in z.files}, z["labels"], seed
    from scl.assign import infer_outputs, load_run

    data = prepared(data_path)
    model = load_run(run, device="cpu", require_head=False)  # float32, the run's own eval crop
    have = [k for k in keys if k == "backbone" or k.removeprefix("feat_") in model.settings["train"]["tasks"]]
    return infer_outputs(model, data.images, tuple(have), batch_size=1024), data.labels, model.settings["seed"]


def main(argv=None) -> int:
    import torch

    from scl.io import atomic_write_json
    from scl.metrics import evaluate
    from scl.pseudo_labels import kmeans_partition, umap_kmeans_partition

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", type=Path, required=True, help="finished runs, or warm-up checkpoints")
    ap.add_argument("--keys", nargs="+", default=["feat_target", "feat_instance", "backbone"])
    ap.add_argument("--data", default="data/prepared/fashion.npz", help="for checkpoint-only folders")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for run in a.runs:
        feats, labels, seed = features(run, a.keys, a.data)
        k = int(labels.max()) + 1  # the dataset's classes
        for key, f in feats.items():
            row = {"run": str(run), "seed": seed, "key": key,
                   "kmeans_acc": evaluate(labels, kmeans_partition(f, k, seed))["acc"],
                   "umap_kmeans_acc": evaluate(labels, umap_kmeans_partition(f, k, seed))["acc"]}
            rows.append(row)
            print(f"{run} {key}: K-means {row['kmeans_acc']:.3f}  UMAP + K-means {row['umap_kmeans_acc']:.3f}",
                  flush=True)
    atomic_write_json(a.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
