"""`scl assign` on held-out images: agreement with the trained head, and images per second.

    python workflow/scripts/assign_bench.py RUN_DIR HELDOUT_FOLDER TRAIN_NPZ OUT_JSON [--repeats 3]

Agreement: `scl assign`'s clusters (files decoded, float32 head) against what the run's own
code says on the same images: `scl.train.infer_all` with the run's execution settings
(amp, channels_last) on the images as `scl prepare` reads them, i.e. the path that wrote
the run's assignments.npz. Also checked on the training images against assignments.npz.
Throughput: wall time of the whole `assign_files` call (decode + network), median of
--repeats, on this machine now (the load average is recorded beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from scl.assign import assign_files, list_inputs, load_run
from scl.data.folder import read_folder_report
from scl.data.prepared import load_prepared
from scl.io import atomic_write_json
from scl.metrics import evaluate
from scl.train import amp_dtype, infer_all


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("heldout")
    p.add_argument("train_npz")
    p.add_argument("out")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--amp", default="bf16", help="the run's amp setting (execution settings are not in the checkpoint)")
    p.add_argument("--channels-last", action="store_true", default=True)
    p.add_argument("--batch-size", type=int, default=1024)
    args = p.parse_args()

    head = load_run(args.run, "cpu")
    paths, skipped = list_inputs([args.heldout], None)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        pred, conf, reasons = assign_files(head, paths, args.batch_size)
        times.append(time.perf_counter() - start)
    assert all(r is None for r in reasons), [r for r in reasons if r]

    # the run's own path on the same held-out images (as `scl prepare` reads them)
    got = read_folder_report(args.heldout, head.image_size, head.channels)
    root = Path(args.heldout).resolve()
    order = {p: i for i, p in enumerate(got.paths)}
    idx = np.array([order[Path(p).resolve().relative_to(root).as_posix()] for p in paths])
    amp = amp_dtype(args.amp, torch.device("cpu"))
    head.model.to(memory_format=torch.channels_last) if args.channels_last else None
    images = torch.from_numpy(got.data.images).permute(0, 3, 1, 2).contiguous()
    outs = infer_all(head.model, images, head.eval_tf, 1024, amp, args.channels_last)
    run_pred = outs["prob_target"].argmax(1)[idx]
    labels = got.data.labels[idx]

    # training images: assign vs the run's assignments.npz
    train = load_prepared(args.train_npz)
    with np.load(Path(args.run) / "assignments.npz") as a:
        train_pred = a["pred"]
    src = json.loads(Path(args.run, "metrics.json").read_text()) if Path(args.run, "metrics.json").exists() else {}
    from scl.data.prepared import load_meta

    folder = Path(load_meta(args.train_npz)["source"]["folder"])
    tpred, _, _ = assign_files(head, [folder / p for p in train.paths], args.batch_size)

    n = len(paths)
    record = {
        "run": args.run, "heldout": args.heldout, "images": n, "image_size": head.image_size,
        "backbone": head.settings["train"]["backbone"], "batch_size": args.batch_size,
        "seconds": times, "images_per_s": n / statistics.median(times),
        "agreement_with_run_head_heldout": float((pred == run_pred).mean()),
        "run_head_amp": args.amp,
        "agreement_with_assignments_npz_train": float((tpred == train_pred).mean()),
        "heldout_scores_assign": {k: v for k, v in evaluate(labels, pred).items() if k != "mapping"},
        "heldout_scores_run_head": {k: v for k, v in evaluate(labels, run_pred).items() if k != "mapping"},
        "train_scores": {k: src.get(k) for k in ("acc", "nmi", "ari")},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "loadavg_1_5_15": list(os.getloadavg()),
                    "torch": torch.__version__},
    }
    atomic_write_json(args.out, record)
    print(json.dumps({k: record[k] for k in ("images", "images_per_s", "agreement_with_run_head_heldout",
                                             "agreement_with_assignments_npz_train")}))


if __name__ == "__main__":
    main()
