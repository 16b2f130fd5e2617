"""`scl table` and `scl figure`: the command-line face of `scl.report`.

  scl table {table1,table2,table3} [--runs results/runs/<set>] [--baselines results/baselines]
            [--out results/tables/<name>] [--datasets D ...] [--extra-reported CSV ...]
      writes <out>.md, <out>.csv, <out>.tex and prints the markdown
  scl figure {fig3,fig4,fig5,fig6,curves,confusion} [--runs results/runs/<set>] [--out results/figures/<name>.png]
            [--dataset D] [--datasets D ...] [--seed S] [--variant V] [--data NPZ]
  scl diagnose --dataset D [--runs results/runs/<set>] [--variants V ...] [--seeds S ...] [--out PREFIX]
      head vs K-means vs k-NN probe on each run's features, per-class recall: <out>.md, <out>.json

Wired into scl/cli.py by `add_table_parser(sub)` / `add_figure_parser(sub)` / `add_diagnose_parser(sub)`; building the
parsers imports neither pandas nor matplotlib. Exit status 2 (and the reason on stderr)
for a missing input, which names the file and the command that makes it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scl import paths
from scl.experiments import FIGURES, TABLES


def add_table_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "table", help="Table 1, 2 or 3: reproduced numbers beside the paper's (md, csv, tex)",
        description="Collect finished runs and baselines, average them over seeds and write the table beside "
                    "the paper's reported numbers as <out>.md, <out>.csv and <out>.tex.",
    )
    p.add_argument("name", choices=TABLES)
    p.add_argument("--runs", default=paths.runs_root(), help=f"a run tree (default: {paths.runs_root()}, "
                   "where `scl train` puts runs; the workflow's are results/runs/<set>)")
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
    p.set_defaults(func=run_table)
    return p


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


def add_figure_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "figure", help="Figure 3, 4, 5, 6 or training curves (PNG)",
        description="fig3/fig4: ACC bars per dataset over the ablation variants; fig5: UMAP of one run's features "
                    "(init / trained); fig6: most and least confident images per cluster; curves: log.jsonl of "
                    "every seed of one dataset/variant; confusion: classes x clusters of one run.",
    )
    p.add_argument("name", choices=FIGURES)
    p.add_argument("--runs", default=paths.runs_root(), help=f"a run tree (default: {paths.runs_root()}, "
                   "where `scl train` puts runs; the workflow's are results/runs/<set>)")
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
    p.set_defaults(func=run_figure)
    return p


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


def add_diagnose_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "diagnose", help="what limits a dataset's clustering: head vs K-means vs a k-NN probe, per-class recall",
        description="For each finished run: its own ACC/NMI/ARI, K-means on its backbone features, the "
                    "leave-one-out k-NN accuracy of those features (a supervised probe) and per-class recall.",
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--runs", default=paths.runs_root(), help=f"a run tree (default: {paths.runs_root()}, "
                   "where `scl train` puts runs; the workflow's are results/runs/<set>)")
    p.add_argument("--variants", nargs="+", default=["scl"], metavar="V", help="default: scl")
    p.add_argument("--seeds", nargs="+", type=int, metavar="S", help="default: every finished seed")
    p.add_argument("--data", help="prepared .npz: class names and the raw-pixel reference row "
                   "(default: data/prepared/<dataset>.npz)")
    p.add_argument("--no-pixels", action="store_true", help="leave out the raw-pixel reference row")
    p.add_argument("--out", help="output path without suffix (default: results/tables/diagnosis_<dataset>)")
    p.set_defaults(func=run_diagnose)
    return p


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
