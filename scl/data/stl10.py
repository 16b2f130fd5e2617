"""STL-10 binary archive (stl10_binary/): train + test = 13,000 96x96 colour images.

  <split>_X.bin   uint8, per image 3 planes (R, G, B) of 96 x 96 stored *column-major*
  <split>_y.bin   uint8, one label per image, 1..10
  class_names.txt one name per line, in label order
Reading follows the official reader (github.com/mttk/STL10): reshape to (N, 3, 96, 96),
then ``np.transpose(x, (0, 3, 2, 1))``: channels last *and* the H/W swap that undoes the
column-major storage. The 100,000 unlabelled images are not used by the paper.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from scl.data.errors import DataError
from scl.data.prepared import PreparedData

STL10_FOLDER = "stl10_binary"
_SIDE = 96
_IMAGE_BYTES = 3 * _SIDE * _SIDE


def _fix(folder: Path) -> str:
    return f"Fix: delete the folder {folder} and rerun `scl prepare stl10` to extract it again."


def read_stl10_images(path: str | os.PathLike) -> np.ndarray:
    """An STL-10 <split>_X.bin as N x 96 x 96 x 3 uint8 (HWC, upright)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"STL-10 file {path} does not exist. {_fix(path.parent)}")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % _IMAGE_BYTES:
        raise DataError(f"STL-10 file {path} has {raw.size} bytes, not a multiple of {_IMAGE_BYTES} "
                        f"(3 x 96 x 96): it is truncated. {_fix(path.parent)}")
    x = raw.reshape(-1, 3, _SIDE, _SIDE)
    return np.ascontiguousarray(np.transpose(x, (0, 3, 2, 1)))


def read_stl10_labels(path: str | os.PathLike, n: int, num_classes: int = 10) -> np.ndarray:
    """An STL-10 <split>_y.bin (1..10) as int64 0..9, checked against the image count."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"STL-10 file {path} does not exist. {_fix(path.parent)}")
    y = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if len(y) != n:
        raise DataError(f"STL-10 file {path} has {len(y)} labels for {n} images. {_fix(path.parent)}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"STL-10 labels in {path} are outside 1..{num_classes}. {_fix(path.parent)}")
    return y


def read_stl10(folder: str | os.PathLike, splits: Sequence[str] = ("train", "test")) -> PreparedData:
    """STL-10 train + test from an extracted stl10_binary folder."""
    folder = Path(folder)
    names_path = folder / "class_names.txt"
    if not names_path.is_file():
        raise DataError(f"STL-10 file {names_path} does not exist. {_fix(folder)}")
    names = [line.strip() for line in names_path.read_text().splitlines() if line.strip()]
    images, labels = [], []
    for split in splits:
        x = read_stl10_images(folder / f"{split}_X.bin")
        images.append(x)
        labels.append(read_stl10_labels(folder / f"{split}_y.bin", len(x), len(names)))
    return PreparedData(np.concatenate(images), np.concatenate(labels), names)
