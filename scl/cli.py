"""`scl <command>`: the package's command line, which the Snakemake rules call.

  scl prepare DATASET           download, verify and prepare a dataset into one .npz
  scl train --dataset D         one SCL run (variant, seed, overrides), resumable
  scl baseline METHOD --dataset D   K-means / SC / AC / NMF on raw pixels
  scl table {table1,table2,table3}  reproduced numbers beside the paper's (md, csv, tex)
  scl figure {fig3,fig4,fig5,fig6,curves,confusion}   figures as PNG
  scl diagnose --dataset D      head vs K-means vs k-NN probe on the features, per-class recall
  scl bench                     throughput: SCL vs MoCo step, batched vs PIL augmentation
Exit codes: 0 done, 2 bad input (settings, data), 3 training failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from scl import paths
from scl.config import ConfigError, load_params, parse_overrides, resolve, settings_from_json

# datasets that need no download, so `scl train` may prepare them on first use
LOCAL_DATASETS = ("digits", "fashion")


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
    if (out / "metrics.json").exists() and not args.restart:
        print(f"scl train: {out} is already complete (metrics.json exists); pass --restart to train again", file=sys.stderr)
        print(json.dumps(json.loads((out / "metrics.json").read_text()), indent=2))
        return 0
    data_path = Path(args.data or paths.prepared(dataset))
    from scl.data.prepared import load_prepared
    from scl.train import CheckpointMismatch, TrainingError, train

    try:
        if not data_path.exists() and args.data is None and dataset in LOCAL_DATASETS:
            from scl.data.registry import prepare

            prepare(dataset, data_path)
        data = load_prepared(data_path)
    except (FileNotFoundError, ValueError) as e:
        print(f"scl train: {e}", file=sys.stderr)
        return 2
    try:
        try:
            metrics = train(settings, data, out, progress=not args.no_progress, restart=args.restart)
        except CheckpointMismatch as e:
            if not args.restart_if_changed:
                raise
            print(f"scl train: {e}: starting afresh (--restart-if-changed)", file=sys.stderr)
            metrics = train(settings, data, out, progress=not args.no_progress, restart=True)
    except TrainingError as e:
        print(f"scl train: {e}", file=sys.stderr)
        return 3
    summary = {k: metrics[k] for k in ("acc", "nmi", "ari") if k in metrics}
    timing = json.loads((out / paths.TIMING).read_text())
    print(json.dumps({"out": str(out), **summary, "train_time_s": round(timing["train_time_s"], 1)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scl", description="Deep clustering by Semantic Contrastive Learning")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub)
    try:
        from scl.data.cli import add_prepare_parser

        add_prepare_parser(sub)
    except ImportError:  # pragma: no cover - data layer not installed
        pass
    from scl.baselines import add_baseline_parser
    from scl.report_cli import add_diagnose_parser, add_figure_parser, add_table_parser

    add_baseline_parser(sub)
    add_table_parser(sub)
    add_figure_parser(sub)
    add_diagnose_parser(sub)
    from scl.bench import add_bench_parser

    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.command == "train":
        return run_train(args)
    if args.command == "prepare":
        from scl.data.cli import run_prepare

        return run_prepare(args)
    if args.command in ("baseline", "table", "figure", "diagnose", "bench"):
        return args.func(args)
    parser.error(f"unknown command {args.command}")
    return 2
