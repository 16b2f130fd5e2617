"""Issue 10's read-out check for `eval_crop`: the same trained model, read at several crops.

For each finished run and each crop c of `--crops`, the un-augmented path is rebuilt with
eval_crop = c (scl.augment.build_eval_transform) and every image is read once: K-means on
the L2-normalised backbone features (as MoCo + K-means is scored: scl.train._kmeans, seeded
by the run's seed) and, for runs with a target head, the head's eq. 5 labels. Training is
not repeated, so the only difference between two crops is the read-out. For MoCo the
read-out is all the crop changes (no pseudo-label reads the eval path during training);
for SCL the crop it was trained with also chose its eq. 5 labels during training.
Usage: python workflow/scripts/eval_crop_check.py --data NPZ --out JSON [--crops 1 0.86] RUN_DIR ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from scl.io import atomic_write_json


def check(run: Path, images: np.ndarray, labels: np.ndarray, crops: list[float], batch: int = 1024) -> dict:
    from scl.assign import infer_outputs, load_run
    from scl.augment import build_eval_transform
    from scl.metrics import evaluate
    from scl.train import _kmeans

    run_model = load_run(run, device="cpu", require_head=False)  # float32, the run's own settings
    t, seed = run_model.settings["train"], run_model.settings["seed"]
    out = {"run": str(run), "variant": run_model.settings["variant"], "tasks": list(t["tasks"]), "seed": seed,
           "trained_with_eval_crop": run_model.eval_tf.crop, "read_at": {}}
    keys = ("backbone", "prob_target") if "target" in t["tasks"] else ("backbone",)
    for crop in crops:
        tf = build_eval_transform(t["augment"], run_model.image_size, run_model.channels, crop)
        o = infer_outputs(run_model, images, keys, eval_tf=tf, batch_size=batch)
        row = {"kmeans_backbone_acc": evaluate(labels, _kmeans(o["backbone"], run_model.num_classes, seed))["acc"]}
        if "prob_target" in o:
            row["head_acc"] = evaluate(labels, o["prob_target"].argmax(1))["acc"]
        out["read_at"][str(crop)] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", required=True)
    ap.add_argument("--crops", nargs="+", type=float, default=[1.0, 0.86])
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    from scl.data.prepared import load_prepared

    torch.set_num_threads(1)
    data = load_prepared(a.data)
    results = []
    for run in a.runs:
        results.append(check(run, data.images, data.labels, a.crops))
        r = results[-1]
        print(f"{r['variant']} ({'+'.join(r['tasks'])}) seed {r['seed']} (trained at {r['trained_with_eval_crop']}): " + "  ".join(
            f"crop {c}: " + " ".join(f"{k} {v:.3f}" for k, v in row.items()) for c, row in r["read_at"].items()))
    atomic_write_json(a.out, results)  # never a half-written file
    return 0


if __name__ == "__main__":
    sys.exit(main())
