"""`make gpu-check`: prove and measure the GPU path in one command, within 10 minutes.

On a machine with a CUDA GPU and the PyTorch installed there (no internet, no .venv: run
with `PYTHONPATH=.`; the one package the GPU image lacks, jsonschema with its three
dependencies, travels as wheels, see the README), this

  1. runs the CUDA tests (`pytest -m cuda`),
  2. measures the device's own dense bf16 matrix-product peak (8192^3, median of 10),
  3. runs `scl bench --device cuda` for the small-input ResNet-18 and ResNet-34 at 32 px,
     batch 256 and 512, bf16 + channels_last, torch.compile off and on (eager first; a
     configuration that no longer fits the time budget is skipped and listed),
  4. trains the Fashion-MNIST set with its GPU setting (params.yaml: the paper's ResNet-34
     and key-encoder momentum 0.9, amp/channels_last chosen by the hardware) for a few
     minutes, from the prepared data/prepared/fashion.npz, and reads ACC per epoch,

and writes everything to results/bench/gpu-check-<gpu>.json (the machine named; every
bench also keeps its own JSON under results/bench/), and, where the environment variable
OUT names a folder (the device tool's), a copy of those files as one .tar.gz there.

Every step has a time budget; a step that fails or runs out of time is recorded as such
and the check goes on, so one broken piece never hides the others' figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

# (backbone, batch, compile) in the order they run: eager first, so that the cheapest,
# most informative figures exist even if compiling takes longer than expected
BENCH_CONFIGS = [(bb, b, c) for c in (False, True) for b in (256, 512) for bb in ("resnet34", "resnet18")]
CIFAR10_IMAGES, CIFAR10_EPOCHS = 60_000, 200
# the test files holding `cuda`-marked tests (named, so that collecting the others - some
# need the full .venv, e.g. Snakemake - cannot fail the check)
CUDA_TEST_FILES = ("tests/test_augment.py", "tests/test_gpu.py")  # the "one CIFAR-10-sized run"


def matmul_peak_tflops(n: int = 8192, repeats: int = 10) -> dict:
    """Dense bf16 matrix-product throughput of this GPU (TFLOP/s): median of `repeats`
    timed n x n x n products after three warm-ups, on random data."""
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    median = times[len(times) // 2]
    return {"n": n, "repeats": repeats, "tflops": 2 * n**3 / median / 1e12, "median_s": median}


def _run(cmd: list[str], timeout: float, log) -> dict:
    """Run a command with a timeout; its output goes to `log`. Returns rc and seconds."""
    t0 = time.perf_counter()
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    try:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=max(timeout, 1)).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    return {"cmd": " ".join(cmd), "rc": rc, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scl.gpucheck", description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=560.0, help="seconds for the whole check (default 560)")
    p.add_argument("--fashion-epochs", type=int, default=20, help="epochs of the Fashion-MNIST run (default 20)")
    p.add_argument("--fashion-data", default="data/prepared/fashion.npz")
    p.add_argument("--out-dir", default="results/bench")
    a = p.parse_args(argv)
    deadline = time.monotonic() + a.budget
    left = lambda: deadline - time.monotonic()  # noqa: E731

    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine",
              file=sys.stderr)
        return 2
    from scl.bench import machine_info, peak_tflops, _slug

    dev = torch.device("cuda")
    info = machine_info(dev)
    slug = _slug(info["gpu"]["name"])
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / f"gpu-check-{slug}.log"
    record: dict = {"machine": info, "budget_s": a.budget, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    py = sys.executable
    with open(log_path, "w") as log:
        # 1. CUDA tests
        record["tests"] = _run([py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *CUDA_TEST_FILES],
                               min(150, left()), log)
        # 2. the device's own bf16 peak
        record["matmul_bf16"] = matmul_peak_tflops()
        record["matmul_bf16"]["datasheet"] = peak_tflops(info["gpu"]["name"])
        measured_peak = record["matmul_bf16"]["tflops"]
        # 3. scl bench, ResNet-18/34 at 32 px
        benches, train_reserve = [], 200.0
        for backbone, batch, compiled in BENCH_CONFIGS:
            name = f"bench-{slug}-{backbone}-32-{batch}-auto{'-compile' if compiled else ''}.json"
            budget = left() - train_reserve
            if budget < (90 if compiled else 30):
                benches.append({"backbone": backbone, "batch_size": batch, "compile": compiled,
                                "skipped": "time budget"})
                continue
            cmd = [py, "-m", "scl", "bench", "--device", "cuda", "--backbone", backbone, "--image-size", "32",
                   "--batch-size", str(batch), "--amp", "auto", "--channels-last", "auto",
                   "--steps", "20", "--repeats", "3", "--warmup", "5", "--out", str(out_dir / name)]
            if compiled:
                cmd.append("--compile")
            run = _run(cmd, budget, log)
            entry = {"backbone": backbone, "batch_size": batch, "compile": compiled, **run}
            if run["rc"] == 0:
                r = json.loads((out_dir / name).read_text())
                step = r["results"]["scl_step"]
                gflop = r["flops"].get("step_gflop_per_sample_measured") or r["flops"]["step_gflop_per_sample_estimate"]
                tflops = step["samples_per_s"] * gflop / 1e3
                entry.update(
                    json=str(out_dir / name), scl_samples_per_s=step["samples_per_s"],
                    moco_v2_samples_per_s=r["results"]["moco_v2_step"]["samples_per_s"],
                    scl_over_moco_v2_step_time=r["ratios"]["scl_over_moco_v2_step_time"],
                    step_gflop_per_sample=gflop, achieved_tflops=tflops,
                    share_of_measured_bf16_peak=tflops / measured_peak,
                    cifar10_200_epochs_hours=CIFAR10_IMAGES * CIFAR10_EPOCHS / step["samples_per_s"] / 3600,
                )
            benches.append(entry)
        record["benches"] = benches
        # 4. Fashion-MNIST with the GPU setting, a few minutes
        run_dir = Path("/tmp/scl-gpu-check-fashion")
        if not Path(a.fashion_data).exists():
            record["fashion"] = {"skipped": f"{a.fashion_data} not found: carry the prepared file "
                                            "(scl prepare fashion makes it where the download works)"}
        else:
            cmd = [py, "-m", "scl", "train", "--dataset", "fashion", "--seed", "0", "--data", a.fashion_data,
                   "--out", str(run_dir), "--restart", "--no-progress", "-v",
                   "--set", "device=cuda", "--set", "backbone=resnet34", "--set", "ema_momentum=0.9",
                   "--set", f"epochs={a.fashion_epochs}", "--set", "threads=0"]
            run = _run(cmd, left() - 15, log)
            logf = run_dir / "log.jsonl"
            epochs = [json.loads(line) for line in logf.read_text().splitlines()] if logf.exists() else []
            record["fashion"] = {
                **run, "epochs_done": len(epochs),
                "per_epoch": [{k: e.get(k) for k in ("epoch", "loss", "acc", "nmi", "ari", "samples_per_s",
                                                     "epoch_time_s")} for e in epochs],
            }
            metrics = run_dir / "metrics.json"
            if metrics.exists():
                record["fashion"]["metrics"] = json.loads(metrics.read_text())
    record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out = out_dir / f"gpu-check-{slug}.json"
    out.write_text(json.dumps(record, indent=1, default=str))
    files = [out, log_path] + [Path(b["json"]) for b in record["benches"] if b.get("json")]
    if os.environ.get("OUT"):
        with tarfile.open(Path(os.environ["OUT"]) / "gpu-check.tar.gz", "w:gz") as tar:
            for f in files:
                tar.add(f, arcname=str(f))
        (Path(os.environ["OUT"]) / out.name).write_text(out.read_text())
    _summary(record)
    print(out)
    return 0 if record["tests"]["rc"] == 0 else 1


def _summary(record: dict) -> None:
    print(f"gpu-check on {record['machine']['gpu']['name']}: tests rc={record['tests']['rc']}; "
          f"bf16 matmul {record['matmul_bf16']['tflops']:.0f} TFLOP/s", file=sys.stderr)
    for b in record["benches"]:
        if "scl_samples_per_s" in b:
            print(f"  {b['backbone']:9s} batch {b['batch_size']:3d} compile={b['compile']!s:5s} "
                  f"SCL {b['scl_samples_per_s']:9.0f} samples/s  {b['achieved_tflops']:6.1f} TFLOP/s "
                  f"({100 * b['share_of_measured_bf16_peak']:.1f}% of peak)  SCL/MoCo v2 step "
                  f"{b['scl_over_moco_v2_step_time']:.2f}  CIFAR-10 x200: {b['cifar10_200_epochs_hours']:.2f} h",
                  file=sys.stderr)
        else:
            print(f"  {b['backbone']:9s} batch {b['batch_size']:3d} compile={b['compile']!s:5s} "
                  f"{b.get('skipped') or 'rc=' + str(b.get('rc'))}", file=sys.stderr)
    f = record.get("fashion", {})
    for e in f.get("per_epoch", []):
        print(f"  fashion epoch {e['epoch']:3d}: ACC {e.get('acc')}  {e.get('samples_per_s') or 0:.0f} samples/s",
              file=sys.stderr)
    if f.get("skipped"):
        print(f"  fashion: {f['skipped']}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
