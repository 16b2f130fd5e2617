"""What the per-epoch diagnostics (scl/epoch_diagnostics.py, `diagnostics: true`) cost.

  PYTHONPATH=. python benchmarks/diagnostics/epoch_diagnostics.py [--out results/bench/epoch-diagnostics.json]

Two figures, each the fastest of a few repeats (a shared machine only ever adds time):
  digits: one digits epoch with diagnostics off (the quickest of 2 epochs) against one call
          of epoch_diagnostics on that run's end-of-epoch outputs (all 1,797 images);
  fashion-sized: one call on random unit features of 20,000 x 128 and a memory of 10 x 409 keys,
          sample 5,000 (the cap, so the full 70,000 images cost about the same).
The default (`diagnostics: false`, on for the fashion set) in params.yaml follows from them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from scl.config import load_params, resolve
from scl.data.prepared import load_prepared
from scl.data.registry import prepare
from scl.epoch_diagnostics import epoch_diagnostics
from scl.io import atomic_write_json
from scl.losses import memory_soft_assignment
from scl.train import Trainer


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def digits(repeats: int) -> dict:
    tmp = Path(tempfile.mkdtemp())
    data = load_prepared(prepare("digits", tmp / "digits.npz"))
    s = resolve(load_params("params.yaml"), "digits", "scl", 0, {"epochs": 3, "diagnostics": False})
    trainer = Trainer(s, data, tmp / "run", progress=False)
    trainer.run(stop_after_epoch=2)
    epoch = min(r["epoch_time_s"] for r in trainer.records)
    outs = trainer._infer_all()
    calls = timed(lambda: epoch_diagnostics(outs, trainer.labels_true, 10, seed=0, sample_size=5000,
                                            memory_assign=trainer._memory_assign()), repeats)
    return {"images": len(data), "epoch_s": epoch, "diagnostics_s": calls, "share": min(calls) / epoch}


def fashion_sized(repeats: int, n: int = 20_000, dim: int = 128, keys_n: int = 4090, sample: int = 5000) -> dict:
    rng = np.random.default_rng(0)

    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    y = rng.integers(0, 10, n)
    outs = {"backbone": unit(rng.normal(size=(n, dim))), "feat_target": unit(rng.normal(size=(n, dim))),
            "prob_target": rng.dirichlet(np.ones(10), n).astype(np.float32)}
    keys = torch.nn.functional.normalize(torch.randn(keys_n, dim, generator=torch.Generator().manual_seed(0)), dim=1)
    bank = torch.arange(keys_n) // (keys_n // 10)  # 10 banks of equal size, as the memories are laid out
    valid = torch.ones(keys_n, dtype=torch.bool)

    @torch.no_grad()
    def assign(f):
        return memory_soft_assignment(torch.from_numpy(f), keys, bank, valid, 10, 0.1).argmax(1).numpy()

    calls = timed(lambda: epoch_diagnostics(outs, y, 10, seed=0, sample_size=sample, memory_assign=assign), repeats)
    return {"images": n, "dim": dim, "memory_keys": keys_n, "sample": sample, "diagnostics_s": calls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bench/epoch-diagnostics.json")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    record = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "loadavg_1_5_15": list(os.getloadavg())},
        "digits": digits(args.repeats),
        "fashion_sized": fashion_sized(args.repeats),
    }
    atomic_write_json(Path(args.out), record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
