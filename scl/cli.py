"""`scl <command>`: the package's command line, which the Snakemake rules call. Every
command is here: its options (`_add_<name>_parser`) and its handler (`run_<name>`, which
turns the package's errors into exit codes), paired in `COMMANDS`. A new command is one
entry there and its two functions. Handlers import the heavy modules (torch, pandas,
matplotlib) themselves, so building the parser stays fast.

  scl prepare DATASET           download, verify and prepare a dataset into one .npz
  scl train --dataset D         one SCL run (variant, seed, overrides), resumable
  scl baseline METHOD --dataset D   K-means / SC / AC / NMF on raw pixels
  scl table {table1,table2,table3}  reproduced numbers beside the paper's (md, csv, tex)
  scl figure {fig3,fig4,fig5,fig6,curves,confusion}   figures as PNG
  scl diagnose --dataset D      head vs K-means vs k-NN probe on the features, per-class recall
  scl bench                     throughput: SCL vs MoCo step, batched vs PIL augmentation
  scl assign --run R IMAGES...  new images into a trained run's clusters (no retraining)
  scl clusters --run R --data D clusters.csv, contact sheets, export of a run on an image folder
Exit codes (scl/errors.py; `run_command` below is the one handler around every command):
0 done, 1 unexpected error (the traceback goes to a file the message names), 2 bad input
(settings, data, paths, permissions, a run folder in use), 3 the run failed (diverged or
collapsed, a corrupt or incompatible checkpoint, disk full), 130 interrupted (rerun the
same command to resume).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, NamedTuple

from scl import paths
from scl.baselines import METHODS
from scl.config import ConfigError, load_params, parse_overrides, resolve, settings_from_json, with_data
from scl.data import DATASET_NAMES
from scl.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_RUN_FAILED, EXIT_UNEXPECTED
from scl.experiments import FIGURES, TABLES

# datasets that need no download, so `scl train` may prepare them on first use
LOCAL_DATASETS = ("digits", "fashion")


# ---------------------------------------------------------------------------- scl train
def _add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train one SCL model (resumes an interrupted run)")
    p.add_argument("--dataset", help="a dataset named in params.yaml (required unless --settings)")
    p.add_argument("--variant", default="scl", help="a variant named in params.yaml (default: scl)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params", default="params.yaml", help="settings file (default: params.yaml)")
    p.add_argument("--settings", metavar="JSON", help="the run's resolved settings as JSON (what the workflow "
                   "passes: scl.config.settings_to_json); replaces --dataset/--variant/--seed/--params/--set")
    p.add_argument("--data", help=f"prepared .npz (default: {paths.prepared('<dataset>')})")
    p.add_argument("--out", help="run folder (default: "
                   f"{paths.run_dir(paths.runs_root(), '<dataset>', '<variant>', '<seed>')})")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a training setting, e.g. --set epochs=5")
    p.add_argument("--restart", action="store_true", help="discard an existing checkpoint and start afresh")
    p.add_argument("--restart-if-changed", action="store_true", help="discard a checkpoint of other settings or "
                   "code (scl.config.run_identity) instead of stopping; resume one of the same")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--no-estimate", action="store_true", help="skip the few timed steps that estimate the run's time")


def run_train(args) -> int:
    try:
        if args.settings:
            settings = settings_from_json(args.settings)
        elif args.dataset:
            params = load_params(args.params)
            settings = resolve(params, args.dataset, args.variant, args.seed, parse_overrides(args.set))
        else:
            raise ConfigError("give --dataset (settings from params.yaml) or --settings JSON")
    except ConfigError as e:
        print(f"scl train: {e}", file=sys.stderr)
        return 2
    dataset, variant, seed = settings.dataset.name, settings.variant, settings.seed
    out = Path(args.out or paths.run_dir(paths.runs_root(), dataset, variant, seed))
    from scl.health import read_run_status

    status, done, note = read_run_status(out) if not args.restart else ("absent", None, "")
    if status == "complete":
        print(f"scl train: {out} is already complete (metrics.json exists); pass --restart to train again", file=sys.stderr)
        print(json.dumps(done, indent=2))
        return 0
    if status == "failed":
        print(f"scl train: {out} ended as a failed run earlier ({note}); pass --restart to train again", file=sys.stderr)
        return 3
    if status == "unreadable":  # not written by scl (it writes atomically): the run is not finished
        print(f"scl train: {note}; treating the run as unfinished", file=sys.stderr)
    data_path = Path(args.data or paths.prepared(dataset))
    from scl.data.prepared import load_prepared
    from scl.timing import last_execution
    from scl.train import CheckpointMismatch, TrainingError, train

    try:
        if not data_path.exists() and args.data is None and dataset in LOCAL_DATASETS:
            from scl.data.registry import prepare

            prepare(dataset, data_path)
        data = load_prepared(data_path)
        settings = with_data(settings, data.class_names, data.images.shape[1:])  # null num_classes / image_size
    except (FileNotFoundError, ValueError) as e:  # ConfigError is a ValueError
        print(f"scl train: {e}", file=sys.stderr)
        return 2
    try:
        try:
            metrics = train(settings, data, out, progress=not args.no_progress, restart=args.restart,
                            estimate=not args.no_estimate)
        except CheckpointMismatch as e:
            if not args.restart_if_changed:
                raise
            print(f"scl train: {e}: starting afresh (--restart-if-changed)", file=sys.stderr)
            metrics = train(settings, data, out, progress=not args.no_progress, restart=True,
                            estimate=not args.no_estimate)
    except TrainingError as e:
        print(f"scl train: {e}", file=sys.stderr)
        return 3
    summary = {k: metrics[k] for k in ("acc", "nmi", "ari") if k in metrics}
    timing = json.loads((out / paths.TIMING).read_text())
    # what amp / channels_last this process chose and why (auto settings; machine-dependent)
    execution = last_execution(out)
    print(json.dumps({"out": str(out), **summary, "train_time_s": round(timing["train_time_s"], 1),
                      **({"execution": execution} if execution else {})}))
    return 0


# ---------------------------------------------------------------------------- scl prepare
def _add_prepare_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="download, verify and prepare a dataset into one .npz",
        description="Fetch a dataset (or read it from --root), verify checksums, and write the compact "
                    ".npz every other command reads. Downloads and extracted archives are kept in --raw-dir.",
    )
    p.add_argument("name", choices=DATASET_NAMES, help="dataset")
    p.add_argument("--out", type=Path, default=None, help=f"output .npz (default: {paths.prepared('<name>')})")
    p.add_argument("--raw-dir", type=Path, default=Path("data/raw"), help="downloads and extracted archives "
                   "(default: data/raw)")
    p.add_argument("--root", type=Path, default=None,
                   help="imagenet10 / imagenet-dogs: the ImageNet train folder (<root>/<wnid>/*.JPEG); "
                        "folder: your image folder; tiny-imagenet: an extracted tiny-imagenet-200 folder")
    p.add_argument("--image-size", type=int, default=None,
                   help="output side for imagenet10, imagenet-dogs, tiny-imagenet, folder "
                        "(default: 96, 96, 64; folder: the images' median shorter side, at most 64)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="folder: 3 = RGB (default), 1 = grayscale")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.add_argument("--workers", type=int, default=None, help="image decoding threads (default: min(8, CPUs))")


def run_prepare(args: argparse.Namespace) -> int:
    from scl.data.errors import DataError
    from scl.data.prepared import load_meta
    from scl.data.registry import prepare

    out = args.out if args.out is not None else Path(paths.prepared(args.name))
    options = {} if getattr(args, "channels", None) is None else {"channels": args.channels}
    try:
        path = prepare(args.name, out, raw_dir=args.raw_dir, download=not args.no_download, root=args.root,
                       image_size=args.image_size, workers=args.workers, **options)
    except DataError as e:
        print(f"scl prepare {args.name}: error: {e}", file=sys.stderr)
        return 2
    meta = load_meta(path)
    shape = "x".join(str(s) for s in meta.get("image_shape", []))
    print(f"prepared {args.name}: {meta.get('num_images')} images of {shape}, "
          f"{meta.get('num_classes')} classes -> {path}")
    source = meta.get("source") or {}
    if "image_size_from" in source and source["image_size_from"] != "given":
        print(f"image size {source['image_size']}: {source['image_size_from']} (set --image-size to choose)")
    if "skipped_report" in meta:
        n = source.get("skipped", 0)
        print(f"{n} file{'s' if n != 1 else ''} skipped (not images, unreadable, or empty folders)"
              + (f", listed in {path.parent / meta['skipped_report']}" if n else ""))
    return 0


# ---------------------------------------------------------------------------- scl baseline
def _add_baseline_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "baseline", help="a classical clustering baseline on raw pixels (K-means, SC, AC, NMF)",
        description="Cluster a prepared dataset's raw pixels (flattened, scaled to [0, 1]) into num_classes "
                    "clusters and score the result (ACC, NMI, ARI) into metrics.json. spectral and "
                    "agglomerative run on a seeded subsample (--max-samples, default 10,000).",
    )
    p.add_argument("method", help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--dataset", required=True, help="a dataset named in params.yaml")
    p.add_argument("--data", help=f"prepared .npz (default: {paths.prepared('<dataset>')})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params", default="params.yaml", help="settings file (default: params.yaml)")
    p.add_argument("--out", help="metrics file (default: "
                   f"{paths.baseline_metrics('<dataset>', '<method>', '<seed>')})")
    p.add_argument("--max-samples", type=int, default=None,
                   help="cluster a seeded random subsample of this many images (default: 10,000 for spectral "
                        "and agglomerative, all images for kmeans and nmf; 0 = all)")


def run_baseline(args) -> int:
    from scl.baselines import DEFAULT_MAX_SAMPLES, BaselineError, run_baseline_on
    from scl.io import atomic_write_json

    prog = "scl baseline"
    try:
        if args.method not in METHODS:
            raise BaselineError(f"unknown method {args.method!r}; choose one of: {', '.join(METHODS)}")
        params = load_params(args.params)
        if args.dataset not in params["datasets"]:
            raise BaselineError(f"unknown dataset {args.dataset!r}; params.yaml defines: {', '.join(params['datasets'])}")
        if args.seed < 0:
            raise BaselineError(f"seed must be non-negative, got {args.seed}")
        k = params["datasets"][args.dataset]["num_classes"]  # null: the prepared data's class count
        data_path = Path(args.data or paths.prepared(args.dataset))
        if not data_path.exists():
            raise BaselineError(f"prepared dataset {data_path} does not exist; create it with "
                                f"`scl prepare {args.dataset} --out {data_path}`")
        from scl.data.prepared import load_prepared

        data = load_prepared(data_path)
        if k is None:
            if len(data.class_names) < 2:
                raise BaselineError(f"datasets.{args.dataset}.num_classes is null and {data_path} has no classes "
                                    f"to count; set datasets.{args.dataset}.num_classes in params.yaml")
            k = len(data.class_names)
        k = int(k)
        max_samples = DEFAULT_MAX_SAMPLES[args.method] if args.max_samples is None else (args.max_samples or None)
        record = run_baseline_on(args.method, data.images, data.labels, k, args.seed, max_samples, args.dataset,
                                 log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except (BaselineError, ConfigError, FileNotFoundError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or paths.baseline_metrics(args.dataset, args.method, args.seed))
    record["data"] = str(data_path)
    # the wall-clock time goes beside, not into the result (scl.paths.TIMING)
    atomic_write_json(out.parent / paths.TIMING, {"time_s": record["time_s"]})
    atomic_write_json(out, {k: v for k, v in record.items() if k != "time_s"})
    print(f"{prog} {args.method} on {args.dataset}: ACC {record['acc']:.3f} NMI {record['nmi']:.3f} "
          f"ARI {record['ari']:.3f} in {record['time_s']:.1f}s -> {out}", file=sys.stderr)
    print(json.dumps({k: record[k] for k in ("method", "dataset", "seed", "n", "subsample", "acc", "nmi", "ari")}))
    return 0


# ---------------------------------------------------------------------------- scl table / figure / diagnose
def _add_runs_option(p) -> None:
    """--runs, the run tree that table, figure and diagnose read."""
    p.add_argument("--runs", default=paths.runs_root(), help=f"a run tree (default: {paths.runs_root()}, "
                   "where `scl train` puts runs; the workflow's are results/runs/<set>)")


def _add_table_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "table", help="Table 1, 2 or 3: reproduced numbers beside the paper's (md, csv, tex)",
        description="Collect finished runs and baselines, average them over seeds and write the table beside "
                    "the paper's reported numbers as <out>.md, <out>.csv and <out>.tex.",
    )
    p.add_argument("name", choices=TABLES)
    _add_runs_option(p)
    p.add_argument("--baselines", default=paths.BASELINES_DIR, help=f"baseline results (default: {paths.BASELINES_DIR})")
    p.add_argument("--out", help="output path without suffix (default: results/tables/<name>)")
    p.add_argument("--datasets", nargs="+", metavar="D",
                   help="columns, in this order (default: the paper's datasets and every dataset with results)")
    p.add_argument("--extra-reported", action="append", default=[], metavar="CSV",
                   help="more published numbers (columns method,dataset,nmi,acc,ari,source) for datasets the "
                        "paper lacks; scl/reference/fashion_reported.csv is added to Table 1 by itself "
                        "whenever fashion is a column")
    p.add_argument("--seeds", nargs="+", type=int, metavar="S",
                   help="only runs and baselines of these seeds (default: every seed found)")
    p.add_argument("--quiet", action="store_true", help="do not print the markdown")


def run_table(args) -> int:
    from scl.report import ReportError
    from scl.report.tables import build_table, render_markdown, write_table

    try:
        table = build_table(args.name, args.runs, args.baselines, datasets=args.datasets,
                            extra_reported=args.extra_reported, seeds=args.seeds)
    except ReportError as e:
        print(f"scl table {args.name}: error: {e}", file=sys.stderr)
        return 2
    if not table.datasets:
        print(f"scl table {args.name}: error: no dataset has a reproduced or reported number"
              + (f" (asked for {', '.join(args.datasets)})" if args.datasets else ""), file=sys.stderr)
        return 2
    if table.dropped:
        print(f"scl table {args.name}: left out {', '.join(table.dropped)} (no reproduced or reported number)",
              file=sys.stderr)
    written = write_table(table, Path(args.out or f"results/tables/{args.name}"))
    if not args.quiet:
        print(render_markdown(table))
    print(f"scl table {args.name}: wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def _add_figure_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "figure", help="Figure 3, 4, 5, 6 or training curves (PNG)",
        description="fig3/fig4: ACC bars per dataset over the ablation variants; fig5: UMAP of one run's features "
                    "(init / trained); fig6: most and least confident images per cluster; curves: log.jsonl of "
                    "every seed of one dataset/variant; confusion: classes x clusters of one run.",
    )
    p.add_argument("name", choices=FIGURES)
    _add_runs_option(p)
    p.add_argument("--out", help="PNG to write (default: results/figures/<name>.png)")
    p.add_argument("--dataset", help="fig5, fig6, curves: the dataset (fig3/fig4: only this one)")
    p.add_argument("--datasets", nargs="+", metavar="D", help="fig3, fig4: these datasets, in this order "
                   "(default: every dataset with runs of the variants)")
    p.add_argument("--seed", type=int, default=0, help="fig5, fig6: the run's seed (default: 0)")
    p.add_argument("--variant", help="fig5, fig6, curves: the run's variant (default: scl)")
    p.add_argument("--data", help="fig6: the prepared .npz of the run (default: data/prepared/<dataset>.npz)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="S",
                   help="fig3, fig4: only runs of these seeds (default: every seed found)")
    p.add_argument("--max-points", type=int, default=5000, help="fig5: UMAP at most this many points (default: 5000)")


def run_figure(args) -> int:
    from scl.report import ReportError
    from scl.report.figures import make_figure, save_png

    if args.name in ("fig5", "fig6", "curves", "confusion") and not args.dataset:
        print(f"scl figure {args.name}: error: --dataset is required", file=sys.stderr)
        return 2
    out = Path(args.out or f"results/figures/{args.name}.png")
    what = f"{args.name}" + (f" for {args.dataset}" if args.dataset else "")
    print(f"scl figure: drawing {what} from {args.runs} ...", file=sys.stderr, flush=True)
    try:
        png = make_figure(args.name, args.runs, dataset=args.dataset, seed=args.seed, data=args.data,
                          variant=args.variant, datasets=args.datasets, max_points=args.max_points,
                          seeds=args.seeds)
    except ReportError as e:
        print(f"scl figure {args.name}: error: {e}", file=sys.stderr)
        return 2
    save_png(out, png)
    print(f"scl figure {args.name}: wrote {out}", file=sys.stderr)
    return 0


def _add_diagnose_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "diagnose", help="what limits a dataset's clustering: head vs K-means vs a k-NN probe, per-class recall",
        description="For each finished run: its own ACC/NMI/ARI, K-means on its backbone features, the "
                    "leave-one-out k-NN accuracy of those features (a supervised probe) and per-class recall.",
    )
    p.add_argument("--dataset", required=True)
    _add_runs_option(p)
    p.add_argument("--variants", nargs="+", default=["scl"], metavar="V", help="default: scl")
    p.add_argument("--seeds", nargs="+", type=int, metavar="S", help="default: every finished seed")
    p.add_argument("--data", help="prepared .npz: class names and the raw-pixel reference row "
                   "(default: data/prepared/<dataset>.npz)")
    p.add_argument("--no-pixels", action="store_true", help="leave out the raw-pixel reference row")
    p.add_argument("--out", help="output path without suffix (default: results/tables/diagnosis_<dataset>)")


def run_diagnose(args) -> int:
    import json

    from scl.io import atomic_write_text
    from scl.report import ReportError
    from scl.report.diagnose import diagnose, diagnose_pixels, render_markdown

    try:
        rows = diagnose(args.runs, args.dataset, args.variants, args.seeds)
    except ReportError as e:
        print(f"scl diagnose: error: {e}", file=sys.stderr)
        return 2
    names, pixels = None, None
    data = Path(args.data or paths.prepared(args.dataset))
    if data.exists():
        from scl.data.prepared import load_prepared

        prepared = load_prepared(data)
        names = [str(n) for n in prepared.class_names]
        if not args.no_pixels and prepared.has_labels:
            pixels = diagnose_pixels(prepared.images, prepared.labels)
    elif args.data:
        print(f"scl diagnose: error: {data} does not exist", file=sys.stderr)
        return 2
    stem = Path(args.out or f"results/tables/diagnosis_{args.dataset}")
    text = render_markdown(rows, names, pixels)
    atomic_write_text(stem.with_name(stem.name + ".md"), text)
    atomic_write_text(stem.with_name(stem.name + ".json"),
                      json.dumps({"runs": rows, "raw_pixels": pixels}, indent=2) + "\n")
    print(text)
    print(f"scl diagnose: wrote {stem}.md, {stem}.json", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- scl bench
def _add_bench_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="throughput: SCL vs plain MoCo v2 training step, batched vs PIL augmentation (JSON)",
        description="Samples/s (wall and CPU time) of the whole SCL training step as training runs it "
                    "(augmentation and per-step tail included), a plain MoCo v2 step, the batched "
                    "augmentation and a per-image PIL DataLoader, in one run; writes a JSON with the machine, "
                    "the settings, medians over rounds and the ratios (see scl/bench.py).",
    )
    p.add_argument("--backbone", default="resnet18", choices=("resnet18", "resnet34", "small_cnn"))
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=None, help="default: the training batch size of --dataset")
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--recipe", default="mocov2", help="augmentation recipe (mocov2 | grayscale | digits)")
    p.add_argument("--num-classes", type=int, default=10, help="C: clusters of the target task (default 10)")
    p.add_argument("--memory-size", type=int, default=4096, help="K, as params.yaml (default 4096)")
    p.add_argument("--steps", type=int, default=10, help="timed iterations per round (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations before timing (default 3)")
    p.add_argument("--repeats", type=int, default=5, help="rounds; figures are medians over them (default 5)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"),
                   help="autocast of the encoders (default auto: bf16 where the device runs it natively)")
    p.add_argument("--channels-last", nargs="?", const=True, default="auto", type=_auto_or_bool,
                   help="auto | true | false: model and batches in channels_last (default auto; bare flag: true)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoders")
    p.add_argument("--num-workers", type=int, default=os.cpu_count() or 2,
                   help=f"DataLoader workers of the PIL path (default: os.cpu_count() = {os.cpu_count()})")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--params", default="params.yaml", help="settings file (default: params.yaml)")
    p.add_argument("--dataset", default="cifar10", help="the dataset whose resolved training settings (optimiser, "
                   "temperature, momentum, ...) the steps use; the options above override them (default: cifar10)")
    p.add_argument("--out", help="JSON file (default: results/bench/bench-<device>-<backbone>-<size>-<batch>"
                                 "[-flags].json, flags: amp, cl, compile, t<threads>)")


def _auto_or_bool(text: str):
    """`auto`, or a yes/no word (true/false, on/off, 1/0)."""
    low = str(text).lower()
    if low == "auto":
        return "auto"
    if low in ("true", "on", "yes", "1"):
        return True
    if low in ("false", "off", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected auto, true or false, got {text!r}")


def run_bench(args) -> int:
    from scl.bench import bench
    from scl.errors import TrainingError

    try:
        result = bench(args)
    except TrainingError as e:
        print(f"scl bench: {e}", file=sys.stderr)
        return 3
    except ValueError as e:  # a ConfigError (bad --params / --dataset) included
        print(f"scl bench: {e}", file=sys.stderr)
        return 2
    r, q = result["results"], result["ratios"]
    print(f"scl bench: {result['machine']['device']} {args.backbone} {args.image_size}px batch {args.batch_size} "
          f"{result['settings']['execution']} compile={args.compile}", file=sys.stderr)
    for k, v in r.items():
        print(f"  {k:16s} {v['samples_per_s']:10.1f} samples/s  {v['ms_per_step']:8.2f} ms/step wall  "
              f"{v['cpu_ms_per_step']:8.2f} ms/step CPU", file=sys.stderr)
    print(f"  SCL / MoCo v2 step time {q['scl_over_moco_v2_step_time']:.3f} wall, "
          f"{q['scl_over_moco_v2_step_cpu_time']:.3f} CPU   "
          f"batched / PIL throughput {q['batched_over_pil_throughput']:.2f}", file=sys.stderr)
    print(result["out"])
    return 0


# ---------------------------------------------------------------------------- dispatch
# ---------------------------------------------------------------------------- scl assign
def _add_assign_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "assign", help="assign new images to the clusters of a trained run (no retraining)",
        description="Assign image files (or every image under given folders) to a trained run's clusters, with "
                    "the run's preprocessing. Writes a CSV of path, cluster, confidence; unreadable files are "
                    "listed in <out>.skipped.csv.")
    p.add_argument("inputs", nargs="*", help="image files and/or folders (walked recursively)")
    # dest run_dir: `run` holds the command's handler (build_parser)
    p.add_argument("--run", dest="run_dir", metavar="RUN", required=True, help="run folder of `scl train` (holds checkpoint.pt)")
    p.add_argument("--list", dest="list_file", help="a text file of image paths, one a line")
    p.add_argument("--out", required=True, help="CSV to write (path, cluster, confidence)")
    p.add_argument("--export", type=Path, help="also export the images into one folder per cluster here")
    p.add_argument("--export-mode", choices=("link", "copy"), default="link",
                   help="export as symbolic links (default) or copies")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, default=1024, help="images per forward pass (default 1024)")
    p.add_argument("--workers", type=int, default=None, help="image decoding threads (default: min(8, CPUs))")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    # default `run`: the run's own execution choice, so the clusters are the ones the run's final
    # assignment computed (amp: auto may have chosen bf16 on the training machine)
    p.add_argument("--amp", choices=("run", "off", "bf16", "fp16"), default="run",
                   help="autocast the encoder: run (default: as the run trained, from its timing.json; float32 "
                        "without one) | off | bf16 (faster on CPUs with native bf16) | fp16 (CUDA)")
    p.add_argument("--channels-last", nargs="?", const="true", default="run", choices=("run", "true", "false"),
                   help="NHWC batches: run (default: as the run trained) | true (the bare flag) | false")


def run_assign(args) -> int:
    import time

    import numpy as np
    import torch

    from scl.assign import AssignError, assign_files, clusters_csv, list_inputs, load_run
    from scl.data.errors import DataError
    from scl.data.folder import skipped_csv, skipped_report_path
    from scl.errors import TrainingError
    from scl.io import atomic_write_text

    prog = "scl assign"
    try:
        if args.batch_size < 1:
            raise AssignError(f"--batch-size must be positive, got {args.batch_size}")
        if args.threads:
            torch.set_num_threads(args.threads)
        amp, channels_last = args.amp, args.channels_last == "true"
        if "run" in (args.amp, args.channels_last):
            from scl.assign import run_execution
            from scl.device import pick_device

            run_amp, run_cl, why = run_execution(args.run_dir, pick_device(args.device))
            amp = run_amp if args.amp == "run" else amp
            channels_last = run_cl if args.channels_last == "run" else channels_last
            print(f"{prog}: execution {why}", file=sys.stderr)
        head = load_run(args.run_dir, args.device, amp, channels_last)
        files, skipped = list_inputs(args.inputs, args.list_file)
        if not files:
            raise AssignError(f"no image files found in {', '.join(args.inputs) or args.list_file}"
                              + (f" ({len(skipped)} other files skipped)" if skipped else ""))
        start = time.perf_counter()
        pred, conf, reasons = assign_files(head, files, args.batch_size, args.workers)
        elapsed = time.perf_counter() - start
    except (AssignError, DataError, TrainingError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    ok = np.array([r is None for r in reasons], bool)
    skipped += [(str(p), f"cannot be decoded ({r})") for p, r in zip(files, reasons) if r]
    kept = [p.resolve() for p, good in zip(files, ok) if good]
    out = Path(args.out)
    atomic_write_text(out, clusters_csv(kept, pred[ok], conf[ok]))
    atomic_write_text(skipped_report_path(out.with_suffix(".npz")), skipped_csv(skipped))
    if args.export:
        from scl.report.clusters import export_clusters

        export_clusters(kept, pred[ok], args.export, args.export_mode)
    sizes = np.bincount(pred[ok], minlength=head.num_classes).tolist()
    print(f"{prog}: {int(ok.sum())} images -> {head.num_classes} clusters in {elapsed:.1f}s "
          f"({ok.sum() / max(elapsed, 1e-9):.0f} images/s), {len(skipped)} skipped -> {out}", file=sys.stderr)
    print(json.dumps({"out": str(out), "images": int(ok.sum()), "skipped": len(skipped), "cluster_sizes": sizes,
                      "seconds": round(elapsed, 3)}))
    return 0


# ---------------------------------------------------------------------------- scl clusters
def _add_clusters_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "clusters", help="clusters.csv, contact sheets and an optional export of a run on an image folder",
        description="Turn a run's assignments into what a user sorting images wants: clusters.csv (path, cluster, "
                    "confidence), a contact sheet per cluster, and optionally one folder per cluster.")
    p.add_argument("--run", dest="run_dir", metavar="RUN", required=True, help="run folder (holds assignments.npz)")
    p.add_argument("--data", required=True, help="the prepared .npz the run was trained on")
    p.add_argument("--out", required=True, help="folder for clusters.csv, index.md and sheets/")
    p.add_argument("--export", type=Path, help="also put the images into DIR/cluster_NN/ folders")
    p.add_argument("--export-mode", choices=("link", "copy"), default="link")


def run_clusters(args) -> int:
    from scl.report.clusters import write_cluster_report

    try:
        info = write_cluster_report(args.run_dir, args.data, args.out, args.export, args.export_mode)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"scl clusters: error: {e}", file=sys.stderr)
        return 2
    print(f"scl clusters: {info['images']} images in {info['clusters']} clusters -> {info['out']}", file=sys.stderr)
    return 0


class Command(NamedTuple):
    name: str
    add_parser: Callable  # (subparsers) -> None: adds the `name` sub-parser and its options
    run: Callable  # (argparse.Namespace) -> exit code


COMMANDS = (
    Command("prepare", _add_prepare_parser, run_prepare),
    Command("train", _add_train_parser, run_train),
    Command("baseline", _add_baseline_parser, run_baseline),
    Command("table", _add_table_parser, run_table),
    Command("figure", _add_figure_parser, run_figure),
    Command("diagnose", _add_diagnose_parser, run_diagnose),
    Command("bench", _add_bench_parser, run_bench),
    Command("assign", _add_assign_parser, run_assign),
    Command("clusters", _add_clusters_parser, run_clusters),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scl", description="Deep clustering by Semantic Contrastive Learning")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
        sub.choices[command.name].set_defaults(run=command.run)
    return parser


# ---------------------------------------------------------------------------- one handler
# the user's environment: fix the path or the permissions, nothing was computed wrongly
_INPUT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
                 errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST}
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def describe_os_error(e: OSError) -> tuple[int, str]:
    """(exit code, message naming the file and the fix) of an OS error."""
    what = e.strerror or str(e)
    where = f" ({e.filename})" if e.filename else ""
    if e.errno in _SPACE_ERRNOS:
        return EXIT_RUN_FAILED, (f"{what}{where}: the disk is full. Nothing half-written was kept; free some space "
                                 "and run the same command again (a training run resumes from its last checkpoint)")
    if e.errno == errno.EROFS:
        return EXIT_BAD_INPUT, f"{what}{where}: the folder is on a read-only file system; write elsewhere (--out)"
    if e.errno in (errno.EACCES, errno.EPERM):
        return EXIT_BAD_INPUT, f"{what}{where}: no permission; fix the folder's permissions or write elsewhere (--out)"
    if e.errno in _INPUT_ERRNOS:
        return EXIT_BAD_INPUT, f"{what}{where}"
    return EXIT_RUN_FAILED, f"{type(e).__name__}: {what}{where}"


def _traceback_file(command: str) -> Path:
    """Where an unexpected error's traceback goes: logs/errors/ here, else the temp folder."""
    name = f"scl-{command}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    for folder in (Path("logs") / "errors", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(traceback.format_exc())
            return path.resolve()
        except OSError:
            continue
    raise OSError("no writable folder for the traceback")


def run_command(command: str, func: Callable[[], int]) -> int:
    """Run one `scl` command; every failure becomes a message on stderr and its exit code."""
    prefix = f"scl {command}"
    try:
        return func()
    except KeyboardInterrupt:
        print(f"\n{prefix}: interrupted. Nothing half-written was kept; resume by running the same command.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # SystemExit (argparse, sys.exit) passes through
        if os.environ.get("SCL_TRACEBACK"):
            raise
        code = getattr(type(e), "exit_code", None)
        if isinstance(code, int):
            print(f"{prefix}: error: {e}", file=sys.stderr)
            return code
        if isinstance(e, OSError):
            code, message = describe_os_error(e)
            print(f"{prefix}: error: {message}", file=sys.stderr)
            return code
        try:
            where = f"the full traceback is in {_traceback_file(command)}"
        except OSError:
            traceback.print_exc()
            where = "the traceback is above"
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"{prefix}: unexpected error: {type(e).__name__}: {first}\n{prefix}: {where}; "
              "please report it (SCL_TRACEBACK=1 prints it here)", file=sys.stderr)
        return EXIT_UNEXPECTED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    return run_command(args.command, lambda: args.run(args))

