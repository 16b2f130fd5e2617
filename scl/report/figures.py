"""Figures 3-6 of the paper and training curves, as PNG (matplotlib, Agg backend).

  fig3    ACC per dataset: MoCo, w/o cross-cluster ID, w/o online CD, SCL (bars, mean ± std)
  fig4    ACC per dataset: under-clustering, clustering, over-clustering only, SCL (all three)
  fig5    UMAP of the feature spaces at initialisation and after training, coloured by class
  fig6    per cluster, the 8 most and 8 least confident images, correct (green) or wrong (red)
  curves  loss terms and ACC per epoch for every seed of one dataset/variant
  confusion  classes x clusters of one run (clusters in Hungarian order): which classes merge

Each `figure_*` function takes the folders it reads, raises ReportError naming a missing
file and the command that makes it, and returns the PNG bytes; `save_png` writes them
atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from scl.report import ReportError
from scl import paths
from scl.experiments import FIGURES, PRODUCT_VARIANTS
from scl.report.collect import collect_runs, order_datasets, summarise

DPI = 150
# bar labels; which variants and in which order: scl.experiments.PRODUCT_VARIANTS
FIG3_LABELS = {"moco": "MoCo", "no_cross_cluster": "w/o cross-cluster ID", "no_online_cd": "w/o online CD",
               "scl": "SCL"}
FIG4_LABELS = {"under_only": "under-clustering", "target_only": "clustering", "instance_only": "over-clustering",
               "scl": "SCL (all three)"}
FIG3_VARIANTS = {v: FIG3_LABELS[v] for v in PRODUCT_VARIANTS["fig3"]}
FIG4_VARIANTS = {v: FIG4_LABELS[v] for v in PRODUCT_VARIANTS["fig4"]}
TASK_LABELS = {"feat_under": "under-clustering", "feat_target": "clustering (target)",
               "feat_instance": "over-clustering (instance)"}
UMAP_MAX_POINTS = 5000


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save_png(path, data: bytes) -> Path:
    from scl.io import atomic_write_bytes

    return atomic_write_bytes(path, data)


def _train_cmd(dataset: str, variant: str, seed="<k>") -> str:
    run = paths.run_dir(paths.runs_root("<set>"), dataset, variant, seed)
    return (f"`snakemake {run}/{paths.RUN_METRICS}` "
            f"or `scl train --dataset {dataset} --variant {variant} --seed {seed}`")


def _need(path: Path, command: str) -> Path:
    if not path.exists():
        raise ReportError(f"{path} does not exist; make it with {command}")
    return path


# ---------------------------------------------------------------------------- fig3 / fig4
def figure_bars(runs_dir, variants: dict[str, str], title: str, datasets=None, seeds=None) -> bytes:
    """Grouped bars of ACC (mean ± std over seeds) per dataset, one bar per variant."""
    runs = collect_runs(runs_dir, seeds)
    runs = runs[runs["variant"].isin(list(variants)) & runs["acc"].notna()] if len(runs) else runs
    if datasets:
        runs = runs[runs["dataset"].isin(list(datasets))]
    if not len(runs):
        where = f" for {', '.join(datasets)}" if datasets else ""
        raise ReportError(
            f"no finished run of variant(s) {', '.join(variants)}{where} under {runs_dir} "
            f"(expected {runs_dir}/<dataset>/<variant>/seed<k>/metrics.json); make them with "
            + _train_cmd("<dataset>", "<variant>")
        )
    summary = summarise(runs, by="variant")
    ds = [d for d in (list(dict.fromkeys(datasets)) if datasets else order_datasets(summary["dataset"]))
          if d in set(summary["dataset"])]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(ds) + 1.5), 3.4))
    width = 0.8 / len(variants)
    x = np.arange(len(ds))
    colors = plt.get_cmap("tab10").colors
    for i, (variant, label) in enumerate(variants.items()):
        means, stds = [], []
        for d in ds:
            hit = summary[(summary["dataset"] == d) & (summary["variant"] == variant)]
            means.append(hit["acc_mean"].iloc[0] if len(hit) else np.nan)
            stds.append(hit["acc_std"].iloc[0] if len(hit) and not np.isnan(hit["acc_std"].iloc[0]) else 0.0)
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, np.nan_to_num(means), width * 0.92, yerr=stds, capsize=2, label=label, color=colors[i % 10],
               error_kw={"elinewidth": 0.8})
        for p, m, e in zip(pos, means, stds):
            ax.text(p, (m + e if not np.isnan(m) else 0) + 0.01, "n/a" if np.isnan(m) else f"{m:.2f}", ha="center",
                    va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(x, ds)
    ax.set_ylabel("ACC")
    ax.set_ylim(0, 1.1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=min(4, len(variants)), loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def figure3(runs_dir, datasets=None, seeds=None) -> bytes:
    return figure_bars(runs_dir, FIG3_VARIANTS, "Figure 3: cross-cluster ID and online CD (ACC, mean ± std over seeds)",
                       datasets, seeds)


def figure4(runs_dir, datasets=None, seeds=None) -> bytes:
    return figure_bars(runs_dir, FIG4_VARIANTS, "Figure 4: single tasks against all three (ACC, mean ± std over seeds)",
                       datasets, seeds)


# ---------------------------------------------------------------------------- fig5
def _run_dir(runs_dir, dataset: str | None, variant: str, seed: int) -> Path:
    if not dataset:
        raise ReportError("this figure needs --dataset")
    return Path(runs_dir) / dataset / variant / f"seed{seed}"


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise ReportError(f"{path} is unreadable ({e}); delete the run folder and train it again") from e


def embed_umap(x: np.ndarray, seed: int = 0) -> np.ndarray:
    import warnings

    import umap

    x = x.astype(np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # features live on the sphere
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return umap.UMAP(n_neighbors=min(15, len(x) - 1), random_state=seed).fit_transform(x)


def figure5(runs_dir, dataset: str | None, seed: int = 0, variant: str = "scl", max_points: int = UMAP_MAX_POINTS) -> bytes:
    run = _run_dir(runs_dir, dataset, variant, seed)
    cmd = _train_cmd(dataset, variant, seed) + " (with save_features: true)"
    init = _load_npz(_need(run / "features_init.npz", cmd))
    final = _load_npz(_need(run / "features.npz", cmd))
    keys = [k for k in TASK_LABELS if k in init and k in final]
    if not keys:
        raise ReportError(f"{run}/features*.npz hold no task features ({', '.join(TASK_LABELS)}); "
                          f"retrain with {cmd}")
    labels = final.get("labels", init.get("labels"))
    n = len(final[keys[0]])
    if labels is None or len(labels) != n:
        labels = np.full(n, -1, np.int64)
    idx = np.arange(n)
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    y = labels[idx]
    plt = _plt()
    fig, axes = plt.subplots(2, len(keys), figsize=(3.3 * len(keys), 6.4), squeeze=False)
    cmap = plt.get_cmap("tab10" if y.max(initial=0) < 10 else "tab20" if y.max(initial=0) < 20 else "nipy_spectral")
    for col, key in enumerate(keys):
        for row, (feats, name) in enumerate(((init, "initialisation"), (final, "after training"))):
            emb = embed_umap(feats[key][idx], seed)
            ax = axes[row][col]
            if (y >= 0).all():
                ax.scatter(emb[:, 0], emb[:, 1], c=y, cmap=cmap, s=2, linewidths=0, vmin=0,
                           vmax=max(int(y.max()), 1) if cmap.name == "nipy_spectral" else cmap.N - 1)
            else:
                ax.scatter(emb[:, 0], emb[:, 1], c="0.4", s=2, linewidths=0)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{TASK_LABELS[key]}\n{name}", fontsize=9)
    classes = np.unique(y[y >= 0])
    if 0 < len(classes) <= 20:
        from matplotlib.lines import Line2D

        norm_max = max(int(y.max()), 1) if cmap.name == "nipy_spectral" else cmap.N - 1
        handles = [Line2D([], [], ls="", marker="o", ms=4, color=cmap(c / norm_max)) for c in classes]
        fig.legend(handles, [str(c) for c in classes], title="class", loc="center right", fontsize=7,
                   title_fontsize=7, frameon=False, bbox_to_anchor=(1.0, 0.5))
        fig.subplots_adjust(right=0.9)
    fig.suptitle(f"Figure 5: UMAP of {dataset} features ({variant}, seed {seed}, {len(idx):,} points, "
                 "coloured by ground truth)", fontsize=10)
    return _png(fig)


# ---------------------------------------------------------------------------- fig6
def _tile(img: np.ndarray) -> np.ndarray:
    """uint8 H x W x C -> float H x W (grey) or H x W x 3 in [0, 1]."""
    img = img.astype(np.float32) / 255.0
    return img[..., 0] if img.shape[-1] == 1 else img[..., :3]


def figure6(runs_dir, dataset: str | None, seed: int = 0, data=None, variant: str = "scl", per_side: int = 8,
            max_clusters: int = 20) -> bytes:
    from matplotlib.patches import Rectangle

    from scl.data.prepared import load_prepared
    from scl.metrics import evaluate

    run = _run_dir(runs_dir, dataset, variant, seed)
    a = _load_npz(_need(run / "assignments.npz", _train_cmd(dataset, variant, seed)))
    data_path = Path(data or paths.prepared(dataset))
    _need(data_path, f"`scl prepare {dataset} --out {data_path}`")
    prepared = load_prepared(data_path)
    images, class_names = prepared.images, prepared.class_names
    pred = a["pred"].astype(np.int64)
    conf = a["conf"].astype(np.float64)
    labels = a.get("labels", np.full(len(pred), -1)).astype(np.int64)
    if len(images) != len(pred):
        raise ReportError(f"{data_path} holds {len(images)} images but {run}/assignments.npz assigns {len(pred)}; "
                          "pass the --data file the run was trained on")
    if np.isnan(conf).all():
        raise ReportError(f"{run}/assignments.npz has no confidences (a model without a clustering head); "
                          "Figure 6 needs a run with the target task, e.g. variant scl")
    labelled = bool(len(labels)) and bool((labels >= 0).all())
    mapping = evaluate(labels, pred)["mapping"] if labelled else {}
    clusters = np.unique(pred)
    if len(clusters) > max_clusters:  # the largest ones
        sizes = np.bincount(pred)
        clusters = np.sort(clusters[np.argsort(-sizes[clusters], kind="stable")[:max_clusters]])
    h, w = images.shape[1:3]
    gap = max(1, w // 8)
    ncol = 2 * per_side + 1  # most | gap | least
    grey = images.shape[-1] == 1
    plt = _plt()
    fig, axes = plt.subplots(len(clusters), 1, figsize=(ncol * 0.55 + 1.6, len(clusters) * 0.6 + 0.8), squeeze=False)
    lw = 1.6
    for ax, c in zip(axes[:, 0], clusters):
        members = np.flatnonzero(pred == c)
        order = members[np.argsort(-np.nan_to_num(conf[members], nan=-np.inf), kind="stable")]
        top, bottom = order[:per_side], order[max(per_side, len(order) - per_side):]  # never the same image twice
        canvas = np.ones((h, ncol * (w + gap)) + (() if grey else (3,)), np.float32)
        if grey:
            canvas[:] = np.nan
        slots = [(i, j) for j, i in enumerate(top)] + [(i, per_side + 1 + j) for j, i in enumerate(bottom)]
        for i, slot in slots:
            x0 = slot * (w + gap)
            canvas[:, x0 : x0 + w] = _tile(images[i])
        cm = plt.get_cmap("gray").with_extremes(bad="white")
        ax.imshow(np.ma.masked_invalid(canvas) if grey else canvas, cmap=cm if grey else None, vmin=0, vmax=1,
                  interpolation="nearest")
        cls = mapping.get(int(c), -1)
        for i, slot in slots:
            x0 = slot * (w + gap)
            color = ("tab:green" if labels[i] == cls else "tab:red") if labelled else "0.5"
            ax.add_patch(Rectangle((x0 - 0.5, -0.5), w, h, fill=False, edgecolor=color, linewidth=lw))
        ax.set_xticks([]), ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
        name = f"cluster {c}"
        if labelled:
            cname = class_names[cls] if 0 <= cls < len(class_names) else str(cls)
            name += f" → {cname}" if cls >= 0 else " (unmatched)"
        ax.set_ylabel(f"{name}\nn={len(members)}", rotation=0, ha="right", va="center", fontsize=7)
    axes[0, 0].set_title(f"most confident {per_side}   |   least confident {per_side}", fontsize=8)
    fig.suptitle(f"Figure 6: {dataset} ({variant}, seed {seed}); green = correct, red = wrong under the Hungarian "
                 "cluster→class map", fontsize=9)
    return _png(fig)


# ---------------------------------------------------------------------------- curves
def _curve_keys(records: list[dict]) -> list[str]:
    keys = list(dict.fromkeys(k for r in records for k in r))
    losses = [k for k in keys if k == "loss"] + [k for k in keys if k.startswith(("mi_", "cd_"))]
    accs = [k for k in keys if k == "acc"] + [k for k in keys if k.startswith("acc_")]
    diags = [k for k in keys if k.startswith("diag_") and k != "diag_sample"]  # scl/epoch_diagnostics.py
    return losses + accs + diags


def _curve_marks(runs: dict[str, list[dict]]) -> tuple[int, list[int], str]:
    """What the curves mark beside the data: the last warm-up epoch (`cluster_warmup_epochs`, issue
    10: those epochs use no pseudo-label; their `acc` is that of the partition held, shaded so it
    does not read as the head's), the epochs after which a run relabelled (`relabel_epochs`: that
    epoch's `acc` is the new partition's, a dotted line) and the title's note on both."""
    recs = [r for rs in runs.values() for r in rs]
    warm = max((r.get("epoch", 0) for r in recs if r.get("warmup")), default=0)
    relabels = sorted({r["epoch"] for r in recs if r.get("relabel") and "epoch" in r})
    notes = ([f"grey: {warm} warm-up epoch{'s' * (warm != 1)}, instance discrimination only"] if warm else []) + (
        [f"dotted: relabels after epochs {', '.join(map(str, relabels))}"] if relabels else [])
    return warm, relabels, (f" ({'; '.join(notes)})" if notes else "")


def finished_logs(runs_dir, dataset: str, variant: str) -> list[Path]:
    """log.jsonl of the finished (and not failed) runs <runs_dir>/<dataset>/<variant>/seed<k>/, in seed order.

    A run still training, killed or failed has a log too; drawn beside finished ones its
    curve would pass for a result, so it is left out (with a warning, for a failed one)."""
    from scl.report.collect import scan_results

    done = [path.parent for d, v, _, path in scan_results(runs_dir) if (d, v) == (dataset, variant)]
    logs = [run / "log.jsonl" for run in done if (run / "log.jsonl").is_file()]
    return sorted(logs, key=lambda p: (len(p.parent.name), p.parent.name))


def figure_curves(runs_dir, dataset: str | None, variant: str = "scl") -> bytes:
    from scl.io import read_jsonl

    if not dataset:
        raise ReportError("curves needs --dataset")
    base = Path(runs_dir) / dataset / variant
    logs = finished_logs(runs_dir, dataset, variant)
    if not logs:
        raise ReportError(f"no finished run with a log in {base}/seed<k>/ (metrics.json and log.jsonl); "
                          f"make one with {_train_cmd(dataset, variant)}")
    runs = {p.parent.name: read_jsonl(p) for p in logs}
    keys = _curve_keys([r for recs in runs.values() for r in recs])
    if not keys:
        raise ReportError(f"{base}/seed*/log.jsonl hold no loss or ACC values (empty logs?); "
                          f"train at least one epoch with {_train_cmd(dataset, variant)}")
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    warm, relabels, note = _curve_marks(runs)
    ncols = min(4, len(keys))
    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.5 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        if warm:
            ax.axvspan(0.5, warm + 0.5, color="0.85", lw=0, zorder=0)
        for e in relabels:
            ax.axvline(e, color="0.4", ls=":", lw=0.8, zorder=0)
        for name, recs in runs.items():
            pts = [(r.get("epoch", i + 1), r[key]) for i, r in enumerate(recs) if r.get(key) is not None]
            if pts:
                ex, ey = zip(*pts)
                ax.plot(ex, ey, marker="." if len(pts) < 30 else None, lw=1, label=name)
        ax.set_title(key, fontsize=9)
        if key.startswith("diag_"):  # ACC-like readings: one scale, so the panels compare at a glance
            ax.set_ylim(0, 1.02)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Training curves: {dataset}/{variant}{note}", fontsize=10)
    fig.tight_layout()
    return _png(fig)


# ---------------------------------------------------------------------------- confusion
def confusion_matrix(labels: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, list[int], list[int], float]:
    """Counts classes x clusters, the cluster order of the columns (the cluster `evaluate`'s
    map gives each class first, in class order, then the unmatched clusters) and `evaluate`'s
    ACC. The ACC is not the trace of the counts: where a class has no cluster (more classes
    than non-empty clusters), the diagonal would pair it with an unmatched cluster."""
    from scl.metrics import contingency, evaluate

    scores = evaluate(labels, pred)
    classes = np.unique(labels).tolist()
    clusters = np.unique(pred).tolist()
    by_class = {cls: c for c, cls in scores["mapping"].items() if cls >= 0}  # class -> cluster
    order = [by_class[k] for k in classes if k in by_class]
    order += [c for c in clusters if c not in order]
    counts = contingency(labels, pred)[np.ix_(order, classes)].T  # clusters x classes -> classes x clusters
    return counts, classes, order, scores["acc"]


def figure_confusion(runs_dir, dataset: str | None, seed: int = 0, data=None, variant: str = "scl") -> bytes:
    run = _run_dir(runs_dir, dataset, variant, seed)
    a = _load_npz(_need(run / "assignments.npz", _train_cmd(dataset, variant, seed)))
    pred = a["pred"].astype(np.int64)
    labels = a.get("labels", np.full(len(pred), -1)).astype(np.int64)
    if not len(labels) or (labels < 0).any():
        raise ReportError(f"{run}/assignments.npz has no class labels (unlabelled data); a confusion matrix needs them")
    names = None
    data_path = Path(data or paths.prepared(dataset))
    if data_path.exists():
        from scl.data.prepared import load_prepared

        names = [str(n) for n in load_prepared(data_path).class_names]
    counts, classes, order, acc = confusion_matrix(labels, pred)
    frac = counts / np.maximum(counts.sum(1, keepdims=True), 1)  # row-normalised: where each class goes
    plt = _plt()
    n = max(len(classes), len(order))
    fig, ax = plt.subplots(figsize=(0.55 * len(order) + 2.5, 0.45 * len(classes) + 1.5))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(len(classes)):
            for j in range(len(order)):
                if counts[i, j]:
                    ax.text(j, i, f"{frac[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if frac[i, j] > 0.6 else "black")
        ax.set_yticks(range(len(classes)), [names[k] if names and k < len(names) else str(k) for k in classes],
                      fontsize=7)
        ax.set_xticks(range(len(order)), [str(c) for c in order], fontsize=7)
    ax.set_xlabel("cluster (in the order of the Hungarian class match)", fontsize=8)
    ax.set_ylabel("class", fontsize=8)
    ax.set_title(f"{dataset} ({variant}, seed {seed}): share of each class per cluster; ACC {acc:.3f}", fontsize=9)
    return _png(fig)


def make_figure(name: str, runs_dir, dataset=None, seed: int = 0, data=None, variant=None, datasets=None,
                max_points: int = UMAP_MAX_POINTS, seeds=None) -> bytes:
    if name == "fig3":
        return figure3(runs_dir, datasets or ([dataset] if dataset else None), seeds)
    if name == "fig4":
        return figure4(runs_dir, datasets or ([dataset] if dataset else None), seeds)
    if name == "fig5":
        return figure5(runs_dir, dataset, seed, variant or "scl", max_points)
    if name == "fig6":
        return figure6(runs_dir, dataset, seed, data, variant or "scl")
    if name == "curves":
        return figure_curves(runs_dir, dataset, variant or "scl")
    if name == "confusion":
        return figure_confusion(runs_dir, dataset, seed, data, variant or "scl")
    raise ReportError(f"unknown figure {name!r}; choose one of: {', '.join(FIGURES)}")
