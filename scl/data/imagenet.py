"""ImageNet-10, ImageNet-Dogs (from a user's ImageNet train folder) and Tiny-ImageNet.

ImageNet-10 / ImageNet-Dogs (DAC's subsets, used by IIC, PICA and SCL): all train images
of the classes listed in scl/reference/imagenet_subsets.csv, read from the standard
ILSVRC-2012 train layout ``<root>/<wnid>/*.JPEG``: 1,300 images per class, so 13,000
(10 classes) and 19,500 (15 classes). ImageNet cannot be downloaded automatically (its
licence needs a login); the user points ``--root`` / ``data.imagenet_root`` at it.
Every image is resized to 96 x 96 by `scl.data.images.RESIZE_METHOD` (shorter side to
96, PIL bilinear with antialiasing, centre crop).

Tiny-ImageNet (``tiny-imagenet-200.zip``): ``tiny-imagenet-200/train/<wnid>/images/*.JPEG``
for the 200 wnids of ``wnids.txt``: 100,000 64x64 train images; class names are the first
synonym of each wnid in ``words.txt``. Labels follow the order of wnids.txt.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from scl.data.errors import DataError
from scl.data.images import is_image_file, load_images
from scl.data.prepared import PreparedData
from scl.data.reference import imagenet_subset

IMAGENET_PER_CLASS = 1300
TINY_FOLDER = "tiny-imagenet-200"
_ROOT_FIX = ("Fix: set data.imagenet_root in params.yaml / pass --root to the ImageNet train folder "
             "(<root>/<wnid>/*.JPEG).")


def _image_files(folder: Path) -> list[Path]:
    # Sorted by name: a fixed image order makes the prepared file reproducible.
    return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)


def imagenet_subset_files(root: str | os.PathLike | None, subset: str) -> tuple[list[Path], np.ndarray, list[str]]:
    """Image paths, labels and class names of an ImageNet subset; checks the folders exist."""
    if root is None:
        raise DataError(f"{subset} is built from your ImageNet (ILSVRC-2012) train folder, which was not given. "
                        f"{_ROOT_FIX}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"ImageNet train folder {root} does not exist. {_ROOT_FIX}")
    classes = imagenet_subset(subset)
    missing = [wnid for wnid, _ in classes if not (root / wnid).is_dir()]
    if missing:
        hint = f" ({root / 'train'} exists: did you mean that?)" if (root / "train").is_dir() else ""
        raise DataError(
            f"ImageNet train folder {root} lacks the class folder(s) {', '.join(str(root / w) for w in missing)} "
            f"of {subset}{hint}. {_ROOT_FIX}"
        )
    paths: list[Path] = []
    labels: list[int] = []
    off: list[str] = []
    for label, (wnid, _) in enumerate(classes):
        files = _image_files(root / wnid)
        if not files:
            raise DataError(f"class folder {root / wnid} holds no images. {_ROOT_FIX}")
        if len(files) != IMAGENET_PER_CLASS:
            off.append(f"{wnid}: {len(files)}")
        paths += files
        labels += [label] * len(files)
    if off:
        # Not fatal (a partial ImageNet still clusters), but the numbers are then not the paper's.
        warnings.warn(f"{subset}: expected {IMAGENET_PER_CLASS} images per class in {root}, found {'; '.join(off)}",
                      stacklevel=2)
    return paths, np.asarray(labels, np.int64), [name for _, name in classes]


def read_imagenet_subset(root: str | os.PathLike | None, subset: str, image_size: int = 96,
                         workers: int | None = None) -> PreparedData:
    """ImageNet-10 ("imagenet10") or ImageNet-Dogs ("imagenet-dogs") at image_size x image_size."""
    paths, labels, names = imagenet_subset_files(root, subset)
    images = load_images(paths, image_size, "RGB", workers, desc=subset)
    return PreparedData(images, labels, names)


def _tiny_fix(folder: Path) -> str:
    return (f"Fix: delete {folder} and rerun `scl prepare tiny-imagenet` to extract tiny-imagenet-200.zip again, "
            f"or pass --root to a complete tiny-imagenet-200 folder.")


def read_tiny_imagenet(folder: str | os.PathLike, image_size: int = 64, workers: int | None = None) -> PreparedData:
    """Tiny-ImageNet's train split (100,000 images, 200 classes) from an extracted tiny-imagenet-200 folder."""
    folder = Path(folder)
    wnids_path = folder / "wnids.txt"
    if not wnids_path.is_file():
        raise DataError(f"Tiny-ImageNet file {wnids_path} does not exist. {_tiny_fix(folder)}")
    wnids = [w.strip() for w in wnids_path.read_text().splitlines() if w.strip()]
    words: dict[str, str] = {}
    words_path = folder / "words.txt"
    if words_path.is_file():  # "<wnid>\t<synonym>, <synonym>, ..."
        for line in words_path.read_text(encoding="utf-8").splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid.strip()] = text.split(",")[0].strip()
    paths: list[Path] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        class_dir = folder / "train" / wnid / "images"
        if not class_dir.is_dir():
            raise DataError(f"Tiny-ImageNet class folder {class_dir} does not exist. {_tiny_fix(folder)}")
        files = _image_files(class_dir)
        if not files:
            raise DataError(f"Tiny-ImageNet class folder {class_dir} holds no images. {_tiny_fix(folder)}")
        paths += files
        labels += [label] * len(files)
    images = load_images(paths, image_size, "RGB", workers, desc="tiny-imagenet")  # some JPEGs are grayscale
    return PreparedData(images, np.asarray(labels, np.int64), [words.get(w, w) for w in wnids])
