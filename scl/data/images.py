"""Decode image files into one uint8 array, in parallel, with one resize rule for all readers.

Resize rule (ImageNet-10/-Dogs, Tiny-ImageNet at another size, user folders): scale the
*shorter* side to `size` with PIL's bilinear filter, then take the central `size x size`
crop. Pillow's ``resize`` antialiases when shrinking (its bilinear kernel is widened by the
scale factor), so large ImageNet photos are not aliased; this matches torchvision's
``Resize(size)`` + ``CenterCrop(size)`` on PIL images. Images already ``size x size`` are
left untouched, bit for bit.

Pixel values: every image becomes 8 bits per channel by *scaling*, never by clipping
(`to_8bit`): 16-bit images (PNG/TIFF modes I;16*) are divided by 257 (65535 -> 255), 32-bit
integer images in 0..65535 likewise (else min-max scaled), float images (mode F) in [0, 1]
are multiplied by 255 (else min-max scaled per image), and a float image with NaN or inf
pixels is refused as unreadable. Pillow's own `convert("L")` clips instead: a mid-grey
16-bit PNG (32768) becomes white and a float TIFF in [0, 1] becomes black. Images with an
alpha channel (RGBA, LA, PA, palette with transparency) are composited over white, the
background most viewers show them on.

Threads rather than processes: Pillow releases the GIL while decoding and resampling, and
threads share the preallocated output array, so no per-image copies cross process borders.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

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


_HIGH_BIT_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels become white


def to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float single-channel image as mode "L", scaled (not clipped)."""
    a = np.asarray(img)
    if img.mode == "F" or a.dtype.kind == "f":
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ValueError("float image with NaN or infinite pixel values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:  # not a [0, 1] image: stretch its own range
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        scaled = a * 255.0
    else:
        a = a.astype(np.int64)
        lo, hi = int(a.min()), int(a.max())
        if img.mode.startswith("I;16") or (lo >= 0 and hi <= 65535):
            scaled = a / 257.0  # 16-bit full scale 65535 -> 255
        else:
            scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros(a.shape)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """`img` as mode "RGB" or "L": high bit depths scaled, alpha composited over white."""
    if img.mode in _HIGH_BIT_DEPTH:
        img = to_8bit(img)
    elif _has_alpha(img):
        rgba = img.convert("RGBA")
        img = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        img.alpha_composite(rgba)
    return img if img.mode == mode else img.convert(mode)


def load_image(path: str | os.PathLike, size: int, mode: str = "RGB") -> np.ndarray:
    """One image as a uint8 `size x size x C` array (C = 3 for "RGB", 1 for "L").

    Unreadable or truncated files raise a DataError naming the file.
    """
    try:
        with Image.open(path) as img:
            img.load()  # forces the full decode, so truncation shows here
            img = to_mode(img, mode)
            img = resize_shorter_center_crop(img, size)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # UnidentifiedImageError and "image file is truncated" are OSErrors.
        raise DataError(
            f"cannot read image {path} ({type(e).__name__}: {e}). Fix: delete or replace this file "
            f"(or move it out of the image folder) and rerun."
        ) from e
    return arr[..., None] if arr.ndim == 2 else arr


def image_side(path: str | os.PathLike) -> int | None:
    """The shorter side of an image from its header (no decode); None when unreadable."""
    try:
        with Image.open(path) as img:
            return min(img.size)
    except Exception:  # noqa: BLE001 - any failure here is reported when the image is decoded
        return None


def load_images(paths: Sequence[str | os.PathLike], size: int, mode: str = "RGB", workers: int | None = None,
                desc: str = "images") -> np.ndarray:
    """All `paths` as one uint8 `N x size x size x C` array, in the order given."""
    channels = 1 if mode == "L" else 3
    out = np.empty((len(paths), size, size, channels), np.uint8)  # preallocated: no N-fold list + stack

    def fill(i: int) -> None:
        out[i] = load_image(paths[i], size, mode)

    _for_each_index(fill, len(paths), workers, desc)
    return out


def _for_each_index(fill: Callable[[int], None], n: int, workers: int | None, desc: str) -> None:
    """fill(0) .. fill(n - 1) on `workers` threads (default_workers() when None) with a progress bar."""
    workers = workers or default_workers()
    with tqdm(total=n, desc=desc, unit="img", disable=None) as bar:
        if workers == 1:
            for i in range(n):
                fill(i)
                bar.update()
        else:
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                # map re-raises the first failure (a DataError naming the file) in this thread.
                for _ in pool.map(fill, range(n)):
                    bar.update()
            finally:
                # On failure, drop the queued images instead of decoding them all first.
                pool.shutdown(wait=True, cancel_futures=True)


def load_images_tolerant(paths: Sequence[str | os.PathLike], size: int, mode: str = "RGB",
                         workers: int | None = None, desc: str = "images") -> tuple[np.ndarray, list[str | None]]:
    """Like `load_images`, but an unreadable file does not stop the others.

    Returns the `N x size x size x C` array (zeros where a file failed) and, per path, None
    (read) or the reason it could not be read, so a caller can list every bad file at once.
    """
    channels = 1 if mode == "L" else 3
    out = np.zeros((len(paths), size, size, channels), np.uint8)
    reasons: list[str | None] = [None] * len(paths)

    def fill(i: int) -> None:
        try:
            out[i] = load_image(paths[i], size, mode)
        except DataError as e:
            cause = e.__cause__
            reasons[i] = f"{type(cause).__name__}: {cause}" if cause is not None else str(e)
        except (MemoryError, Exception) as e:  # noqa: BLE001 - a decoder bug on one file must not stop the job
            reasons[i] = f"{type(e).__name__}: {e}"

    _for_each_index(fill, len(paths), workers, desc)
    return out, reasons
