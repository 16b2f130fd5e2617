"""`scl assign`: put new images into the clusters of a trained run, without retraining.

    scl assign --run results/runs/manual/folder/scl/seed0 new_photos/ more.png --out new.csv
    scl assign --run RUN --list files.txt --out new.csv --device cuda --batch-size 2048

The images get the run's own preprocessing: the prepared data's resize rule and 8-bit
scaling (`scl.data.images.load_image`: shorter side to the run's image_size, centre crop,
16-bit / float / alpha handled), its channels, and its augmentation recipe's un-augmented
path (`build_eval_transform`: normalisation). The cluster is the one the run's final
assignment uses: argmax of the target task's classifier (eq. 5), or of eq. 3's memory
similarities when the run had no online CD. Runs without a target task (Figure 4's
single-task variants) have no head to apply, and are refused.

Batched: decoding runs in threads and overlaps the network, one batch ahead. Files that
cannot be read are skipped and listed in `<out>.skipped.csv` (as `scl prepare` does).
Output: a CSV of `path,cluster,confidence` (confidence = the head's top probability).
"""

from __future__ import annotations

import csv
import io
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scl.data.folder import Listing, walk_images
from scl.data.images import IMAGE_EXTENSIONS, default_workers, load_images_tolerant


class AssignError(ValueError):
    """The run cannot assign (no checkpoint, no target head) or the input is unusable."""


def _safe_load(path: Path, device: torch.device) -> dict:
    """The run's checkpoint through scl.checkpoint (digest checked, tensors and plain values
    only: a crafted file cannot run code), its errors as AssignError."""
    from scl.checkpoint import load_checkpoint
    from scl.errors import CheckpointError, CheckpointMismatch

    try:
        return load_checkpoint(path, map_location=device)
    except (CheckpointError, CheckpointMismatch) as e:  # corrupt, unsafe, or no digest file beside it
        raise AssignError(f"cannot use {path}: {e}; it must be a checkpoint written by `scl train`") from e


def run_execution(run_dir: str | Path, device: torch.device) -> tuple[str, bool, str]:
    """The amp and channels_last the run's last training process chose (its timing.json, where
    scl.timing keeps each process's `execution` record), so that `scl assign` reads images the
    way the run's own final assignment did: `amp: auto` gives bf16 on one CPU and float32 on
    another, and a borderline image can change cluster between the two.

    Returns (amp, channels_last, why). Without a record (timing.json is kept by neither git nor
    DVC, so a pulled run has none) it is float32 in NCHW, the plain path; a run that trained in
    fp16 (CUDA only) is read in float32 on another device."""
    from scl.paths import TIMING
    from scl.timing import last_execution

    last = last_execution(Path(run_dir))
    if last is None:
        return "off", False, f"no execution record in {Path(run_dir) / TIMING}: float32"
    amp, channels_last = last.get("amp", "off"), bool(last.get("channels_last", False))
    if amp not in ("off", "bf16", "fp16"):
        amp = "off"
    why = f"as the run trained (amp {amp}, channels_last {str(channels_last).lower()})"
    if amp == "fp16" and device.type != "cuda":
        amp, why = "off", f"the run trained in fp16 on CUDA; float32 on {device}"
    return amp, channels_last, why


@dataclass
class TrainedHead:
    """A trained run's query encoder and target head, ready to assign images."""

    model: torch.nn.Module
    eval_tf: torch.nn.Module
    image_size: int
    channels: int
    num_classes: int
    device: torch.device
    settings: dict
    amp: torch.dtype | None = None  # autocast dtype of the encoder (None: float32)
    channels_last: bool = False


def load_run(run_dir: str | Path, device: str = "auto", amp: str = "off", channels_last: bool = False,
             require_head: bool = True) -> TrainedHead:
    """Rebuild the run's model from its checkpoint (settings + weights) in eval mode, with
    the run's own eval path (`eval_crop` included; 1 for runs from before the setting).

    amp / channels_last: execution settings, as in training (`run_execution` gives the run's
    own, with which assignments match the run's final ones image for image).
    require_head=False also loads runs without the target task (MoCo, under- or
    instance-only), e.g. to read their backbone features; `scl assign` needs the head."""
    from scl.augment import build_eval_transform
    from scl.models.scl_model import SCLConfig, SCLModel
    from scl.device import amp_dtype, pick_device

    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint.pt"
    if not ckpt.exists():
        raise AssignError(f"{ckpt} not found: --run must be a run folder of `scl train` (results/runs/<set>/<dataset>/"
                          "<variant>/seed<k>) whose training has run")
    if not (run_dir / "metrics.json").exists():
        print(f"scl assign: warning: {run_dir} has no metrics.json, its training is unfinished; assigning with "
              "the last checkpoint's weights", file=sys.stderr)
    dev = pick_device(device)
    ck = _safe_load(ckpt, dev)
    s = (ck.get("identity") or {}).get("settings") if isinstance(ck, dict) else None  # the run's method settings
    if not isinstance(s, dict):
        raise AssignError(f"{ckpt} holds no run identity (settings): it was not written by this version of "
                          "`scl train`; train the run again")
    ds, t = s["dataset"], s["train"]
    if require_head and "target" not in t["tasks"]:
        raise AssignError(f"run {run_dir} has no target task (tasks: {', '.join(t['tasks'])}): it has no C-way head "
                          "to assign new images with; use a run with the target task (the `scl` variant)")
    model = SCLModel(SCLConfig(
        backbone=t["backbone"], backbone_width=t["cnn_width"], in_channels=ds["channels"],
        num_classes=ds["num_classes"], tasks=tuple(t["tasks"]), feature_dim=t["feature_dim"],
        memory_size=t["memory_size"], memory_init=t["memory_init"], temperature=t["temperature"],
        ema_momentum=t["ema_momentum"], cross_cluster=t["cross_cluster"], online_cd=t["online_cd"],
        projection=t.get("projection", "linear"), bn_splits=t.get("bn_splits", 1),  # keys absent in older runs
    ))
    model.load_state_dict(ck["model"])
    model.to(dev).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    eval_tf = build_eval_transform(t["augment"], ds["image_size"], ds["channels"], t.get("eval_crop", 1.0)).to(dev)
    return TrainedHead(model, eval_tf, ds["image_size"], ds["channels"], ds["num_classes"], dev, s,
                       amp_dtype(amp, dev), channels_last)


@torch.no_grad()
def infer_outputs(head: TrainedHead, images: np.ndarray | torch.Tensor, keys: tuple[str, ...],
                  eval_tf: torch.nn.Module | None = None, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """The model's `infer` outputs named in `keys` ("backbone", "feat_<task>", "prob_<task>"),
    float32 N x D each, for uint8 `N x H x W x C` images read through the run's eval path, or
    through `eval_tf` (e.g. the same recipe at another crop: workflow/scripts/*crop_check.py)."""
    from scl.device import autocast

    tf = head.eval_tf if eval_tf is None else eval_tf
    x = torch.as_tensor(images)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size].to(head.device).permute(0, 3, 1, 2)  # B x C x H x W uint8
        batch = tf(batch)
        if head.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(head.device, head.amp):
            o = head.model.infer(batch)
        for k in keys:
            out[k].append(o[k].float().cpu())
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def head_probabilities(head: TrainedHead, images: np.ndarray | torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """N x C target-task probabilities of uint8 `N x H x W x C` images (the run's eq. 5 scores)."""
    if len(images) == 0:
        return np.zeros((0, head.num_classes), np.float32)
    return infer_outputs(head, images, ("prob_target",), batch_size=batch_size)["prob_target"]


def list_inputs(inputs: list[str], list_file: str | None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files named by `inputs` (files, or folders walked recursively) and `list_file`
    (one path a line), in the order given; with what was skipped and why."""
    named = [Path(p) for p in inputs]
    if list_file:
        lines = Path(list_file).read_text().splitlines()
        named += [Path(line.strip()) for line in lines if line.strip() and not line.startswith("#")]
    if not named:
        raise AssignError("no images given: name image files or folders, or pass --list FILE")
    paths: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for p in named:
        if p.is_dir():
            listing = walk_images(p, Listing())
            paths += listing.images
            skipped += listing.skipped
        elif p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            paths.append(p)
        elif p.is_file():
            skipped.append((str(p), f"not an image file (extension {p.suffix or 'none'!r})"))
        else:
            skipped.append((str(p), "no such file or folder"))
    return paths, skipped


def assign_files(head: TrainedHead, paths: list[Path], batch_size: int = 1024, workers: int | None = None,
                 chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Cluster and confidence of each file (-1 / nan where unreadable) and per file None or why it failed.

    Files are decoded in chunks by a thread pool while the previous chunk goes through
    the network, so decoding and inference overlap."""
    mode = "L" if head.channels == 1 else "RGB"
    n = len(paths)
    pred = np.full(n, -1, np.int64)
    conf = np.full(n, np.nan, np.float32)
    reasons: list[str | None] = [None] * n
    starts = list(range(0, n, chunk))
    workers = workers or default_workers()

    def decode(start: int):
        return load_images_tolerant(paths[start:start + chunk], head.image_size, mode, workers, desc="assign")

    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(decode, starts[0]) if starts else None
        for i, start in enumerate(starts):
            images, why = pending.result()
            if i + 1 < len(starts):
                pending = reader.submit(decode, starts[i + 1])
            ok = np.array([w is None for w in why], bool)
            if ok.any():
                prob = head_probabilities(head, images[ok], batch_size)
                idx = np.flatnonzero(ok) + start
                pred[idx], conf[idx] = prob.argmax(1), prob.max(1)
            reasons[start:start + len(why)] = why
    return pred, conf, reasons


def clusters_csv(paths: list, pred: np.ndarray, conf: np.ndarray, extra: dict[str, list] | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    extra = extra or {}
    w.writerow(["path", "cluster", "confidence", *extra])
    cols = list(extra.values())
    for i, (p, c, f) in enumerate(zip(paths, pred, conf)):
        w.writerow([str(p), int(c), f"{float(f):.4f}", *(col[i] for col in cols)])
    return buf.getvalue()
