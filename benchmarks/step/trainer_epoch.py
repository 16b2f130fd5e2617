"""Time the Trainer's own training loop (augmentation, step and per-step tail included).

Used to compare the code before and after issue 11 on the same machine: it drives the
Trainer's epoch loop on synthetic images (the sizes of a real set) and reports, per step,
wall time and this process's CPU time (user + system, all threads), for `--repeats`
epochs of `--steps` steps each. Usage (from the repository root):

    PYTHONPATH=. python benchmarks/step/trainer_epoch.py --dataset fashion --label before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from scl.config import load_params, resolve
from scl.data.prepared import PreparedData
from scl import train as train_mod


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="fashion")
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE training override (YAML value)")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--label", required=True)
    p.add_argument("--out", default="results/bench")
    a = p.parse_args()
    import yaml

    over = {"threads": 1, "device": "cpu"}
    over.update({k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)})
    settings = resolve(load_params("params.yaml"), a.dataset, "scl", 0, over)
    ds, t = settings.dataset, settings.train
    n = t.batch_size * a.steps
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, ds.image_size, ds.image_size, ds.channels), dtype=np.uint8)
    data = PreparedData(images, rng.integers(0, ds.num_classes, n), [])
    trainer = train_mod.Trainer(settings, data, "/tmp/trainer-epoch-unused", progress=False)
    run_epoch = getattr(trainer, "_train_epoch")
    run_epoch(None)  # warm-up epoch (allocations, oneDNN primitive caches)
    walls, cpus = [], []
    for _ in range(a.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run_epoch(None)
        walls.append((time.perf_counter() - t0) / a.steps)
        cpus.append((time.process_time() - c0) / a.steps)
    rec = {
        "label": a.label, "dataset": a.dataset, "overrides": over, "steps": a.steps, "batch_size": t.batch_size,
        "backbone": t.backbone, "amp": str(t.amp), "channels_last": t.channels_last, "threads": t.threads,
        "wall_ms_per_step": [w * 1e3 for w in walls], "cpu_ms_per_step": [c * 1e3 for c in cpus],
        "median_wall_ms": statistics.median(walls) * 1e3, "median_cpu_ms": statistics.median(cpus) * 1e3,
        "loadavg": list(os.getloadavg()), "torch": torch.__version__,
    }
    tag = "-".join([a.label, a.dataset, t.backbone, str(t.batch_size)] + [s.replace("=", "") for s in a.set])
    out = Path(a.out) / f"trainer-epoch-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1))
    print(json.dumps({k: rec[k] for k in ("label", "median_wall_ms", "median_cpu_ms", "loadavg")}), out)


if __name__ == "__main__":
    main()
