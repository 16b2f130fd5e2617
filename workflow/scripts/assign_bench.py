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
from scl.train import infer_all


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("heldout")
    p.add_argument("train_npz")
    p.add_argument("out")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--amp", default="bf16", help="the run's amp setting (execution settings are not in the checkpoint)")
    p.add_argument("--channels-last", action="store_true", default=True, help="the run's channels_last (default on)")
    p.add_argument("--batch-size", type=int, default=1024)
    args = p.parse_args()

    paths, skipped = list_inputs([args.heldout], None)
    # the run's own path on the held-out images (as `scl prepare` reads them): infer_all
    # with the run's execution settings, the code that wrote the run's assignments.npz
    ref = load_run(args.run, "cpu", args.amp, args.channels_last)
    got = read_folder_report(args.heldout, ref.image_size, ref.channels)
    root = Path(args.heldout).resolve()
    order = {p: i for i, p in enumerate(got.paths)}
    idx = np.array([order[Path(p).resolve().relative_to(root).as_posix()] for p in paths])
    images = torch.from_numpy(got.data.images).permute(0, 3, 1, 2).contiguous()
    outs = infer_all(ref.model, images, ref.eval_tf, 1024, ref.amp, args.channels_last)
    run_pred = outs["prob_target"].argmax(1)[idx]
    labels = got.data.labels[idx]

    variants = {}
    for name, amp, cl in (("float32", "off", False), ("bf16+channels_last", "bf16", True)):
        head = load_run(args.run, "cpu", amp, cl)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            pred, conf, reasons = assign_files(head, paths, args.batch_size)
            times.append(time.perf_counter() - start)
        assert all(r is None for r in reasons), [r for r in reasons if r]
        variants[name] = {
            "scl_assign_flags": "" if amp == "off" else "--amp bf16 --channels-last",
            "seconds": times, "images_per_s": len(paths) / statistics.median(times),
            "agreement_with_run_head": float((pred == run_pred).mean()),
            "heldout_scores": {k: v for k, v in evaluate(labels, pred).items() if k != "mapping"},
        }

    # training images: `scl assign` (the run's execution settings) vs the run's assignments.npz
    train = load_prepared(args.train_npz)
    with np.load(Path(args.run) / "assignments.npz") as a:
        train_pred = a["pred"]
    src = json.loads(Path(args.run, "metrics.json").read_text()) if Path(args.run, "metrics.json").exists() else {}
    from scl.data.prepared import load_meta

    folder = Path(load_meta(args.train_npz)["source"]["folder"])
    tpred, _, _ = assign_files(ref, [folder / p for p in train.paths], args.batch_size)
    tpred32, _, _ = assign_files(load_run(args.run, "cpu"), [folder / p for p in train.paths], args.batch_size)

    record = {
        "run": args.run, "heldout": args.heldout, "images": len(paths), "image_size": ref.image_size,
        "backbone": ref.settings["train"]["backbone"], "cnn_width": ref.settings["train"]["cnn_width"],
        "batch_size": args.batch_size, "run_head": f"infer_all, amp {args.amp}, channels_last {args.channels_last}",
        "variants": variants,
        "heldout_scores_run_head": {k: v for k, v in evaluate(labels, run_pred).items() if k != "mapping"},
        "train_agreement_with_assignments_npz": {"run_settings": float((tpred == train_pred).mean()),
                                                 "float32": float((tpred32 == train_pred).mean())},
        "train_scores": {k: src.get(k) for k in ("acc", "nmi", "ari")},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "loadavg_1_5_15": list(os.getloadavg()),
                    "torch": torch.__version__},
    }
    atomic_write_json(args.out, record)
    print(json.dumps({k: {"images_per_s": round(v["images_per_s"]), "agreement": v["agreement_with_run_head"]}
                      for k, v in variants.items()}))


if __name__ == "__main__":
    main()
