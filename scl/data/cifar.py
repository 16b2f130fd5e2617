"""CIFAR-10 and CIFAR-100 "python version" archives (pickled dicts).

Each batch is a dict (pickled by Python 2, so its keys are bytes) with
  b"data"    uint8 N x 3072: per image the 1024 red, then green, then blue values,
             each plane row-major 32 x 32
  b"labels"  (CIFAR-10) list of N ints 0..9
  b"fine_labels", b"coarse_labels" (CIFAR-100)
CIFAR-10: data_batch_1..5 + test_batch, names in batches.meta[b"label_names"].
CIFAR-100: files "train" and "test", names in meta[b"fine_label_names" / b"coarse_label_names"].

The paper (like IIC and PICA) clusters train + test together: 60,000 32x32 images each.
CIFAR-100-20 uses the 20 super-classes: fine labels are mapped with
scl/reference/cifar100_coarse.csv, checked against the archive's own coarse labels.

Unpickling can run code. Two guards: the extracted folder is compared with its
md5-verified archive before it is read (scl.data.download.ensure_extracted), and the
batches are read by `SafeUnpickler`, which builds only dicts, lists, str/bytes/numbers and
numpy arrays: any other global in the pickle (os.system, ...) is refused, not called.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scl.data.errors import DataError
from scl.data.prepared import PreparedData
from scl.data.reference import cifar100_coarse_map

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)

#: CIFAR-100 super-class names in coarse-label order (as in its meta file), used if meta is absent.
CIFAR100_COARSE_NAMES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)


def _fix(path: Path) -> str:
    return (f"Fix: delete the folder {path.parent} (and its archive if that is corrupt) and rerun "
            f"`scl prepare` to extract it again.")


class SafeUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches: numpy arrays and plain values only."""

    # what numpy needs to rebuild an array or a scalar (numpy 1.x and 2.x module names)
    ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
               for n in ("_reconstruct", "scalar")} | {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "bytearray"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
        ("__builtin__", "object"), ("builtins", "object"),
        ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (a CIFAR batch holds only arrays, "
                                         "lists and strings; this file may be crafted to run code)")
        return super().find_class(module, name)


def load_batch(path: str | os.PathLike) -> dict[str, Any]:
    """A pickled CIFAR batch with its keys decoded to str."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CIFAR batch {path} does not exist. {_fix(path)}")
    try:
        with open(path, "rb") as f:
            d = SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError) as e:
        raise DataError(f"CIFAR batch {path} is truncated or corrupt ({e}). {_fix(path)}") from e
    if not isinstance(d, dict):
        raise DataError(f"CIFAR batch {path} does not hold a dict. {_fix(path)}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _names(values: Sequence[bytes | str]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def batch_images(batch: dict[str, Any], path: Path) -> np.ndarray:
    """N x 3072 planes -> N x 32 x 32 x 3 (HWC)."""
    data = np.asarray(batch.get("data"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"CIFAR batch {path} has data {data.dtype} {data.shape}, expected uint8 N x 3072. {_fix(path)}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _labels(batch: dict[str, Any], key: str, n: int, path: Path) -> np.ndarray:
    if key not in batch:
        raise DataError(f"CIFAR batch {path} has no {key!r}. {_fix(path)}")
    y = np.asarray(batch[key], dtype=np.int64)
    if y.shape != (n,):
        raise DataError(f"CIFAR batch {path} has {len(y)} {key} for {n} images. {_fix(path)}")
    return y


def read_cifar10(folder: str | os.PathLike, batches: Sequence[str] = CIFAR10_TRAIN + CIFAR10_TEST) -> PreparedData:
    """CIFAR-10 train + test (60,000 images) from an extracted cifar-10-batches-py folder."""
    folder = Path(folder)
    images, labels = [], []
    for name in batches:
        path = folder / name
        batch = load_batch(path)
        x = batch_images(batch, path)
        images.append(x)
        labels.append(_labels(batch, "labels", len(x), path))
    meta = load_batch(folder / "batches.meta")
    names = _names(meta.get("label_names", []))
    y = np.concatenate(labels)
    if len(names) != 10 or y.min() < 0 or y.max() > 9:
        raise DataError(f"CIFAR-10 in {folder} does not have 10 classes (names {names}). {_fix(folder / 'x')}")
    return PreparedData(np.concatenate(images), y, names)


def read_cifar100_20(folder: str | os.PathLike, splits: Sequence[str] = ("train", "test")) -> PreparedData:
    """CIFAR-100 train + test (60,000 images) labelled by the 20 super-classes."""
    folder = Path(folder)
    coarse_of = cifar100_coarse_map()
    images, labels = [], []
    for name in splits:
        path = folder / name
        batch = load_batch(path)
        x = batch_images(batch, path)
        fine = _labels(batch, "fine_labels", len(x), path)
        if len(fine) and (fine.min() < 0 or fine.max() > 99):
            raise DataError(f"CIFAR-100 fine labels in {path} are outside 0..99. {_fix(path)}")
        coarse = coarse_of[fine]
        if "coarse_labels" in batch:
            # The reference table and the archive must tell the same story.
            own = _labels(batch, "coarse_labels", len(x), path)
            wrong = np.flatnonzero(own != coarse)
            if len(wrong):
                i = wrong[0]
                raise DataError(
                    f"{len(wrong)} images of {path} have coarse labels that disagree with "
                    f"scl/reference/cifar100_coarse.csv (e.g. image {i}: fine {fine[i]} -> table {coarse[i]}, "
                    f"archive {own[i]}). Fix: the table or the archive is wrong; restore the package's table, "
                    f"or delete {folder} and its archive and rerun."
                )
        images.append(x)
        labels.append(coarse)
    meta_path = folder / "meta"
    names = _names(load_batch(meta_path).get("coarse_label_names", [])) if meta_path.exists() else []
    return PreparedData(np.concatenate(images), np.concatenate(labels), names or list(CIFAR100_COARSE_NAMES))
