"""A user's own folder of images.

Two layouts:
  <root>/<class>/**/<image>   class sub-folders: labels are the index of the folder name in
                              sorted order, class names are the folder names;
  <root>/<image>              a flat folder: no ground truth, every label is -1.
Files whose extension is not an image's (`scl.data.images.IMAGE_EXTENSIONS`) and hidden
files/folders are skipped. Every image is converted to RGB (or grayscale) and resized to
image_size x image_size by `scl.data.images.RESIZE_METHOD`. EXIF orientation tags are not
applied (as with torchvision's ImageFolder), so pixels are taken as stored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scl.data.errors import DataError
from scl.data.images import IMAGE_EXTENSIONS, is_image_file, load_images
from scl.data.prepared import PreparedData

_ROOT_FIX = "Fix: set data.folder in params.yaml / pass --root to a folder of images (or of class sub-folders)."


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _images_under(folder: Path) -> list[Path]:
    """Image files anywhere below `folder`, skipping hidden folders, sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # prune hidden folders in place
        found += [p for p in (Path(dirpath) / f for f in filenames) if is_image_file(p)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def folder_files(root: str | os.PathLike | None) -> tuple[list[Path], np.ndarray, list[str]]:
    """Image paths, labels (-1 for a flat folder) and class names of a user folder."""
    if root is None:
        raise DataError(f"the folder dataset needs a folder of images, and none was given. {_ROOT_FIX}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist. {_ROOT_FIX}")
    top_images = sorted((p for p in root.iterdir() if is_image_file(p)), key=lambda p: p.name)
    class_dirs = sorted((p for p in root.iterdir() if p.is_dir() and _visible(p)), key=lambda p: p.name)
    per_class = {d.name: _images_under(d) for d in class_dirs}
    per_class = {name: files for name, files in per_class.items() if files}  # folders without images are no class
    if top_images and per_class:
        raise DataError(
            f"image folder {root} mixes images at its top level ({top_images[0].name}, ...) with class "
            f"sub-folders ({', '.join(per_class)}). Fix: move the top-level images into a class folder, "
            f"or use a folder with only images for unlabelled data."
        )
    if per_class:
        names = list(per_class)  # sorted folder names
        paths = [p for name in names for p in per_class[name]]
        labels = np.concatenate([np.full(len(per_class[n]), i, np.int64) for i, n in enumerate(names)])
        return paths, labels, names
    if top_images:
        return top_images, np.full(len(top_images), -1, np.int64), []
    raise DataError(
        f"image folder {root} holds no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, at its top level "
        f"or in class sub-folders). {_ROOT_FIX}"
    )


def has_class_folders(root: str | os.PathLike) -> bool:
    """Whether `root` has labels: a visible sub-folder with an image below it (as `folder_files`
    counts classes). The workflow asks this to decide whether a `folder` run is scored."""
    root = Path(root).expanduser()
    return any(_images_under(d) for d in root.iterdir() if d.is_dir() and _visible(d))


def read_folder(root: str | os.PathLike | None, image_size: int, channels: int = 3,
                workers: int | None = None) -> PreparedData:
    """A user folder as image_size x image_size images with `channels` (3 = RGB, 1 = grayscale)."""
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    paths, labels, names = folder_files(root)
    images = load_images(paths, image_size, "L" if channels == 1 else "RGB", workers, desc=Path(root).name)
    return PreparedData(images, labels, names)
