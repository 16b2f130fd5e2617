"""Issue 10's last candidate: would the K-means start be better read from whole images?

With `init_labels: kmeans` the clustered tasks start, at the end of the warm-up, from K-means on
each task's features of the un-augmented path, which reads the centred `eval_crop` of every
image (0.86 in the fashion block). This check trains only the warm-up of a run (epochs
1..cluster_warmup_epochs of the run's own 8-epoch schedule, so the weights are those the
real run starts clustering from), then reads that model at each crop of `--crops` and scores
K-means on the target task's features (scl.pseudo_labels.kmeans_partition, as
scl.cluster_state.start_from_kmeans computes the start) and on the backbone. The run folder
keeps the warm-up checkpoint, so a rerun only reads.
Usage: python workflow/scripts/kmeans_start_crop_check.py --dataset fashion --seeds 0 1 2 \
    --data data/prepared/fashion.npz --runs DIR --out JSON [--crops 1 0.86] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def warm_up(dataset: str, seed: int, data, run: Path, overrides: dict) -> int:
    """Train the warm-up epochs of the run (seed) into `run`; returns the warm-up length."""
    from scl.config import load_params, resolve
    from scl.train import train

    settings = resolve(load_params(), dataset, "scl", seed, overrides)
    warm = settings.train.cluster_warmup_epochs
    if not (run / "checkpoint.pt").exists():
        train(settings, data, run, progress=False, stop_after_epoch=warm)
    return warm


def read(run: Path, images: np.ndarray, labels: np.ndarray, crops: list[float], batch: int = 1024) -> dict:
    from scl.assign import infer_outputs, load_run
    from scl.augment import build_eval_transform
    from scl.metrics import evaluate
    from scl.pseudo_labels import kmeans_partition
    from scl.train import _kmeans

    run_model = load_run(run, device="cpu", require_head=False)  # float32
    t, seed, k = run_model.settings["train"], run_model.settings["seed"], run_model.num_classes
    out = {"run": str(run), "seed": seed, "trained_with_eval_crop": run_model.eval_tf.crop, "read_at": {}}
    for crop in crops:
        tf = build_eval_transform(t["augment"], run_model.image_size, run_model.channels, crop)
        o = infer_outputs(run_model, images, ("feat_target", "backbone"), eval_tf=tf, batch_size=batch)
        out["read_at"][str(crop)] = {
            "kmeans_start_acc": evaluate(labels, kmeans_partition(o["feat_target"], k, seed))["acc"],
            "kmeans_backbone_acc": evaluate(labels, _kmeans(o["backbone"], k, seed))["acc"],
        }
    return out


def main(argv=None) -> int:
    from scl.config import parse_overrides
    from scl.io import atomic_write_json
    from scl.data.prepared import load_prepared

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--data", required=True)
    ap.add_argument("--runs", required=True, type=Path, help="folder for the warm-up runs (seed<k>/)")
    ap.add_argument("--crops", nargs="+", type=float, default=[1.0, 0.86])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training overrides")
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    data = load_prepared(a.data)
    overrides = parse_overrides(a.set)
    results = []
    for seed in a.seeds:
        run = a.runs / f"seed{seed}"
        warm = warm_up(a.dataset, seed, data, run, overrides)
        torch.set_num_threads(int(overrides.get("threads", 1)))
        r = {"warmup_epochs": warm, **read(run, data.images, data.labels, a.crops)}
        results.append(r)
        print(f"seed {seed} after {warm} warm-up epoch(s): " + "  ".join(
            f"crop {c}: " + " ".join(f"{k} {v:.3f}" for k, v in row.items()) for c, row in r["read_at"].items()),
            flush=True)
    atomic_write_json(a.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
