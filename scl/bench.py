"""`scl bench`: throughput of the training step as training runs it, and of the two
augmentation paths, in one run.

Four figures, each in samples (images) per second and milliseconds per step, wall time and
this process's CPU time (user + system, all threads: a loaded machine slows the wall clock,
much less the CPU time), the median over `--repeats` rounds of `--steps` timed steps after
`--warmup` untimed ones:

  scl_step         the WHOLE training step as scl.train.Trainer runs it (`Trainer._train_step`
                   on synthetic images of the set's shape): the augmentation parameters of
                   the round drawn and moved at once, the batch gathered by index, two views
                   augmented, scl.step.train_step (forward, losses, backward, SGD, momentum
                   update, enqueue) and the loss terms into the device-side tally; each round
                   ends with the tally's finiteness check and means (the host reads of an epoch)
  moco_v2_step     a plain MoCo v2 step written independently in scl/bench_reference.py (MLP
                   head, InfoNCE against a ring-buffer queue, momentum key encoder), on the
                   same backbone, batch, queue length, augmentation and optimiser settings,
                   with the same per-step work around it (views, loss summed on the device)
  batched_augment  two views of a batch drawn by index from a device-resident uint8 tensor,
                   by scl.augment (per-sample parameters, batched tensor operations)
  pil_loader       the conventional path: a Dataset that turns each uint8 image into a PIL
                   image and applies a torchvision.transforms (v1) Compose twice, batched
                   by a DataLoader with `--num-workers` worker processes (+ copy to device)

The settings are those `scl train` resolves for `--dataset` in `--params` (batch size
included: by default the training batch size); the command-line options override them.
`--amp auto` / `--channels-last auto` (the defaults) choose as training does
(scl.device.resolve_amp / resolve_channels_last); the record says what was chosen and why.

The SCL and MoCo v2 steps are timed alternately, round by round, so that a change of
machine load hits both; likewise the two augmentation paths (the loader's workers are
started afresh for each round and stopped before anything else is timed).

Ratios: `scl_over_moco_v2_step_time` (wall) and `scl_over_moco_v2_step_cpu_time` (how
much slower an SCL step is than a plain MoCo v2 step; the goal is <= 1.15) and
`batched_over_pil_throughput` (goal >= 3).

FLOPs: the backbone's forward FLOPs per image and a whole SCL training step's FLOPs per
sample are counted with torch.utils.flop_counter.FlopCounterMode (on the meta device:
shapes only, nothing is computed), and the achieved TFLOP/s of the step follows; on a GPU
named in PEAK_TFLOPS its share of the peak is given too.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import statistics
import time
from pathlib import Path

# The FLOP figure: one forward of a ResNet-34 at 32 x 32 ~ 2.32 GFLOP per image.
STATED_RESNET34_32PX_GFLOP = 2.32
# A training step ~ 4 forward-equivalents per sample: query forward + its backward (~2x)
# + key forward.
STEP_FORWARD_EQUIVALENTS = 4

# Dense (no sparsity) peak TFLOP/s: (substring of torch.cuda.get_device_name, bf16/fp16
# tensor cores, tf32 tensor cores, fp32 without tensor cores). First match wins. From
# NVIDIA's data sheets (H100 SXM5 / PCIe / NVL, H200 SXM, A100 SXM4 / PCIe).
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0, 378.0, 51.2),
    ("H100 NVL", 835.0, 417.5, 60.0),
    ("H100", 989.4, 494.7, 66.9),
    ("H200", 989.4, 494.7, 66.9),
    ("A100", 312.0, 156.0, 19.5),
)

GOALS = {"batched_over_pil_throughput_min": 3.0, "scl_over_moco_v2_step_time_max": 1.15}


# ---------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_info(device) -> dict:
    import torch
    import torchvision

    info = {
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(device),
        "gpu": None,
        # what changes CPU timings besides the code: allocator and threading settings
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("OMP_", "MKL_", "MALLOC_", "KMP_")) or k == "LD_PRELOAD"},
    }
    if device.type == "cuda":
        prop = torch.cuda.get_device_properties(device)
        info["gpu"] = {
            "name": prop.name,
            "capability": f"{prop.major}.{prop.minor}",
            "memory_gib": round(prop.total_memory / 2**30, 1),
            "multiprocessors": prop.multi_processor_count,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "tf32_conv": torch.backends.cudnn.allow_tf32,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        }
    return info


def peak_tflops(gpu_name: str) -> dict | None:
    for key, bf16, tf32, fp32 in PEAK_TFLOPS:
        if key.lower() in gpu_name.lower():
            return {"match": key, "bf16": bf16, "tf32": tf32, "fp32": fp32}
    return None


def default_out(info: dict, args) -> Path:
    where = _slug(info["gpu"]["name"]) if info["gpu"] else f"cpu-{_slug(info['cpu_model'])}-{info['cpu_count']}c"
    flags = ([args.amp] if args.amp not in ("off", "auto") else []) + (["cl"] if args.channels_last is True else []) + (
        ["compile"] if args.compile else []) + ([f"t{args.threads}"] if getattr(args, "threads", 0) else [])
    name = "-".join(["bench", where, args.backbone, str(args.image_size), str(args.batch_size), *flags])
    return Path("results/bench") / f"{name}.json"


# ---------------------------------------------------------------------------- pieces


def pil_transform(recipe: str, image_size: int):
    """The recipe as a conventional torchvision.transforms (v1) pipeline on PIL images:
    RandomResizedCrop (or RandomAffine), flip, ColorJitter with p, RandomGrayscale,
    Gaussian blur (large images), ToTensor, (noise), Normalize."""
    from torchvision import transforms as T

    from scl.augment import blur_kernel_size, get_recipe

    r = get_recipe(recipe)
    ops = []
    if r.geometry == "crop":
        ops.append(T.RandomResizedCrop(image_size, scale=r.crop_scale, ratio=r.crop_ratio))
        if r.flip_p:
            ops.append(T.RandomHorizontalFlip(r.flip_p))
    else:
        ops.append(T.RandomAffine(r.rotation_deg, translate=(r.translate_px / image_size,) * 2,
                                  scale=r.scale_range, shear=r.shear_deg))
    ranges = {op: (lo, hi) for op, lo, hi in r.jitter}
    jitter = {k: ranges[k] for k in ("brightness", "contrast", "saturation", "hue") if k in ranges}
    if jitter:
        ops.append(T.RandomApply([T.ColorJitter(**jitter)], p=r.jitter_p))
    if r.grayscale_p:
        ops.append(T.RandomGrayscale(r.grayscale_p))
    if r.blur_p and image_size >= r.blur_min_size:
        ops.append(T.RandomApply([T.GaussianBlur(blur_kernel_size(image_size), r.blur_sigma)], p=r.blur_p))
    ops.append(T.ToTensor())
    if "shift" in ranges or r.noise_std:
        ops.append(_TensorNoise(ranges.get("shift"), r.noise_std))
    ops.append(T.Normalize(r.mean, r.std))
    return T.Compose(ops)


class _TensorNoise:
    """Additive brightness shift and Gaussian noise on a [0, 1] tensor (digits / grayscale)."""

    def __init__(self, shift, std):
        self.shift, self.std = shift, std

    def __call__(self, x):
        import torch

        if self.shift:
            x = x + (self.shift[0] + (self.shift[1] - self.shift[0]) * torch.rand(()))
        if self.std:
            x = x + self.std * torch.randn_like(x)
        return x.clamp(0.0, 1.0)


class PILTwoViews:
    """A conventional map-style Dataset: uint8 array -> PIL image -> two transformed views."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform  # N x H x W x C uint8 (numpy)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        a = self.images[i]
        img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        return self.transform(img), self.transform(img)


def bench_settings(args, variant: str):
    """The resolved settings (scl.config.resolve) of `--dataset` and `variant` in `--params`,
    with the command line's backbone, sizes, recipe, memory size and fast-path flags."""
    import dataclasses

    from scl.config import load_params, resolve

    overrides = {"backbone": args.backbone, "augment": args.recipe, "memory_size": args.memory_size,
                 "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile,
                 "device": args.device, "threads": args.threads, "save_features": False}
    if args.batch_size is not None:  # else the set's training batch size
        overrides["batch_size"] = args.batch_size
    params = load_params(args.params)
    settings = resolve(params, args.dataset, variant, args.seed, overrides)
    ds = dataclasses.replace(settings.dataset, num_classes=args.num_classes, image_size=args.image_size,
                             channels=args.channels)
    return dataclasses.replace(settings, dataset=ds)


def count_flops(args, channels: int) -> dict:
    """FLOPs (FlopCounterMode, meta device: shapes only) of a backbone forward per image,
    of the ResNet-34 at 32 x 32 (the issue's figure), and of one SCL training step."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from scl.models.backbones import build_backbone

    def forward_gflop(name, size, stem_pool=True):
        net = build_backbone(name, channels).to("meta")
        if not stem_pool:
            net.stem[-1] = torch.nn.Identity()
        with FlopCounterMode(display=False) as fc:
            net(torch.empty(2, channels, size, size, device="meta"))
        return fc.get_total_flops() / 2 / 1e9

    out = {
        "forward_gflop_per_image": forward_gflop(args.backbone, args.image_size),
        "resnet34_32px_forward_gflop_measured": forward_gflop("resnet34", 32) if channels == 3 else None,
        "resnet34_32px_forward_gflop_stated": STATED_RESNET34_32PX_GFLOP,
        # the stated figure is that of the CIFAR ResNet-34 without the stem's max-pool; this
        # project's small-input ResNet (IIC / PICA) pools to 17 x 17 after the stem
        "resnet34_32px_forward_gflop_without_stem_maxpool":
            forward_gflop("resnet34", 32, stem_pool=False) if channels == 3 else None,
        "step_forward_equivalents": STEP_FORWARD_EQUIVALENTS,
        "counter": "torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-add; convolutions, "
                   "matmuls and their backward only)",
    }
    out["step_gflop_per_sample_estimate"] = STEP_FORWARD_EQUIVALENTS * out["forward_gflop_per_image"]
    try:  # a whole SCL step (forwards, losses, backward), measured
        b = args.batch_size
        from scl.step import build_model

        model = build_model(bench_settings(args, "scl")).to("meta")
        x = torch.empty(b, channels, args.image_size, args.image_size, device="meta")
        labels = {t: torch.zeros(b, dtype=torch.long, device="meta") for t in model.clustered}
        with FlopCounterMode(display=False) as fc:
            loss, _, _ = model.training_step(x, x, labels, torch.ones(b, device="meta"), None)
            loss.backward()
        out["step_gflop_per_sample_measured"] = fc.get_total_flops() / b / 1e9
    except Exception as e:  # pragma: no cover - counting is a bonus, never fatal
        out["step_gflop_per_sample_measured"] = None
        out["step_count_error"] = f"{type(e).__name__}: {e}"
    return out


# ---------------------------------------------------------------------------- timing


def _summary(times: list[tuple[float, float]], per_iter: int, steps: int) -> dict:
    """times: (wall, CPU) seconds per round of `steps` iterations of `per_iter` samples each."""
    walls, cpus = [w for w, _ in times], [c for _, c in times]
    rates = [steps * per_iter / t for t in walls]
    return {
        "samples_per_s": statistics.median(rates),
        "ms_per_step": statistics.median(walls) / steps * 1e3,
        "cpu_samples_per_s": statistics.median(steps * per_iter / max(c, 1e-9) for c in cpus),
        "cpu_ms_per_step": statistics.median(cpus) / steps * 1e3,
        "rounds_samples_per_s": rates,
        "rounds_cpu_ms_per_step": [c / steps * 1e3 for c in cpus],
    }


def moco_v2_full_step(settings, images, augment, dev, amp, channels_last: bool, seed: int):
    """A round runner of plain MoCo v2 steps (scl/bench_reference.py) with the same work
    around each step as training: the round's augmentation parameters drawn at once, the
    batch gathered by index, two views, loss summed on the device, one read at the end."""
    import torch

    from scl.bench_reference import MoCoV2
    from scl.device import autocast, to_channels_last
    from scl.models.backbones import build_backbone

    t, ds = settings.train, settings.dataset
    torch.manual_seed(seed)
    net = build_backbone(t.backbone, ds.channels, t.cnn_width)
    model = MoCoV2(net, net.out_dim, dim=t.feature_dim, queue=t.memory_size).to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.q.parameters(), lr=t.lr, momentum=t.sgd_momentum, weight_decay=t.weight_decay,
                          **({"fused": True} if dev.type == "cuda" else {"foreach": True}))
    b, n = t.batch_size, len(images)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen).to(dev)

    def run(steps: int) -> None:
        views = augment.draw(steps, b, gen, dev)
        total = torch.zeros((), dtype=torch.float64, device=dev)
        for step in range(steps):
            idx = perm[(step * b) % (n - b + 1):][:b]
            batch = images[idx]
            x_q, x_k = (to_channels_last(augment.apply_device(batch, v), channels_last) for v in views[step])
            with autocast(dev, amp):
                loss, k = model.loss(x_q, x_k)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.enqueue(k)
            total += loss.detach()
        float(total)  # the round's one host read, as an epoch's tally has

    return run


def bench(args) -> dict:
    """Run every measurement; write and return the JSON record."""
    import torch

    from scl.augment import build_augment
    from scl.data.prepared import PreparedData
    from scl.device import explain_compile_errors, pick_device, resolve_amp, resolve_channels_last
    from scl.io import atomic_write_json
    from scl.tally import EpochTally
    from scl.train import Trainer

    if args.batch_size is None:  # the training batch size of --dataset
        args.batch_size = bench_settings(args, "scl").train.batch_size
    for name in ("steps", "warmup", "repeats", "batch_size", "image_size"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {args.num_workers}")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = pick_device(args.device)
    amp, amp_why = resolve_amp(args.amp, dev)
    channels_last, cl_why = resolve_channels_last(args.channels_last, dev, amp)
    info = machine_info(dev)
    load_start = os.getloadavg()
    b, c, s = args.batch_size, args.channels, args.image_size
    n_images = max(20, args.steps) * b
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def timed(fn, n, per_call=False):
        """(wall, CPU) seconds of n calls of fn(), or of one call fn(n) when per_call is False."""
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        if per_call:
            for _ in range(n):
                fn()
        else:
            fn(n)
        sync()
        return time.perf_counter() - t0, time.process_time() - c0

    gen = torch.Generator().manual_seed(args.seed)
    images_np = torch.randint(0, 256, (n_images, s, s, c), dtype=torch.uint8, generator=gen).numpy()
    images = torch.from_numpy(images_np).permute(0, 3, 1, 2).contiguous().to(dev)  # device-resident
    augment = build_augment(args.recipe, s, c).to(dev)

    # ---- (c) batched augmentation and (d) PIL DataLoader, alternating rounds
    state = {"pos": 0, "perm": torch.randperm(n_images, generator=gen)}

    def batched_views():
        if state["pos"] + b > n_images:
            state["pos"], state["perm"] = 0, torch.randperm(n_images, generator=gen)
        idx = state["perm"][state["pos"] : state["pos"] + b].to(dev)
        state["pos"] += b
        batch = images[idx]
        return augment(batch, gen), augment(batch, gen)

    from torch.utils.data import DataLoader, RandomSampler

    dataset = PILTwoViews(images_np, pil_transform(args.recipe, s))
    need = b * (args.warmup + args.steps + 2 * max(args.num_workers, 1) + 4)
    loader = DataLoader(dataset, batch_size=b, drop_last=True, num_workers=args.num_workers,
                        sampler=RandomSampler(dataset, replacement=True, num_samples=need),
                        pin_memory=dev.type == "cuda")
    pil_warmup = args.warmup + 2 * args.num_workers  # let every worker's prefetch reach steady state

    def pil_round() -> float:
        it = iter(loader)

        def next_batch():
            v1, v2 = next(it)
            v1.to(dev, non_blocking=True), v2.to(dev, non_blocking=True)

        for _ in range(pil_warmup):
            next_batch()
        t = timed(next_batch, args.steps, per_call=True)
        del it  # stop the workers before anything else is timed
        return t

    for _ in range(args.warmup):
        batched_views()
    aug_t, pil_t = [], []
    for _ in range(args.repeats):
        aug_t.append(timed(batched_views, args.steps, per_call=True))
        pil_t.append(pil_round())

    # ---- (a) the SCL step as training runs it and (b) the plain MoCo v2 step, alternating rounds
    settings = bench_settings(args, "scl")
    data = PreparedData(images_np, torch.randint(0, args.num_classes, (n_images,), generator=gen).numpy(), [])
    with explain_compile_errors(args.compile):
        trainer = Trainer(settings, data, "/nonexistent-scl-bench", progress=False)  # writes nothing
        gen_epoch, inputs = trainer._epoch_inputs()
        trainer.model.train()

        def scl_round(steps: int) -> None:
            tally = EpochTally(["loss", *trainer.model.term_names()], trainer.device)
            views: list = []
            for step in range(steps):
                if not views:  # the rest of the round's parameters at once (as an epoch's chunks)
                    views = trainer._draw_views(gen_epoch, trainer.steps_per_epoch - (steps - step))
                trainer._train_step(step, views.pop(), inputs, tally)
            trainer._check_finite(tally)
            tally.means()

        moco_round = moco_v2_full_step(settings, images, augment, dev, amp, channels_last, args.seed)
        for _ in range(max(args.warmup, 3 if args.compile else 0)):
            scl_round(1)
            moco_round(1)
        scl_t, moco_t = [], []
        for _ in range(args.repeats):
            scl_t.append(timed(scl_round, args.steps))
            moco_t.append(timed(moco_round, args.steps))

    results = {
        "scl_step": _summary(scl_t, b, args.steps),
        "moco_v2_step": _summary(moco_t, b, args.steps),
        "batched_augment": _summary(aug_t, b, args.steps),
        "pil_loader": _summary(pil_t, b, args.steps),
    }
    ratios = {
        "scl_over_moco_v2_step_time": results["scl_step"]["ms_per_step"] / results["moco_v2_step"]["ms_per_step"],
        "scl_over_moco_v2_step_cpu_time":
            results["scl_step"]["cpu_ms_per_step"] / results["moco_v2_step"]["cpu_ms_per_step"],
        "batched_over_pil_throughput":
            results["batched_augment"]["samples_per_s"] / results["pil_loader"]["samples_per_s"],
        # the same ratios per round (both figures of a round were timed back to back)
        "scl_over_moco_v2_step_time_rounds": [a[0] / m[0] for a, m in zip(scl_t, moco_t)],
        "scl_over_moco_v2_step_cpu_time_rounds": [a[1] / m[1] for a, m in zip(scl_t, moco_t)],
        "batched_over_pil_throughput_rounds": [p[0] / a[0] for a, p in zip(aug_t, pil_t)],
    }
    goals = {
        **GOALS,
        "batched_over_pil_met": ratios["batched_over_pil_throughput"] >= GOALS["batched_over_pil_throughput_min"],
        "scl_over_moco_v2_met": ratios["scl_over_moco_v2_step_time"] <= GOALS["scl_over_moco_v2_step_time_max"],
    }

    flops = count_flops(args, c)
    step_gflop = flops.get("step_gflop_per_sample_measured") or flops["step_gflop_per_sample_estimate"]
    flops["scl_step_achieved_tflops"] = results["scl_step"]["samples_per_s"] * step_gflop / 1e3
    flops["scl_step_achieved_tflops_at_4x_forward"] = (
        results["scl_step"]["samples_per_s"] * flops["step_gflop_per_sample_estimate"] / 1e3)
    if info["gpu"]:
        peak = peak_tflops(info["gpu"]["name"])
        if peak is not None:
            precision = "bf16" if amp is not None else ("tf32" if torch.backends.cudnn.allow_tf32 else "fp32")
            flops["peak_tflops"] = peak
            flops["peak_precision"] = precision
            flops["share_of_peak"] = flops["scl_step_achieved_tflops"] / peak[precision]

    settings = {k: v for k, v in vars(args).items() if k not in ("run", "command", "verbose")}
    settings["n_images"] = n_images
    amp_name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp, "off")
    settings["execution"] = {"amp": amp_name, "amp_why": amp_why, "channels_last": channels_last,
                             "channels_last_why": cl_why}
    settings["pil_warmup_batches"] = pil_warmup
    chosen = argparse.Namespace(**{**vars(args), "amp": amp_name, "channels_last": channels_last})
    out = Path(args.out) if args.out else default_out(info, chosen)
    record = {
        "machine": {**info, "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg())},
        "settings": settings,
        "units": "samples/s = images per second (each image: two augmented views; in a step, a query view "
                 "and a key view); ms_per_step = milliseconds per batch; medians over rounds",
        "results": results,
        "ratios": ratios,
        "goals": goals,
        "flops": flops,
        "out": str(out),
    }
    atomic_write_json(out, record)
    return record
