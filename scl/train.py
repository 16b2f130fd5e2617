"""One SCL training run (Algorithm 1): epochs, end-of-epoch refresh, checkpoints, resume.

Run folder (see docs/ARCHITECTURE.md):
  checkpoint.pt      everything needed to resume, written atomically after every epoch
  log.jsonl          one JSON object per finished epoch (rewritten from the checkpoint)
  timing.json        wall-clock times per epoch (scl/timing.py), apart from the results
  metrics.json       final ACC/NMI/ARI (target task) + per-task figures; written last,
                     so its presence means the run is complete
  assignments.npz    final cluster assignments and confidences per task
  features_init.npz  features at initialisation (Figure 5)
  features.npz       features after training (Figure 5, K-means on features)

Determinism: every epoch draws its batch order and augmentations from a generator
seeded by (seed, epoch), so a resumed run replays exactly what an uninterrupted run
would have done; on the CPU the two give identical results.

Fast path (docs/ARCHITECTURE.md, "Fast path"): `amp` (bf16 / fp16 autocast of the
encoders; fp16 with a GradScaler), `channels_last` and `compile` are execution settings.
With all three off the loop is the plain float32 one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from scl import pseudo_labels as pl
from scl.augment import build_augment, build_eval_transform
from scl.config import RunSettings, run_identity
from scl.data.prepared import PreparedData
from scl.io import atomic_savez, atomic_torch_save, atomic_write_json, write_jsonl
from scl.metrics import evaluate
from scl.models.scl_model import SCLConfig, SCLModel
from scl.schedules import lr_schedule
from scl.timing import merge_timing, split_timing, write_timing

log = logging.getLogger("scl.train")

KMEANS_EVERY_EPOCH_MAX_N = 20_000  # per-epoch K-means scoring only where it is cheap


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint). Says why."""


class CheckpointMismatch(TrainingError):
    """The run folder's checkpoint belongs to another run identity (settings or code)."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available; use --set device=cpu")
    return torch.device(name)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the `amp` setting on `device` (None: off), or a clear error."""
    if amp in ("off", False, None):
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise TrainingError(f"amp=fp16 needs a CUDA device (it trains with a GradScaler); this run is on "
                                f"{device}: use amp=bf16 or amp=off")
        return torch.float16
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TrainingError(f"amp=bf16: {torch.cuda.get_device_name(device)} does not support bfloat16; "
                                "use amp=fp16 or amp=off")
        if device.type not in ("cuda", "cpu"):
            raise TrainingError(f"amp=bf16 is supported on cuda and cpu, not {device}; use amp=off")
        return torch.bfloat16
    raise TrainingError(f"unknown amp setting {amp!r}; use off, bf16 or fp16")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for `dtype`, or no context at all when it is None (the plain path)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def is_compile_error(e: BaseException) -> bool:
    """An error raised by torch.compile's machinery (dynamo / inductor), not by the model."""
    mod = type(e).__module__ or ""
    return mod.startswith(("torch._dynamo", "torch._inductor")) or "BackendCompilerFailed" in type(e).__name__


@contextlib.contextmanager
def explain_compile_errors(enabled: bool):
    """Turn a torch.compile failure into a TrainingError that names the setting."""
    try:
        yield
    except Exception as e:
        if enabled and is_compile_error(e):
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise TrainingError(f"torch.compile of the encoders failed ({type(e).__name__}: {first[:300]}); "
                                "set compile: false (--set compile=false)") from e
        raise


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


@torch.no_grad()
def infer_all(model: SCLModel, images: torch.Tensor, eval_tf, batch_size: int,
              amp: torch.dtype | None = None, channels_last: bool = False) -> dict[str, np.ndarray]:
    """Query-encoder outputs for every (un-augmented) image, in large no-grad batches
    (autocast to `amp` and channels_last batches as in training, when set)."""
    was_training = model.training
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        x = eval_tf(images[start : start + batch_size])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(x.device, amp):
            out = model.infer(x)
        for k, v in out.items():
            chunks.setdefault(k, []).append(v.float().cpu())
    model.train(was_training)
    return {k: torch.cat(v).numpy() for k, v in chunks.items()}


def _kmeans(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(features).astype(np.int64)


class Trainer:
    def __init__(self, settings: RunSettings, data: PreparedData, out_dir: str | Path, progress: bool = True):
        self.s, self.t = settings, settings.train
        self.out = Path(out_dir)
        self.progress = progress
        self.device = pick_device(self.t.device)
        if self.t.threads:
            torch.set_num_threads(self.t.threads)
        ds = settings.dataset
        if data.images.shape[1:] != (ds.image_size, ds.image_size, ds.channels):
            raise TrainingError(
                f"prepared images are {data.images.shape[1:]} (H, W, C) but params.yaml says {ds.name} is "
                f"{ds.image_size}x{ds.image_size}x{ds.channels}; fix datasets.{ds.name} or re-prepare the data"
            )
        self.n = len(data)
        if self.n < self.t.batch_size:
            raise TrainingError(f"{self.n} images but batch_size {self.t.batch_size}; lower batch_size")
        self.labels_true = data.labels if data.has_labels else None
        # the whole uint8 dataset lives on the training device; batches are drawn by index
        self.images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.augment = build_augment(self.t.augment, ds.image_size, ds.channels).to(self.device)
        self.eval_tf = build_eval_transform(self.t.augment, ds.image_size, ds.channels).to(self.device)

        torch.manual_seed(settings.seed)
        self.model = SCLModel(
            SCLConfig(
                backbone=self.t.backbone, backbone_width=self.t.cnn_width, in_channels=ds.channels, num_classes=ds.num_classes, tasks=self.t.tasks,
                feature_dim=self.t.feature_dim, memory_size=self.t.memory_size, memory_init=self.t.memory_init,
                temperature=self.t.temperature, ema_momentum=self.t.ema_momentum,
                cross_cluster=self.t.cross_cluster, online_cd=self.t.online_cd,
            ),
            generator=torch.Generator().manual_seed(settings.seed),
        ).to(self.device)
        self.amp = amp_dtype(self.t.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp == torch.float16 else None
        if self.t.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.t.compile:
            self.model.compile_encoders()
        head_ids = {id(p) for p in self.model.classifiers.parameters()}
        encoder = [p for p in self.model.parameters() if p.requires_grad and id(p) not in head_ids]
        groups = [{"params": encoder, "lr_mult": 1.0}]
        if head_ids:  # the classifiers f_phi may learn faster than the encoder (classifier_lr_mult)
            groups.append({"params": list(self.model.classifiers.parameters()), "lr_mult": self.t.classifier_lr_mult})
        self.opt = torch.optim.SGD(groups, lr=self.t.lr, momentum=self.t.sgd_momentum, weight_decay=self.t.weight_decay)
        self.steps_per_epoch = self.n // self.t.batch_size  # drop_last, as MoCo
        self.lrs = lr_schedule(self.t.lr, self.t.epochs, self.steps_per_epoch, self.t.lr_schedule, self.t.warmup_epochs)

        rng = np.random.default_rng(settings.seed)
        self.pseudo = {t: pl.random_partition(self.n, c, rng) for t, c in self.model.num_clusters.items()}
        self.class_weights = {t: np.ones(c, np.float32) for t, c in self.model.num_clusters.items()}
        self.change_counts = np.full(self.n, float(self.t.reweight_s0), np.float32)
        self.records: list[dict] = []
        self.epoch = 0  # epochs completed

    def _infer_all(self) -> dict[str, np.ndarray]:
        return infer_all(self.model, self.images, self.eval_tf, self.t.eval_batch_size, self.amp, self.t.channels_last)

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        atomic_torch_save(
            self.ckpt_path,
            {
                "epoch": self.epoch,
                "identity": run_identity(self.s),
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "pseudo": self.pseudo,
                "class_weights": self.class_weights,
                "change_counts": self.change_counts,
                "records": split_timing(self.records)[0],
                **({} if self.scaler is None else {"scaler": self.scaler.state_dict()}),
            },
        )
        write_jsonl(self.out / "log.jsonl", split_timing(self.records)[0])
        write_timing(self.out, self.records)

    def try_resume(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        try:
            ck = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        except Exception as e:
            raise TrainingError(
                f"checkpoint {self.ckpt_path} is unreadable ({e}); delete it to start this run afresh"
            ) from e
        if ck.get("identity") != run_identity(self.s):  # scl.config: settings + code digest
            raise CheckpointMismatch(
                f"{self.ckpt_path} was written with other settings or code than this run's; "
                "use another --out folder, or --restart to discard it"
            )
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.pseudo, self.class_weights = ck["pseudo"], ck["class_weights"]
        self.change_counts, self.epoch = ck["change_counts"], ck["epoch"]
        self.records = merge_timing(self.out, ck["records"])
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        write_jsonl(self.out / "log.jsonl", split_timing(self.records)[0])  # drop lines of any unfinished epoch
        log.info("resuming %s from epoch %d/%d", self.out, self.epoch, self.t.epochs)
        return True

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self, bar) -> dict:
        t, dev = self.t, self.device
        gen = epoch_generator(self.s.seed, self.epoch)
        perm = torch.randperm(self.n, generator=gen)
        pseudo = {k: torch.from_numpy(v).to(dev) for k, v in self.pseudo.items()}
        weights = {k: torch.from_numpy(v).to(dev) for k, v in self.class_weights.items()} if t.balance_loss else None
        counts = torch.from_numpy(self.change_counts).to(dev) if t.reweight else None
        sums: dict[str, float] = {}
        self.model.train()
        start = time.perf_counter()
        for step in range(self.steps_per_epoch):
            idx = perm[step * t.batch_size : (step + 1) * t.batch_size].to(dev)
            batch = self.images[idx]  # B x C x H x W uint8
            x_q, x_k = self.augment(batch, gen), self.augment(batch, gen)
            if t.channels_last:
                x_q = x_q.contiguous(memory_format=torch.channels_last)
                x_k = x_k.contiguous(memory_format=torch.channels_last)
            labels = {k: v[idx] for k, v in pseudo.items()}
            lr = float(self.lrs[self.epoch * self.steps_per_epoch + step])
            for g in self.opt.param_groups:
                g["lr"] = lr * g["lr_mult"]
            with autocast(dev, self.amp):
                loss, terms, keys = self.model.training_step(
                    x_q, x_k, labels, None if counts is None else counts[idx], weights)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss at epoch {self.epoch + 1}, step {step + 1}: "
                    + ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                    + f"; lower lr (now {t.lr}) or raise temperature (now {t.temperature})"
                )
            self.opt.zero_grad(set_to_none=True)
            if self.scaler is None:
                loss.backward()
                self.opt.step()
            else:  # fp16: scaled loss; steps with inf/nan gradients are skipped
                self.scaler.scale(loss).backward()
                self.scaler.step(self.opt)
                self.scaler.update()
            self.model.momentum_update()
            self.model.enqueue(keys, labels)
            sums["loss"] = sums.get("loss", 0.0) + loss.item()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=self.epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
        elapsed = time.perf_counter() - start
        rec = {k: v / self.steps_per_epoch for k, v in sums.items()}
        rec["lr"] = lr
        rec["samples_per_s"] = self.steps_per_epoch * t.batch_size / elapsed
        return rec

    def _end_of_epoch(self, rec: dict) -> dict[str, np.ndarray]:
        """Eq. 5 refresh, ODC guards, eq. 6 counts; scores the target task if labels exist."""
        t = self.t
        outs = self._infer_all()
        evaluate_now = self.labels_true is not None and t.eval_every and (
            (self.epoch + 1) % t.eval_every == 0 or self.epoch + 1 == t.epochs
        )
        for task, c in self.model.num_clusters.items():
            raw, _ = pl.refresh(outs[f"prob_{task}"])
            new, reseeded = raw, 0
            if t.split_small:
                min_size = pl.min_cluster_size(self.n, c, t.min_cluster_ratio)
                new, reseeded = pl.split_small_clusters(raw, outs[f"prob_{task}"], outs[f"feat_{task}"], min_size, self.s.seed + self.epoch)
            old = self.pseudo[task]
            rec[f"changed_{task}"] = int((old != new).sum())
            rec[f"reseeded_{task}"] = reseeded
            rec[f"sizes_{task}"] = np.bincount(raw, minlength=c).tolist()
            if task == self.reweight_task:
                self.change_counts = pl.update_change_counts(self.change_counts, old, new)
            self.pseudo[task] = new
            self.class_weights[task] = pl.balanced_class_weights(new, c)
            if t.refill_memory:
                # our addition (not in the paper): make the memory agree with the refreshed
                # labels at once, so a cluster re-seeded by the ODC guard holds from the next step
                feats = torch.from_numpy(outs[f"feat_{task}"])
                self.model.memories[task].refill(feats, torch.from_numpy(new), epoch_generator(self.s.seed, self.epoch))
            if evaluate_now:
                m = evaluate(self.labels_true, raw)
                suffix = "" if task == "target" else f"_{task}"
                rec.update({f"acc{suffix}": m["acc"], f"nmi{suffix}": m["nmi"], f"ari{suffix}": m["ari"]})
        if evaluate_now and "target" not in self.model.num_clusters and self.n <= KMEANS_EVERY_EPOCH_MAX_N:
            m = evaluate(self.labels_true, _kmeans(outs["backbone"], self.s.dataset.num_classes, self.s.seed))
            rec.update({"acc": m["acc"], "nmi": m["nmi"], "ari": m["ari"]})
        return outs

    @property
    def reweight_task(self) -> str | None:
        """Eq. 6 counts label changes of the target task (of 'under' where it is alone)."""
        return next((k for k in ("target", "under") if k in self.model.num_clusters), None)

    # ------------------------------------------------------------------ the run
    def run(self, stop_after_epoch: int | None = None) -> dict | None:
        """Train to the end (or to `stop_after_epoch`, for tests). Returns final metrics."""
        with explain_compile_errors(self.t.compile):
            return self._run(stop_after_epoch)

    def _run(self, stop_after_epoch: int | None) -> dict | None:
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.try_resume() and self.t.save_features:
            init = self._infer_all()
            atomic_savez(self.out / "features_init.npz", **_features(init), labels=self._labels_or_empty())
        started = time.perf_counter()
        total = self.t.epochs * self.steps_per_epoch
        bar = None
        if self.progress:
            bar = tqdm(total=total, initial=self.epoch * self.steps_per_epoch, unit="step", desc=f"{self.s.dataset.name}/{self.s.variant}/seed{self.s.seed}",
                       dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
        outs = None
        try:
            while self.epoch < self.t.epochs:
                if stop_after_epoch is not None and self.epoch >= stop_after_epoch:
                    return None
                t0 = time.perf_counter()
                rec = self._train_epoch(bar)
                outs = self._end_of_epoch(rec)
                self.epoch += 1
                rec = {"epoch": self.epoch, **rec, "epoch_time_s": time.perf_counter() - t0}
                self.records.append(rec)
                self.save_checkpoint()
                if bar is not None and "acc" in rec:
                    bar.set_postfix(epoch=self.epoch, loss=f"{rec['loss']:.3f}", acc=f"{rec['acc']:.3f}",
                                    img_s=f"{rec['samples_per_s']:.0f}")
                log.info("epoch %d: %s", self.epoch, {k: v for k, v in rec.items() if not k.startswith("sizes")})
        finally:
            if bar is not None:
                bar.close()
        if outs is None:  # resumed a run whose every epoch was done, but not its outputs
            outs = self._infer_all()
        return self._finish(outs, time.perf_counter() - started)

    def _labels_or_empty(self) -> np.ndarray:
        return self.labels_true if self.labels_true is not None else np.full(self.n, -1, np.int64)

    def _finish(self, outs: dict[str, np.ndarray], wall: float) -> dict:
        """Final assignments, features and metrics.json (written last = run complete)."""
        assign = {}
        for task in self.model.num_clusters:
            pred, conf = pl.refresh(outs[f"prob_{task}"])
            assign[f"pred_{task}"], assign[f"conf_{task}"] = pred, conf
            assign[f"prob_{task}"] = outs[f"prob_{task}"].astype(np.float16)
        if "target" in self.model.num_clusters:
            pred, how = assign["pred_target"], "classifier" if self.t.online_cd else "memory"
            conf = assign["conf_target"]
        else:  # no C-way head: K-means on backbone features (spec section 10, Figure 4)
            pred, how = _kmeans(outs["backbone"], self.s.dataset.num_classes, self.s.seed), "kmeans"
            conf = np.full(self.n, np.nan, np.float32)
        atomic_savez(self.out / "assignments.npz", pred=pred, conf=conf, labels=self._labels_or_empty(), **assign)
        if self.t.save_features:
            atomic_savez(self.out / "features.npz", **_features(outs), labels=self._labels_or_empty())
        metrics = {
            "dataset": self.s.dataset.name, "variant": self.s.variant, "seed": self.s.seed,
            "epochs": self.t.epochs, "n": self.n, "assignment": how,
            "cluster_sizes": np.bincount(pred, minlength=self.s.dataset.num_classes).tolist(),
        }
        if self.labels_true is not None:
            m = evaluate(self.labels_true, pred)
            metrics.update(acc=m["acc"], nmi=m["nmi"], ari=m["ari"], mapping={str(k): v for k, v in m["mapping"].items()})
            tasks = {}
            for task in self.model.num_clusters:
                # the target task's assignment is `pred` itself: reuse its scores
                mt = m if task == "target" else evaluate(self.labels_true, assign[f"pred_{task}"])
                tasks[task] = {k: mt[k] for k in ("acc", "nmi", "ari")}
            if self.model.num_clusters:
                metrics["tasks"] = tasks
        write_timing(self.out, self.records)
        atomic_write_json(self.out / "metrics.json", metrics)
        return metrics


def _features(outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float16) for k, v in outs.items() if k == "backbone" or k.startswith("feat_")}


def train(settings: RunSettings, data: PreparedData, out_dir, progress: bool = True, restart: bool = False,
          stop_after_epoch: int | None = None) -> dict | None:
    out = Path(out_dir)
    if restart:
        for name in ("checkpoint.pt", "metrics.json", "log.jsonl"):
            (out / name).unlink(missing_ok=True)
    return Trainer(settings, data, out, progress=progress).run(stop_after_epoch=stop_after_epoch)
