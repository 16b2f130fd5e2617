"""`scl prepare <dataset>`: the command-line face of `scl.data.registry.prepare`.

Wired into scl/cli.py by `add_prepare_parser(subparsers)`; the parser's default `func`
is `run_prepare`, which turns a DataError into its message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scl import paths
from scl.data.errors import DataError

# The names are listed here, not imported from the registry, so that building the parser
# (every `scl` call) does not import the readers; a test keeps the two in step.
DATASET_NAMES = ("digits", "fashion", "cifar10", "cifar100-20", "stl10", "imagenet10", "imagenet-dogs",
                 "tiny-imagenet", "folder")


def add_prepare_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prepare",
        help="download, verify and prepare a dataset into one .npz",
        description="Fetch a dataset (or read it from --root), verify checksums, and write the compact "
                    ".npz every other command reads. Downloads and extracted archives are kept in --raw-dir.",
    )
    p.add_argument("name", choices=DATASET_NAMES, help="dataset")
    p.add_argument("--out", type=Path, default=None, help="output .npz (default: data/prepared/<name>.npz)")
    p.add_argument("--raw-dir", type=Path, default=Path("data/raw"), help="downloads and extracted archives "
                   "(default: data/raw)")
    p.add_argument("--root", type=Path, default=None,
                   help="imagenet10 / imagenet-dogs: the ImageNet train folder (<root>/<wnid>/*.JPEG); "
                        "folder: your image folder; tiny-imagenet: an extracted tiny-imagenet-200 folder")
    p.add_argument("--image-size", type=int, default=None,
                   help="output side for imagenet10, imagenet-dogs, tiny-imagenet, folder "
                        "(default: 96, 96, 64, 64)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.add_argument("--workers", type=int, default=None, help="image decoding threads (default: min(8, CPUs))")
    p.set_defaults(func=run_prepare)
    return p


def run_prepare(args: argparse.Namespace) -> int:
    from scl.data.prepared import load_meta
    from scl.data.registry import prepare

    out = args.out if args.out is not None else Path(paths.prepared(args.name))
    try:
        path = prepare(args.name, out, raw_dir=args.raw_dir, download=not args.no_download, root=args.root,
                       image_size=args.image_size, workers=args.workers)
    except DataError as e:
        print(f"scl prepare {args.name}: error: {e}", file=sys.stderr)
        return 2
    meta = load_meta(path)
    shape = "x".join(str(s) for s in meta.get("image_shape", []))
    print(f"prepared {args.name}: {meta.get('num_images')} images of {shape}, "
          f"{meta.get('num_classes')} classes -> {path}")
    return 0
