"""Dataset name -> how to fetch, verify and prepare it into one compact .npz.

    prepare("cifar10", "data/prepared/cifar10.npz")          # download, verify, extract, read, write
    prepare("imagenet10", out, root="/data/ILSVRC/train")    # from a user-supplied folder
    download("stl10", "data/raw")                             # only fetch + verify the archive

Raw downloads and extracted folders live under `raw_dir` (default data/raw) and are reused
by later runs; the prepared file is written atomically (scl.io), with a provenance record
(`scl.data.prepared.load_meta`): sources, checksums, resize rule, sha256 of the arrays.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import scl
from scl.data import cifar, idx, imagenet, stl10
from scl.data.download import Fetch, Resource, ensure_extracted, ensure_file
from scl.data.errors import DataError, UnknownDatasetError
from scl.data.images import RESIZE_METHOD, default_workers
from scl.data.prepared import PreparedData, save_prepared


@dataclass
class BuildContext:
    """Everything a dataset builder may use; builders add what they read to `provenance`."""

    spec: "DatasetSpec"
    raw_dir: Path
    download: bool
    fetch: Fetch | None
    root: Path | None
    image_size: int
    workers: int
    options: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    size_given: bool = True  # False: image_size is the spec's default, and a builder may choose from the data
    paths: list[str] | None = None  # builders of file folders: each image's file (stored in the .npz)
    skipped: list[tuple[str, str]] | None = None  # builders of file folders: (path, reason) not used

    def extracted(self, resource: Resource) -> Path:
        """The extracted folder of an archive resource (fetched, verified, extracted if needed)."""
        folder = ensure_extracted(resource, self.raw_dir, self.download, self.fetch)
        self.provenance["source"] = {"folder": str(folder), "archive": resource.filename, "md5": resource.md5,
                                     "url": resource.urls[0] if resource.urls else None}
        return folder


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    build: Callable[[BuildContext], PreparedData]
    image_size: int  # side of the prepared images (default for the resizable ones)
    channels: int
    num_classes: int | None  # None: whatever the user's folder has
    expected_count: int | None  # images of the full upstream dataset; a mismatch warns
    resources: tuple[Resource, ...] = ()  # what `download` fetches
    resizable: bool = False  # whether image_size may be changed (decoded-from-files datasets)
    takes_root: bool = False  # whether `root` (a user-supplied folder) means anything
    options: frozenset[str] = frozenset()  # dataset-specific keyword options of `prepare`


# --- builders ----------------------------------------------------------------------------


def _build_digits(ctx: BuildContext) -> PreparedData:
    from scl.data.digits import read_digits

    ctx.provenance["source"] = {"sklearn.datasets": "load_digits", "scaling": "round(value * 255 / 16)"}
    return read_digits()


def _build_fashion(ctx: BuildContext) -> PreparedData:
    debian_dir = ctx.options.get("debian_dir", idx.DEBIAN_FASHION_DIR)
    folder, origin = idx.fashion_source(ctx.raw_dir, ctx.download, ctx.fetch, debian_dir, ctx.spec.resources)
    ctx.provenance["source"] = {"origin": origin, "folder": str(folder),
                                "check": "sha256 of the decompressed IDX files" +
                                         ("" if origin == "debian" else " + upstream gz md5")}
    sha = ctx.options.get("idx_sha256", idx.FASHION_IDX_SHA256)
    return idx.read_fashion_mnist(folder, ctx.options.get("splits"), sha, ctx.provenance["source"])


def _build_cifar10(ctx: BuildContext) -> PreparedData:
    return cifar.read_cifar10(ctx.extracted(ctx.spec.resources[0]))


def _build_cifar100_20(ctx: BuildContext) -> PreparedData:
    return cifar.read_cifar100_20(ctx.extracted(ctx.spec.resources[0]))


def _build_stl10(ctx: BuildContext) -> PreparedData:
    return stl10.read_stl10(ctx.extracted(ctx.spec.resources[0]))


def _build_imagenet_subset(ctx: BuildContext) -> PreparedData:
    ctx.provenance["source"] = {"imagenet_root": str(ctx.root) if ctx.root else None,
                                "classes": "scl/reference/imagenet_subsets.csv", "resize": RESIZE_METHOD}
    return imagenet.read_imagenet_subset(ctx.root, ctx.spec.name, ctx.image_size, ctx.workers)


def _build_tiny(ctx: BuildContext) -> PreparedData:
    if ctx.root is not None:  # an already extracted tiny-imagenet-200 folder
        folder = ctx.root
        ctx.provenance["source"] = {"folder": str(folder)}
    else:
        folder = ctx.extracted(ctx.spec.resources[0])
    ctx.provenance["resize"] = RESIZE_METHOD if ctx.image_size != 64 else "none (native 64x64)"
    return imagenet.read_tiny_imagenet(folder, ctx.image_size, ctx.workers)


def _build_folder(ctx: BuildContext) -> PreparedData:
    from scl.data.folder import read_folder_report

    channels = int(ctx.options.get("channels", ctx.spec.channels))
    got = read_folder_report(ctx.root, ctx.image_size if ctx.size_given else None, channels, ctx.workers)
    ctx.image_size, ctx.paths, ctx.skipped = got.image_size, got.paths, got.skipped
    ctx.provenance["source"] = {"folder": str(ctx.root.resolve()) if ctx.root else None, "resize": RESIZE_METHOD,
                                "image_size": got.image_size, "image_size_from": got.size_reason,
                                "channels": channels, "skipped": len(got.skipped)}
    return got.data


# --- the table ---------------------------------------------------------------------------

_TORONTO = "https://www.cs.toronto.edu/~kriz/"

DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("digits", "scikit-learn's 8x8 digits, 1,797 images (bundled, no download)", _build_digits,
                    8, 1, 10, 1797),
        DatasetSpec("fashion", "Fashion-MNIST train + test, 70,000 28x28 (Debian package or upstream mirror)",
                    _build_fashion, 28, 1, 10, 70_000, idx.FASHION_RESOURCES,
                    options=frozenset({"debian_dir", "idx_sha256", "splits"})),
        DatasetSpec("cifar10", "CIFAR-10 train + test, 60,000 32x32", _build_cifar10, 32, 3, 10, 60_000,
                    (Resource("cifar-10-python.tar.gz", (_TORONTO + "cifar-10-python.tar.gz",),
                              "c58f30108f718f92721af3b95e74349a", cifar.CIFAR10_FOLDER,
                              verify_extracted=True),)),
        DatasetSpec("cifar100-20", "CIFAR-100 train + test, 60,000 32x32, 20 super-classes", _build_cifar100_20,
                    32, 3, 20, 60_000,
                    (Resource("cifar-100-python.tar.gz", (_TORONTO + "cifar-100-python.tar.gz",),
                              "eb9058c3a382ffc7106e4002c42a8d85", cifar.CIFAR100_FOLDER,
                              verify_extracted=True),)),
        DatasetSpec("stl10", "STL-10 train + test, 13,000 96x96 (unlabelled split not used)", _build_stl10,
                    96, 3, 10, 13_000,
                    (Resource("stl10_binary.tar.gz", ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                              "91f7769df0f17e558f3565bffb0c7dfb", stl10.STL10_FOLDER),)),
        DatasetSpec("imagenet10", "ImageNet-10: 13,000 ImageNet train images of 10 classes at 96x96 (needs --root)",
                    _build_imagenet_subset, 96, 3, 10, 13_000, resizable=True, takes_root=True),
        DatasetSpec("imagenet-dogs", "ImageNet-Dogs: 19,500 ImageNet train images of 15 breeds at 96x96 "
                    "(needs --root)", _build_imagenet_subset, 96, 3, 15, 19_500, resizable=True, takes_root=True),
        DatasetSpec("tiny-imagenet", "Tiny-ImageNet train, 100,000 64x64, 200 classes", _build_tiny, 64, 3, 200,
                    100_000,
                    (Resource("tiny-imagenet-200.zip", ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
                              "90528d7ca1a48142e341f4ef8d21d0de", imagenet.TINY_FOLDER),),
                    resizable=True, takes_root=True),
        DatasetSpec("folder", "your own folder of images (class sub-folders, or flat = unlabelled; needs --root)",
                    _build_folder, 64, 3, None, None, resizable=True, takes_root=True,
                    options=frozenset({"channels"})),
    )
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownDatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}") from None


def download(name: str, raw_dir: str | os.PathLike = "data/raw", *, fetch: Fetch | None = None) -> list[Path]:
    """Fetch and md5-verify the upstream files of `name` into raw_dir (no extraction).

    Files already present are verified, not fetched again. `digits` needs nothing; the
    ImageNet subsets and `folder` cannot be downloaded and raise a DataError saying so.
    """
    spec = get_spec(name)
    if not spec.resources and name != "digits":
        raise DataError(f"{name} cannot be downloaded automatically. Fix: pass --root (ImageNet: your "
                        f"ILSVRC-2012 train folder; folder: your image folder) to `scl prepare {name}`.")
    return [ensure_file(r, raw_dir, True, fetch) for r in spec.resources]


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()


def prepare(
    name: str,
    out: str | os.PathLike | None = None,
    raw_dir: str | os.PathLike = "data/raw",
    download: bool = True,
    *,
    root: str | os.PathLike | None = None,
    image_size: int | None = None,
    workers: int | None = None,
    fetch: Fetch | None = None,
    **options: Any,
) -> Path:
    """Read dataset `name` from its upstream source and write it to `out` (.npz), atomically.

    root        ImageNet train folder (imagenet10, imagenet-dogs), image folder (folder), or an
                extracted tiny-imagenet-200 folder (tiny-imagenet)
    image_size  output side for the datasets decoded from image files; others are fixed
    workers     image decoding threads (default: min(8, CPUs))
    fetch       replaces the network fetcher (tests, offline mirrors)
    options     dataset-specific: fashion: debian_dir (None = ignore Debian's copy); folder: channels
    Returns the path written. Errors a user can fix are DataErrors.
    """
    spec = get_spec(name)
    unknown = set(options) - spec.options
    if unknown:
        raise DataError(f"unknown option(s) {sorted(unknown)} for dataset {name}; it takes {sorted(spec.options)}")
    if image_size is not None and image_size != spec.image_size and not spec.resizable:
        raise DataError(f"{name} has a fixed image size of {spec.image_size}; --image-size applies only to "
                        f"{', '.join(n for n, s in DATASETS.items() if s.resizable)}.")
    if root is not None and not spec.takes_root:
        raise DataError(f"{name} is read from its upstream archive; --root applies only to "
                        f"{', '.join(n for n, s in DATASETS.items() if s.takes_root)}.")
    if image_size is not None and image_size < 1:
        raise DataError(f"--image-size must be positive, got {image_size}")
    out = Path(out) if out is not None else Path("data/prepared") / f"{name}.npz"
    ctx = BuildContext(spec=spec, raw_dir=Path(raw_dir), download=download, fetch=fetch,
                       root=Path(root).expanduser() if root is not None else None,
                       image_size=image_size or spec.image_size, workers=workers or default_workers(),
                       options=options, size_given=image_size is not None)
    data = spec.build(ctx)

    if spec.expected_count is not None and len(data) != spec.expected_count:
        warnings.warn(f"{name}: prepared {len(data)} images, the full dataset has {spec.expected_count}",
                      stacklevel=2)
    meta = {
        "dataset": name,
        "scl_version": scl.__version__,
        "num_images": len(data),
        "image_shape": list(data.images.shape[1:]),
        "num_classes": len(data.class_names),
        "images_sha256": _sha256(data.images),
        "labels_sha256": _sha256(data.labels.astype(np.int64)),
        **ctx.provenance,
    }
    if ctx.skipped is not None:  # beside the .npz, written first: the .npz is the job's declared output
        from scl.data.folder import skipped_csv, skipped_report_path
        from scl.io import atomic_write_text

        atomic_write_text(skipped_report_path(out), skipped_csv(ctx.skipped))
        meta["skipped_report"] = skipped_report_path(out).name
    return save_prepared(out, data.images, data.labels, data.class_names, meta=meta, paths=ctx.paths)
