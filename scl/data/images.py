"""Decode image files into one uint8 array, in parallel, with one resize rule for all readers.

Resize rule (ImageNet-10/-Dogs, Tiny-ImageNet at another size, user folders): scale the
*shorter* side to `size` with PIL's bilinear filter, then take the central `size x size`
crop. Pillow's ``resize`` antialiases when shrinking (its bilinear kernel is widened by the
scale factor), so large ImageNet photos are not aliased; this matches torchvision's
``Resize(size)`` + ``CenterCrop(size)`` on PIL images. Images already ``size x size`` are
left untouched, bit for bit.

Threads rather than processes: Pillow releases the GIL while decoding and resampling, and
threads share the preallocated output array, so no per-image copies cross process borders.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from scl.data.errors import DataError

#: File extensions taken as images (compared lower-case); anything else in a folder is skipped.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})

RESIZE_METHOD = "shorter side to size with PIL bilinear (antialiased), then center crop size x size"


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def resize_shorter_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to `size` (bilinear, antialiased), then crop the centre square."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    if w <= h:
        nw, nh = size, max(size, round(h * size / w))
    else:
        nw, nh = max(size, round(w * size / h)), size
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def load_image(path: str | os.PathLike, size: int, mode: str = "RGB") -> np.ndarray:
    """One image as a uint8 `size x size x C` array (C = 3 for "RGB", 1 for "L").

    Unreadable or truncated files raise a DataError naming the file.
    """
    try:
        with Image.open(path) as img:
            img = img.convert(mode)  # also forces the full decode, so truncation shows here
            img = resize_shorter_center_crop(img, size)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # UnidentifiedImageError and "image file is truncated" are OSErrors.
        raise DataError(
            f"cannot read image {path} ({type(e).__name__}: {e}). Fix: delete or replace this file "
            f"(or move it out of the image folder) and rerun."
        ) from e
    return arr[..., None] if arr.ndim == 2 else arr


def load_images(paths: Sequence[str | os.PathLike], size: int, mode: str = "RGB", workers: int | None = None,
                desc: str = "images") -> np.ndarray:
    """All `paths` as one uint8 `N x size x size x C` array, in the order given."""
    channels = 1 if mode == "L" else 3
    out = np.empty((len(paths), size, size, channels), np.uint8)  # preallocated: no N-fold list + stack

    def fill(i: int) -> None:
        out[i] = load_image(paths[i], size, mode)

    workers = workers or default_workers()
    with tqdm(total=len(paths), desc=desc, unit="img", disable=None) as bar:
        if workers == 1:
            for i in range(len(paths)):
                fill(i)
                bar.update()
        else:
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                # map re-raises the first failure (a DataError naming the file) in this thread.
                for _ in pool.map(fill, range(len(paths))):
                    bar.update()
            finally:
                # On failure, drop the queued images instead of decoding them all first.
                pool.shutdown(wait=True, cancel_futures=True)
    return out
