"""Where a run's clustering falls short: its own assignment against two readings of the same features.

For every finished run (dataset, variant, seed) that kept `features.npz`:

  head     ACC/NMI/ARI of the run's assignment (its metrics.json: the C-way head, or K-means
           on the backbone for variants without one)
  kmeans   K-means (C clusters, n_init 10) on the L2-normalised backbone features
  knn      leave-one-out k-NN accuracy (k = 20, cosine, majority vote) on the same features:
           a *supervised* probe of how much class information the representation holds. A
           clustering of these features can rarely beat it, so head << knn means the
           clustering objective loses what the encoder learnt; knn low means the encoder
           never learnt it.
  recall   per class, the share of its images in the cluster the Hungarian map gives it
  epochs   where the run's log.jsonl holds them, the per-epoch `diag_*` readings of
           scl/epoch_diagnostics.py (head, K-means on target and backbone features, eq. 3's
           memory argmax, head/K-means agreement): when the head went wrong, and whether the
           features held a better partition earlier

`diagnose(...)` returns the rows, `diagnose_pixels` the same readings of raw pixels (the
reference an encoder should beat); `render_markdown` the table `scl diagnose` writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scl.report import ReportError

KNN_K = 20


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = KNN_K, chunk: int = 2048) -> float:
    """Leave-one-out k-NN accuracy with cosine similarity and a plain majority vote
    (ties go to the smallest label). features: N x D, labels: N ints in [0, C)."""
    import torch

    x = torch.nn.functional.normalize(torch.as_tensor(np.asarray(features, np.float32)), dim=1)  # N x D
    y = torch.as_tensor(np.asarray(labels, np.int64))
    n, c = len(y), int(y.max()) + 1
    k = min(k, n - 1)
    correct = 0
    for start in range(0, n, chunk):
        sim = x[start : start + chunk] @ x.T  # b x N
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + start] = -float("inf")  # leave the image itself out
        nn_idx = sim.topk(k, dim=1).indices  # b x k
        votes = torch.zeros(sim.shape[0], c).scatter_add_(1, y[nn_idx], torch.ones(nn_idx.shape))  # b x C
        correct += int((votes.argmax(1) == y[start : start + chunk]).sum())
    return correct / n


def class_recall(labels: np.ndarray, pred: np.ndarray) -> dict[int, float]:
    """Per class: the share of its images in the cluster matched to it (0 when unmatched)."""
    from scl.metrics import hungarian_map

    mapping = hungarian_map(labels, pred)  # cluster -> class
    cluster_of = {cls: c for c, cls in mapping.items()}
    out = {}
    for cls in np.unique(labels).tolist():
        members = labels == cls
        out[int(cls)] = float((pred[members] == cluster_of[cls]).mean()) if cls in cluster_of else 0.0
    return out


def _readings(x: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    """K-means (C = number of classes, n_init 10) and the k-NN probe, on L2-normalised rows of x."""
    from sklearn.cluster import KMeans

    from scl.metrics import evaluate

    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    km = evaluate(labels, KMeans(n_clusters=int(labels.max()) + 1, n_init=10, random_state=seed).fit_predict(x))
    return {"kmeans": {k: float(km[k]) for k in ("acc", "nmi", "ari")}, "knn": knn_accuracy(x, labels)}


def diagnose_run(run_dir: Path, seed: int = 0) -> dict:
    metrics_path, feats_path, assign_path = (run_dir / n for n in ("metrics.json", "features.npz", "assignments.npz"))
    for p in (metrics_path, feats_path, assign_path):
        if not p.exists():
            raise ReportError(f"{p} does not exist; finish the run (and keep save_features: true) first")
    metrics = json.loads(metrics_path.read_text())
    f = np.load(feats_path)
    labels = f["labels"].astype(np.int64)
    if not len(labels) or (labels < 0).any():
        raise ReportError(f"{feats_path} has no class labels; the diagnosis needs a labelled dataset")
    pred = np.load(assign_path)["pred"].astype(np.int64)
    return {
        "head": {k: float(metrics[k]) for k in ("acc", "nmi", "ari")},
        **_readings(f["backbone"].astype(np.float32), labels, seed),
        "recall": class_recall(labels, pred),
        "epochs": epoch_trajectory(run_dir / "log.jsonl"),
    }


DIAG_COLUMNS = {  # log.jsonl key -> column of the per-epoch table
    "diag_head_acc": "head",
    "diag_kmeans_target_acc": "K-means target feat.",
    "diag_kmeans_backbone_acc": "K-means backbone",
    "diag_memory_acc": "eq. 3 memory",
    "diag_head_kmeans_agreement": "head/K-means agree",
}


def epoch_trajectory(log_path: Path) -> list[dict]:
    """Per epoch that has them, the epoch number and its `diag_*` readings (empty without)."""
    from scl.io import read_jsonl

    if not log_path.is_file():
        return []
    return [{"epoch": r.get("epoch", i + 1), **{k: v for k, v in r.items() if k.startswith("diag_")}}
            for i, r in enumerate(read_jsonl(log_path)) if any(k.startswith("diag_") for k in r)]


def diagnose_pixels(images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """The same two readings of raw pixels (flattened, scaled to [0, 1]): the reference an
    encoder should beat."""
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return _readings(x, np.asarray(labels, np.int64), seed)


def diagnose(runs_dir, dataset: str, variants=("scl",), seeds=None) -> list[dict]:
    from scl.report.collect import scan_results

    found = [(v, seed, path) for d, v, seed, path in scan_results(runs_dir, seeds)
             if d == dataset and v in variants]
    found.sort(key=lambda t: (list(variants).index(t[0]), t[1]))
    rows = [{"dataset": dataset, "variant": v, "seed": seed, **diagnose_run(path.parent, seed=seed)}
            for v, seed, path in found]
    if not rows:
        raise ReportError(f"no finished runs of {', '.join(variants)} under {Path(runs_dir) / dataset}; "
                          f"train them first (snakemake or scl train --dataset {dataset})")
    return rows


def render_markdown(rows: list[dict], class_names=None, pixels: dict | None = None) -> str:
    def name(cls):
        return class_names[cls] if class_names is not None and cls < len(class_names) else str(cls)

    lines = [f"# Diagnosis: {rows[0]['dataset']}", "",
             "| run | head ACC | head NMI | K-means on backbone ACC | NMI | k-NN (k=20) accuracy |",
             "|---|---:|---:|---:|---:|---:|"]
    if pixels:
        lines.append(f"| raw pixels (no training) | | | {pixels['kmeans']['acc']:.3f} | {pixels['kmeans']['nmi']:.3f} | "
                     f"{pixels['knn']:.3f} |")
    for r in rows:
        lines.append(f"| {r['variant']} seed {r['seed']} | {r['head']['acc']:.3f} | {r['head']['nmi']:.3f} | "
                     f"{r['kmeans']['acc']:.3f} | {r['kmeans']['nmi']:.3f} | {r['knn']:.3f} |")
    classes = sorted({c for r in rows for c in r["recall"]})
    lines += ["", "Per-class recall of each run's assignment (share of a class in the cluster matched to it):", "",
              "| class | " + " | ".join(f"{r['variant']} s{r['seed']}" for r in rows) + " |",
              "|---|" + "---:|" * len(rows)]
    for cls in classes:
        lines.append(f"| {name(cls)} | " + " | ".join(f"{r['recall'].get(cls, 0.0):.2f}" for r in rows) + " |")
    for r in rows:
        if r.get("epochs"):
            lines += _trajectory_table(r)
    lines += ["", "- head: the run's own assignment (metrics.json); K-means: n_init 10 on L2-normalised backbone "
              "features; k-NN: leave-one-out, cosine, majority of 20, a supervised probe of the same features.",
              "- Written by `scl diagnose` (scl/report/diagnose.py)."]
    return "\n".join(lines) + "\n"


def _trajectory_table(row: dict) -> list[str]:
    """Markdown lines: the per-epoch diagnostics of one run (columns only where some epoch has them)."""
    epochs = row["epochs"]
    cols = [k for k in DIAG_COLUMNS if any(k in e for e in epochs)]
    n = max((e.get("diag_sample", 0) for e in epochs), default=0)
    lines = ["", f"Per-epoch diagnostics, {row['variant']} seed {row['seed']} (ACC on a sample of {n} images; "
             "scl/epoch_diagnostics.py):", "",
             "| epoch | " + " | ".join(DIAG_COLUMNS[k] for k in cols) + " |", "|---:|" + "---:|" * len(cols)]
    for e in epochs:
        lines.append(f"| {e['epoch']} | " + " | ".join(f"{e[k]:.3f}" if k in e else "" for k in cols) + " |")
    return lines
