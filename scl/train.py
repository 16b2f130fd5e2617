"""One SCL training run (Algorithm 1): epochs, end-of-epoch refresh, checkpoints, resume.

Run folder (see docs/ARCHITECTURE.md):
  checkpoint.pt      everything needed to resume, written atomically every `checkpoint_every`
                     epochs (default 1) and after the last
  log.jsonl          one JSON object per finished epoch (rewritten from the checkpoint)
  timing.json        wall-clock times per epoch (scl/timing.py), apart from the results, and
                     the execution choice of each process (amp / channels_last and why)
  metrics.json       final ACC/NMI/ARI (target task) + per-task figures; written last,
                     so its presence means the run is complete
  assignments.npz    final cluster assignments and confidences per task
  features_init.npz  features at initialisation (Figure 5)
  features.npz       features after training (Figure 5, K-means on features)

Parts: each step is `scl.step.train_step`; the end-of-epoch update of pseudo-labels, class
weights and eq. 6 counts is `scl.cluster_state.update_clusters`; device / AMP / compile
helpers are in `scl.device`. This module runs epochs, scores them, and keeps the run folder.

Determinism: every epoch draws its batch order and augmentations from a generator
seeded by (seed, epoch), so a resumed run replays exactly what an uninterrupted run
would have done; on the CPU the two give identical results.

Fast path (docs/ARCHITECTURE.md, "Fast path"): `amp` (bf16 / fp16 autocast of the
encoders; fp16 with a GradScaler; `auto`: bf16 where the device runs it natively),
`channels_last` (`auto`: where the convolutions prefer it), `compile` and
`checkpoint_every` are execution settings. With amp, channels_last and compile off the
loop is the plain float32 one. A training step reads nothing back from the device
(tests/test_hostsync_step.py): the loss terms are summed on the device (scl/tally.py).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from scl import checkpoint as ckpt
from scl import pseudo_labels as pl
from scl.augment import build_augment, build_eval_transform
from scl.cluster_state import ClusterState, start_from_kmeans, update_clusters
from scl.config import RunSettings, run_identity
from scl.data.prepared import PreparedData
from scl.device import (autocast, execution_choice, explain_compile_errors, grad_scaler, pick_device, resolve_amp,
                        resolve_channels_last, to_channels_last)
from scl.epoch_diagnostics import epoch_diagnostics
from scl.errors import CheckpointError, CheckpointMismatch, RunFailed, TrainingError  # noqa: F401 (re-exported)
from scl.health import failure_message, run_problems
from scl.io import atomic_savez, atomic_write_json, write_jsonl
from scl.metrics import evaluate
from scl.models.scl_model import SCLModel
from scl.schedules import lr_schedule
from scl.step import build_model, build_optimizer, epoch_generator, epoch_seed, set_lr, train_step
from scl.tally import EpochTally, NonFiniteLoss
from scl.timing import merge_timing, split_timing, write_timing

log = logging.getLogger("scl.train")

KMEANS_EVERY_EPOCH_MAX_N = 20_000  # per-epoch K-means scoring only where it is cheap
FINITE_CHECK_EVERY = 50  # steps between reads of the device-side non-finite flag (and at epoch end)
AUGMENT_CHUNK_BYTES = 64 << 20  # augmentation parameters drawn and moved at once (bytes, about)
PROGRESS_EVERY_S = 1.0  # the progress bar reads the running loss at most this often


@torch.no_grad()
def infer_all(model: SCLModel, images: torch.Tensor, eval_tf, batch_size: int,
              amp: torch.dtype | None = None, channels_last: bool = False) -> dict[str, np.ndarray]:
    """Query-encoder outputs for every (un-augmented) image, in large no-grad batches
    (autocast to `amp` and channels_last batches as in training, when set). The outputs
    stay on the device until all are done, so the host waits once, not once per batch."""
    was_training = model.training
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        x = eval_tf(images[start : start + batch_size])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(x.device, amp):
            out = model.infer(x)
        for k, v in out.items():  # kept on the device: one copy per output at the end
            chunks.setdefault(k, []).append(v.float())
    model.train(was_training)
    return {k: torch.cat(v).cpu().numpy() for k, v in chunks.items()}


def _kmeans(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(features).astype(np.int64)


class Trainer:
    def __init__(self, settings: RunSettings, data: PreparedData, out_dir: str | Path, progress: bool = True,
                 estimate: bool = False):
        self.s, self.t = settings, settings.train
        self.out = Path(out_dir)
        self.progress = progress
        self.estimate = estimate  # time a few steps first and print how long the run will take (scl/estimate.py)
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
        self.eval_tf = build_eval_transform(self.t.augment, ds.image_size, ds.channels, self.t.eval_crop).to(self.device)

        self.model = build_model(settings).to(self.device)
        self.amp, amp_why = resolve_amp(self.t.amp, self.device)
        self.channels_last, cl_why = resolve_channels_last(self.t.channels_last, self.device, self.amp)
        # what amp / channels_last this process chose and why: in timing.json (machine-dependent,
        # like the times) beside the first epoch this process trains, and in the log
        self.execution = execution_choice(self.device, self.amp, amp_why, self.channels_last, cl_why)
        log.info("execution: %s", self.execution)
        self.scaler = grad_scaler(self.device, self.amp)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.t.compile:
            self.model.compile_encoders()
        self.opt = build_optimizer(self.model, self.t)
        self.steps_per_epoch = self.n // self.t.batch_size  # drop_last, as MoCo
        # augmentation parameters of this many steps are drawn and moved to the device at once
        self.augment_chunk = max(1, AUGMENT_CHUNK_BYTES // (2 * self.augment.param_bytes(self.t.batch_size)))
        self.lrs = lr_schedule(self.t.lr, self.t.epochs, self.steps_per_epoch, self.t.lr_schedule, self.t.warmup_epochs)

        self.state = ClusterState.initial(self.n, self.model.num_clusters, self.t.reweight_s0, settings.seed)
        self.records: list[dict] = []
        self.epoch = 0  # epochs completed

    def _infer_all(self) -> dict[str, np.ndarray]:
        return infer_all(self.model, self.images, self.eval_tf, self.t.eval_batch_size, self.amp, self.channels_last)

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        ckpt.save_checkpoint(  # tensors and plain values + a digest beside (scl/checkpoint.py)
            self.ckpt_path,
            {
                "epoch": self.epoch,
                "identity": run_identity(self.s),
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "pseudo": self.state.pseudo,
                "class_weights": self.state.class_weights,
                "change_counts": self.state.change_counts,
                "records": split_timing(self.records)[0],
                **({} if self.scaler is None else {"scaler": self.scaler.state_dict()}),
            },
        )
        self._write_log()

    def _write_log(self) -> None:
        """log.jsonl (the epoch records without wall-clock fields) and timing.json (those fields)."""
        write_jsonl(self.out / "log.jsonl", split_timing(self.records)[0])
        write_timing(self.out, self.records)

    def try_resume(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        ck = ckpt.load_checkpoint(self.ckpt_path, map_location=self.device)  # digest checked, no code run
        if ck.get("identity") != run_identity(self.s):  # scl.config: settings + code digest
            raise CheckpointMismatch(
                f"{self.ckpt_path} was written with other settings or code than this run's; "
                "use another --out folder, or --restart to discard it"
            )
        try:
            self.model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["optimizer"])
            self.state = ClusterState(ck["pseudo"], ck["class_weights"], ck["change_counts"])
            self.epoch = ck["epoch"]
            records = ck["records"]
            if self.scaler is not None and ck.get("scaler"):
                self.scaler.load_state_dict(ck["scaler"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise CheckpointError(
                f"checkpoint {self.ckpt_path} does not fit this model ({type(e).__name__}: {first}); it was written "
                "by another version or structure. Fix: --restart to discard it, or use another --out folder") from e
        self.records = merge_timing(self.out, records)
        write_jsonl(self.out / "log.jsonl", split_timing(self.records)[0])  # drop lines of any unfinished epoch
        log.info("resuming %s from epoch %d/%d", self.out, self.epoch, self.t.epochs)
        return True

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self, bar) -> dict:
        """One epoch. No step reads anything back from the device (`_train_step`): the batch
        order and the clustering state move to the device once per epoch, augmentation
        parameters once per chunk of steps; the loss terms are summed on the device
        (scl/tally.py), their finiteness read every FINITE_CHECK_EVERY steps and at the end,
        the running loss for the progress bar at most once every PROGRESS_EVERY_S."""
        gen, inputs = self._epoch_inputs()
        tally = EpochTally(["loss", *self.model.term_names()], self.device)
        views: list = []  # the (x_q, x_k) augmentation parameters of the steps drawn ahead, last first
        self.model.train()
        start = last_shown = time.perf_counter()
        for step in range(self.steps_per_epoch):
            if not views:
                views = self._draw_views(gen, step)
            self._train_step(step, views.pop(), inputs, tally)
            if (step + 1) % FINITE_CHECK_EVERY == 0:
                self._check_finite(tally)
            if bar is not None:
                bar.update(1)
                if time.perf_counter() - last_shown >= PROGRESS_EVERY_S:
                    bar.set_postfix(epoch=self.epoch + 1, loss=f"{tally.mean_loss():.3f}", refresh=False)
                    last_shown = time.perf_counter()
        self._check_finite(tally)
        rec = tally.means()  # waits for the device: the epoch's time is taken after it
        elapsed = time.perf_counter() - start
        rec["lr"] = float(self.lrs[(self.epoch + 1) * self.steps_per_epoch - 1])
        rec["samples_per_s"] = self.steps_per_epoch * self.t.batch_size / elapsed
        return rec

    def _epoch_inputs(self) -> tuple[torch.Generator, dict]:
        """The epoch's generator (seeded by seed and epoch) and what its steps read, moved to
        the device once: the batch order, pseudo-labels, class weights, change counts."""
        t, dev = self.t, self.device
        gen = epoch_generator(self.s.seed, self.epoch)
        return gen, {
            "perm": torch.randperm(self.n, generator=gen).to(dev),
            "pseudo": {k: torch.from_numpy(v).to(dev) for k, v in self.state.pseudo.items()},
            "weights": ({k: torch.from_numpy(v).to(dev) for k, v in self.state.class_weights.items()}
                        if t.balance_loss else None),
            "counts": torch.from_numpy(self.state.change_counts).to(dev) if t.reweight else None,
            "clustering": self._clustering(self.epoch),
        }

    def _clustering(self, epoch: int) -> bool:
        """Whether (0-based) epoch `epoch` trains the clustered tasks on pseudo-labels: every
        epoch in Algorithm 1; not the first `cluster_warmup_epochs` (ours, issue 10), which
        train every task as instance discrimination (SCLModel.training_step)."""
        return epoch >= self.t.cluster_warmup_epochs

    def _draw_views(self, gen: torch.Generator, step: int) -> list:
        """Augmentation parameters of the next chunk of steps, in one copy to the device: the
        same draws, in the same order, as drawing view by view at every step (last first)."""
        n = min(self.augment_chunk, self.steps_per_epoch - step)
        return self.augment.draw(n, self.t.batch_size, gen, self.device)[::-1]

    def _train_step(self, step: int, views, inputs: dict, tally: EpochTally) -> None:
        """Step `step` of the epoch: the batch, its two augmented views, `train_step`, the
        loss terms into the tally. Nothing is read back from the device."""
        b = self.t.batch_size
        idx = inputs["perm"][step * b : (step + 1) * b]  # B, on the device
        batch = self.images[idx]  # B x C x H x W uint8
        x_q, x_k = (to_channels_last(self.augment.apply_device(batch, v), self.channels_last) for v in views)
        labels = {k: v[idx] for k, v in inputs["pseudo"].items()}
        counts = None if inputs["counts"] is None else inputs["counts"][idx]
        set_lr(self.opt, float(self.lrs[self.epoch * self.steps_per_epoch + step]))  # host array: no read
        loss, terms = train_step(self.model, self.opt, x_q, x_k, labels, counts, inputs["weights"], self.amp,
                                 self.scaler, inputs["clustering"])
        tally.add(torch.stack([loss, *terms.values()]))

    def _check_finite(self, tally: EpochTally) -> None:
        """A non-finite loss stops the run with the step and terms where it first happened."""
        t = self.t
        try:
            tally.check()
        except NonFiniteLoss as e:
            raise TrainingError(
                f"non-finite loss at epoch {self.epoch + 1}, step {e.step + 1}: "
                + ", ".join(f"{k}={v:.4g}" for k, v in e.terms.items())
                + f"; lower lr (now {t.lr}) or raise temperature (now {t.temperature})"
            ) from None

    def _end_of_epoch(self, rec: dict) -> dict[str, np.ndarray]:
        """The clustering update (scl/cluster_state.py); scores the target task if labels exist,
        and with `diagnostics` adds the `diag_*` readings (scl/epoch_diagnostics.py) to the record."""
        t = self.t
        outs = self._infer_all()
        evaluate_now = self.labels_true is not None and t.eval_every and (
            (self.epoch + 1) % t.eval_every == 0 or self.epoch + 1 == t.epochs
        )
        if evaluate_now and t.diagnostics:  # before update_clusters: eq. 3 reads the memory before its refill
            rec.update(epoch_diagnostics(outs, self.labels_true, self.s.dataset.num_classes, seed=self.s.seed,
                                         sample_size=t.diagnostics_sample, memory_assign=self._memory_assign()))
        if self._clustering(self.epoch):  # eq. 5 refresh, guards, eq. 6 counts, class weights
            relabel = self.epoch + 1 in t.relabel_epochs and bool(self.model.num_clusters)  # ours (issue 10)
            self.state, update, raw = update_clusters(
                self.state, outs, self.model.num_clusters, split_small=t.split_small,
                min_cluster_ratio=t.min_cluster_ratio, split_seed=self.s.seed + self.epoch,
                # a relabel rebuilds the memories from its own partition, with the same seed, just below
                refill_seed=epoch_seed(self.s.seed, self.epoch) if t.refill_memory and not relabel else None,
                memories=self.model.memories)
            if relabel:
                update.update(self._restart_clusters(outs, raw))
                raw = dict(self.state.pseudo)  # scored below: the partition the next epoch trains on
        else:  # a warm-up epoch: no pseudo-label was used, none is refreshed
            update = {"warmup": True}
            if self._clustering(self.epoch + 1):  # the last warm-up epoch: clustering starts after it
                update.update(self._start_clusters(outs))
            raw = dict(self.state.pseudo)  # scored below: the partition the next epoch trains on
        rec.update(update)
        if evaluate_now:
            for task, labels in raw.items():
                m = evaluate(self.labels_true, labels)
                suffix = "" if task == "target" else f"_{task}"
                rec.update({f"acc{suffix}": m["acc"], f"nmi{suffix}": m["nmi"], f"ari{suffix}": m["ari"]})
            if "target" not in self.model.num_clusters and self.n <= KMEANS_EVERY_EPOCH_MAX_N:
                m = evaluate(self.labels_true, _kmeans(outs["backbone"], self.s.dataset.num_classes, self.s.seed))
                rec.update({"acc": m["acc"], "nmi": m["nmi"], "ari": m["ari"]})
        return outs

    def _start_clusters(self, outs: dict[str, np.ndarray]) -> dict:
        """Where clustering starts (`init_labels`): the random partition (spec section 6)
        stays as it is; `kmeans` (ours, issue 10) replaces it by K-means on each task's
        features, `umap_kmeans` by K-means on a UMAP embedding of them (scl/cluster_state.py
        `start_from_kmeans`). Returns a log record."""
        if self.t.init_labels == "random" or not self.model.num_clusters:
            return {}
        # the refill's seed is the last warm-up epoch's (W - 1); for W = 0 it is "epoch -1",
        # so it differs from epoch 0's own refill after the first refresh
        rec = self._partition_from_features(outs, refill_epoch=self.t.cluster_warmup_epochs - 1,
                                            kmeans_seed=self.s.seed)
        return {"init_labels": self.t.init_labels, **rec}

    def _restart_clusters(self, outs: dict[str, np.ndarray], eq5: dict[str, np.ndarray]) -> dict:
        """`relabel_epochs` (ours, issue 10): after the epoch's own refresh, every clustered task
        starts again from `init_labels` on this epoch's features, as at the end of the warm-up:
        new labels, class weights, eq. 6 counts back at s^0 and (with `refill_memory`) memories
        rebuilt. Why: on Fashion-MNIST, K-means on a UMAP embedding of the final target-task
        features scored above the head in every seed (results/tuning/fashion/ablations-umap-spr):
        the trained features hold a better partition than the one the head has kept.
        The new clusters take the indices of the head's classes they overlap most (`eq5`: per
        task, the eq. 5 labels they replace), so the classifier keeps pointing at nearly the same
        clusters: without it, a relabel before the last epoch (lr near 0) left the head unable to
        learn the permutation in time (Fashion seed 0: 0.749 after the relabel, 0.513 an epoch
        later). K-means gets a seed of its own per epoch. The replaced labels' score is logged as
        `relabel_from_acc` (labelled data). Returns a log record."""
        rec = self._partition_from_features(outs, refill_epoch=self.epoch, kmeans_seed=self.s.seed + self.epoch + 1,
                                            align_to=eq5)
        rec = {"relabel": self.t.init_labels, **rec}
        if "target" in eq5 and self.labels_true is not None:
            rec["relabel_from_acc"] = evaluate(self.labels_true, eq5["target"])["acc"]
        return rec

    def _partition_from_features(self, outs: dict[str, np.ndarray], *, refill_epoch: int, kmeans_seed: int,
                                 align_to: dict[str, np.ndarray] | None = None) -> dict:
        """What `_start_clusters` and `_restart_clusters` share: every clustered task's labels from
        `init_labels` on its features (`start_from_kmeans`, with `kmeans_seed`), the memories
        (with `refill_memory`) rebuilt with epoch `refill_epoch`'s refill seed. Returns the log record."""
        refill_seed = epoch_seed(self.s.seed, refill_epoch) if self.t.refill_memory else None
        self.state, rec = start_from_kmeans(
            self.state, outs, self.model.num_clusters, self.t.reweight_s0, kmeans_seed,
            refill_seed=refill_seed, memories=self.model.memories, method=self.t.init_labels, align_to=align_to)
        return rec

    def _memory_assign(self, task: str = "target"):
        """Eq. 3's argmax over the task's memory as it is now (features n x d -> n labels),
        in chunks of eval_batch_size; None where the run has no such memory."""
        if task not in self.model.num_clusters:
            return None

        @torch.no_grad()
        def assign(feats: np.ndarray) -> np.ndarray:
            out = []
            for start in range(0, len(feats), self.t.eval_batch_size):
                q = torch.from_numpy(np.ascontiguousarray(feats[start : start + self.t.eval_batch_size])).to(self.device)
                out.append(self.model.memory_probabilities(task, q).argmax(1).cpu())
            return torch.cat(out).numpy().astype(np.int64)

        return assign

    # ------------------------------------------------------------------ the run
    def run(self, stop_after_epoch: int | None = None) -> dict | None:
        """Train to the end (or to `stop_after_epoch`, for tests). Returns final metrics."""
        with explain_compile_errors(self.t.compile):
            return self._run(stop_after_epoch)

    def _run(self, stop_after_epoch: int | None) -> dict | None:
        self.out.mkdir(parents=True, exist_ok=True)
        execution = self.execution  # recorded beside the first epoch this process trains
        if not self.try_resume():
            init = None
            if self.t.save_features:
                init = self._infer_all()
                atomic_savez(self.out / "features_init.npz", **_features(init), labels=self._labels_or_empty())
            if self.t.cluster_warmup_epochs == 0 and self.t.init_labels != "random":
                # no warm-up: K-means on the initial features before the first epoch (kept in
                # the first checkpoint's state, so a resume never redoes it)
                self._start_clusters(init if init is not None else self._infer_all())
        if self.estimate and self.epoch < self.t.epochs:
            from scl.estimate import describe, estimate_run

            est = estimate_run(self)
            print(f"scl train: {self.out}: {describe(est)}", file=sys.stderr, flush=True)
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
                if execution is not None:
                    rec["execution"], execution = execution, None
                self.records.append(rec)
                if self.epoch % self.t.checkpoint_every == 0 or self.epoch == self.t.epochs:
                    self.save_checkpoint()
                else:  # the log goes on every epoch; a resume rewrites it from the checkpoint
                    self._write_log()
                if bar is not None and "acc" in rec:
                    bar.set_postfix(epoch=self.epoch, loss=f"{rec['loss']:.3f}", acc=f"{rec['acc']:.3f}",
                                    img_s=f"{rec['samples_per_s']:.0f}")
                log.info("epoch %d: %s", self.epoch, {k: v for k, v in rec.items() if not k.startswith("sizes")})
        finally:
            if bar is not None:
                bar.close()
        if outs is None or not self.t.online_cd:
            # Score the state the last checkpoint holds, so that a run resumed after its last
            # checkpoint scores what the uninterrupted run does. Without online CD the labels
            # come from the memory (eq. 3), which the end-of-epoch refill has changed since
            # `outs` was computed; with classifiers, `outs` already equals a fresh pass.
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
        problems = run_problems(pred, self.s.dataset.num_classes, self.labels_true,
                                {k: metrics[k] for k in ("acc", "nmi", "ari") if k in metrics},
                                {k: v for k, v in outs.items() if k.startswith(("prob_", "feat_")) or k == "backbone"})
        if problems:  # scl/health.py: kept for a look, marked failed, never averaged in; train() raises
            metrics.update(status="failed", failure=problems)
        atomic_write_json(self.out / "metrics.json", metrics)
        return metrics


def _features(outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float16) for k, v in outs.items() if k == "backbone" or k.startswith("feat_")}


def train(settings: RunSettings, data: PreparedData, out_dir, progress: bool = True, restart: bool = False,
          stop_after_epoch: int | None = None, estimate: bool = False) -> dict | None:
    from scl.preflight import check_run_inputs
    from scl.run_lock import remove_stray_temporaries, run_lock

    check_run_inputs(settings, data)  # settings vs data and device, before any work
    out = Path(out_dir)
    with run_lock(out):  # one `scl train` per folder; the lock dies with its process
        remove_stray_temporaries(out)
        if restart:
            ckpt.remove_checkpoint(out / "checkpoint.pt")
            for name in ("metrics.json", "log.jsonl"):
                (out / name).unlink(missing_ok=True)
        trainer = Trainer(settings, data, out, progress=progress, estimate=estimate)
        metrics = trainer.run(stop_after_epoch=stop_after_epoch)
    if metrics is not None and metrics.get("status") == "failed":
        raise RunFailed(failure_message(metrics["failure"], settings.train.lr))
    return metrics
