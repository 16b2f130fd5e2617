"""The compact array file every dataset is prepared into, once.

Format: a compressed ``.npz`` with
  images       uint8, N x H x W x C
  labels       int64, N (-1 where no ground truth is known)
  class_names  str, num_classes (may be empty for unlabelled data)
  paths        optional: str, N, each image's file relative to the source folder (the
               `folder` dataset: what clusters.csv, contact sheets and export refer to)
  meta         optional: a 0-d str array holding a JSON object (provenance: source files
               and their checksums, resize method, sha256 of the arrays); readers that
               only need the arrays never touch it
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scl.io import atomic_savez


@dataclass
class PreparedData:
    images: np.ndarray  # uint8 N x H x W x C
    labels: np.ndarray  # int64 N, -1 = unknown
    class_names: list[str]
    paths: list[str] | None = None  # source file of each image, relative to meta["source"]["folder"]

    @property
    def has_labels(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    def __len__(self) -> int:
        return len(self.images)


def validate(images: np.ndarray, labels: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 N x H x W x C, got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"labels must be a vector of length {len(images)}, got shape {labels.shape}")


def save_prepared(
    path, images: np.ndarray, labels: np.ndarray | None = None, class_names=(), meta: dict[str, Any] | None = None,
    paths=None,
) -> Path:
    images = np.ascontiguousarray(images)
    if images.ndim == 3:  # N x H x W grayscale
        images = images[..., None]
    labels = np.full(len(images), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
    validate(images, labels)
    arrays = dict(images=images, labels=labels, class_names=np.asarray(list(class_names), dtype=str))
    if paths is not None:
        if len(paths) != len(images):
            raise ValueError(f"paths must name each of the {len(images)} images, got {len(paths)}")
        arrays["paths"] = np.asarray(list(paths), dtype=str)
    if meta is not None:
        # JSON in a plain str array keeps the file loadable with allow_pickle=False.
        arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
    return atomic_savez(path, **arrays)


def load_prepared(path) -> PreparedData:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"prepared dataset {path} does not exist; create it with `scl prepare <dataset> --out {path}`"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels, names = z["images"], z["labels"], z["class_names"]
            paths = [str(p) for p in z["paths"]] if "paths" in z.files else None
    except Exception as e:  # truncated zip, missing key, ...
        raise ValueError(f"prepared dataset {path} is unreadable ({e}); delete it and run `scl prepare` again") from e
    validate(images, labels)
    return PreparedData(images=images, labels=labels.astype(np.int64), class_names=[str(n) for n in names],
                        paths=paths)


def load_meta(path) -> dict[str, Any]:
    """The provenance record stored by `save_prepared(..., meta=...)`; {} when there is none."""
    with np.load(Path(path), allow_pickle=False) as z:
        return json.loads(str(z["meta"])) if "meta" in z.files else {}
