"""A user's own folder of images.

Two layouts:
  <root>/<class>/**/<image>   class sub-folders: labels are the index of the folder name in
                              sorted order, class names are the folder names;
  <root>/<image>              a flat folder: no ground truth, every label is -1.
Which sub-folders are classes is decided in ONE place, `class_folders(root)`: the visible
sub-folders with at least one image file (by extension) anywhere below them. The reader,
`scl prepare`, and the workflow (which asks `has_class_folders` whether a run is scored)
all use it, so they cannot disagree about a folder with, say, one image-less sub-folder.

Nothing on disk stops a long job halfway: files that are not images (by extension) and
image files that cannot be decoded are *skipped* and listed, with the reason, in a report
(`skipped_report_path(out)`, a CSV beside the prepared .npz). Hidden files and folders
(".name") are ignored silently. Pixel values are scaled to 8 bits, not clipped (16-bit,
float, alpha: see scl/data/images.py). EXIF orientation tags are not applied (as with
torchvision's ImageFolder), so pixels are taken as stored.

The tree is walked without recursion and without following a symlinked folder twice, so a
folder tree thousands of levels deep, or a symlink loop, is read (or reported) rather than
ending in a RecursionError.

Before anything is written, what clustering cannot use is a clear DataError: no images, a
single image, or class sub-folders that leave fewer than two classes with readable images
(one class would score ACC = NMI = ARI = 1 whatever the model does).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scl.data.errors import DataError
from scl.data.images import IMAGE_EXTENSIONS, image_side, load_images_tolerant
from scl.data.prepared import PreparedData

_ROOT_FIX = "Fix: set data.folder in params.yaml / pass --root to a folder of images (or of class sub-folders)."

#: image_size chosen from the data is the median shorter side of (a sample of) the images,
#: capped here: a CPU trains 64 px images in reasonable time; set datasets.folder.image_size
#: (or --image-size) for larger ones.
AUTO_SIZE_MAX = 64
AUTO_SIZE_MIN = 8
AUTO_SIZE_SAMPLE = 2000  # headers read to choose the size (a deterministic sample)


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


@dataclass
class Listing:
    """What a folder holds: image files (by extension), and everything skipped with why."""

    images: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def walk_images(folder: Path, listing: Listing, stop_at_first: bool = False) -> Listing:
    """Every visible file below `folder`, iteratively (no recursion limit), sorted by path.

    A symlinked folder is followed once (its device/inode is remembered, so loops end); a
    folder that cannot be listed (permissions, a path too long for the OS) is skipped and
    listed. With `stop_at_first`, returns as soon as one image file is found.
    """
    seen: set[tuple[int, int]] = set()
    stack = [folder]
    found: list[Path] = []
    while stack:
        current = stack.pop()
        try:
            st = current.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            listing.skipped.append((str(current), f"folder cannot be read ({type(e).__name__}: {e.strerror or e})"))
            continue
        subdirs = []
        for entry in entries:
            if not _visible(entry.name):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
                is_file = not is_dir and entry.is_file()
            except OSError as e:
                listing.skipped.append((entry.path, f"cannot be read ({type(e).__name__}: {e.strerror or e})"))
                continue
            if is_dir:
                subdirs.append(Path(entry.path))
            elif is_file and _is_image_name(entry.name):
                found.append(Path(entry.path))
                if stop_at_first:
                    listing.images += found
                    return listing
            elif is_file:
                listing.skipped.append((entry.path, f"not an image file (extension {Path(entry.name).suffix or 'none'!r})"))
            else:
                listing.skipped.append((entry.path, "not a regular file (broken link, device, ...)"))
        stack.extend(reversed(subdirs))
    listing.images += sorted(found, key=lambda p: p.relative_to(folder).as_posix())
    return listing


def _check_root(root: str | os.PathLike | None) -> Path:
    if root is None:
        raise DataError(f"the folder dataset needs a folder of images, and none was given. {_ROOT_FIX}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist. {_ROOT_FIX}")
    return root


def _subfolders(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if _visible(p.name) and p.is_dir()), key=lambda p: p.name)


def class_folders(root: str | os.PathLike) -> list[Path]:
    """THE rule for which sub-folders of `root` are classes (sorted by name): the visible
    sub-folders with at least one image file anywhere below them. Empty list: a flat folder."""
    root = _check_root(root)
    return [d for d in _subfolders(root) if walk_images(d, Listing(), stop_at_first=True).images]


def has_class_folders(root: str | os.PathLike) -> bool:
    """Whether `root` has labels (class sub-folders, per `class_folders`)."""
    return bool(class_folders(root))


@dataclass
class FolderFiles:
    paths: list[Path]
    labels: np.ndarray  # int64, -1 for a flat folder
    class_names: list[str]
    skipped: list[tuple[str, str]]


def folder_files(root: str | os.PathLike | None) -> FolderFiles:
    """Image paths, labels (-1 for a flat folder), class names and skipped files of a user folder."""
    root = _check_root(root)
    classes = class_folders(root)
    top = Listing()
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if not _visible(entry.name) or entry.is_dir():
            continue
        if entry.is_file() and _is_image_name(entry.name):
            top.images.append(entry)
        else:
            top.skipped.append((str(entry), "not an image file" if entry.is_file() else "not a regular file"))
    if top.images and classes:
        raise DataError(
            f"image folder {root} mixes images at its top level ({top.images[0].name}, ...) with class "
            f"sub-folders ({', '.join(d.name for d in classes)}). Fix: move the top-level images into a class "
            f"folder, or use a folder with only images for unlabelled data."
        )
    skipped = list(top.skipped)
    if classes:
        paths, labels = [], []
        for i, d in enumerate(classes):
            listing = walk_images(d, Listing())
            paths += listing.images
            labels += [i] * len(listing.images)
            skipped += listing.skipped
        empty = [d for d in _subfolders(root) if d not in classes]
        skipped += [(str(d), "sub-folder without image files: not a class") for d in empty]
        return FolderFiles(paths, np.asarray(labels, np.int64), [d.name for d in classes], skipped)
    for d in _subfolders(root):  # flat: whatever sits in sub-folders is not read, say so
        skipped.append((str(d), "sub-folder without image files: not a class"))
    if top.images:
        return FolderFiles(top.images, np.full(len(top.images), -1, np.int64), [], skipped)
    raise DataError(
        f"image folder {root} holds no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, at its top level "
        f"or in class sub-folders). {_ROOT_FIX}"
    )


def auto_image_size(paths: list[Path]) -> tuple[int, str]:
    """The side to prepare at when none is given: the median shorter side of a sample of the
    images (read from their headers), within [AUTO_SIZE_MIN, AUTO_SIZE_MAX]. Returns it and why."""
    rng = np.random.default_rng(0)
    sample = paths if len(paths) <= AUTO_SIZE_SAMPLE else [paths[i] for i in
                                                           sorted(rng.choice(len(paths), AUTO_SIZE_SAMPLE, replace=False))]
    sides = [s for s in (image_side(p) for p in sample) if s]
    if not sides:
        return AUTO_SIZE_MAX, "no image header could be read"
    median = int(np.median(sides))
    size = int(min(max(median, AUTO_SIZE_MIN), AUTO_SIZE_MAX))
    why = f"median shorter side of {len(sides)} images is {median}"
    if size != median:
        why += f", {'capped' if median > size else 'raised'} to {size}"
    return size, why


@dataclass
class FolderData:
    data: PreparedData
    paths: list[str]  # of the kept images, relative to root (posix)
    skipped: list[tuple[str, str]]  # (path, reason) of everything not used
    image_size: int
    size_reason: str  # "given" or how it was chosen


def read_folder_report(root: str | os.PathLike | None, image_size: int | None = None, channels: int = 3,
                       workers: int | None = None) -> FolderData:
    """A user folder as image_size x image_size images with `channels` (3 = RGB, 1 = grayscale),
    with every file that could not be used listed. image_size None: chosen from the images."""
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    root = _check_root(root)
    files = folder_files(root)
    if image_size is None:
        image_size, why = auto_image_size(files.paths)
    else:
        why = "given"
    images, reasons = load_images_tolerant(files.paths, image_size, "L" if channels == 1 else "RGB", workers,
                                           desc=root.name)
    ok = np.array([r is None for r in reasons], bool)
    skipped = files.skipped + [(str(p), f"cannot be decoded ({r})") for p, r in zip(files.paths, reasons) if r]
    images, labels = images[ok], files.labels[ok]
    paths = [p.relative_to(root).as_posix() for p, good in zip(files.paths, ok) if good]
    names = files.class_names
    if names:  # a class whose every file failed to decode is no class: renumber the rest
        present = np.unique(labels)
        lost = [names[i] for i in range(len(names)) if i not in set(present.tolist())]
        if lost:
            skipped += [(str(root / n), "class sub-folder without a readable image: not a class") for n in lost]
            labels = np.searchsorted(present, labels).astype(np.int64)
            names = [names[i] for i in present]
    _check_usable(root, len(images), names, skipped)
    return FolderData(PreparedData(images, labels, names), paths, skipped, image_size, why)


def _check_usable(root: Path, n: int, names: list[str], skipped: list[tuple[str, str]]) -> None:
    note = f" ({len(skipped)} files skipped, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
    if n == 0:
        raise DataError(f"image folder {root} has no readable image{note}. {_ROOT_FIX}")
    if n == 1:
        raise DataError(f"image folder {root} has a single readable image{note}; clustering needs many. {_ROOT_FIX}")
    if len(names) == 1:
        raise DataError(
            f"image folder {root} has one class sub-folder with images ({names[0]!r}){note}: every image would be "
            f"in the same class, and any clustering would score ACC = NMI = ARI = 1. Fix: add a sub-folder per "
            f"class, or put the images directly in {root} to cluster them without labels."
        )


def read_folder(root: str | os.PathLike | None, image_size: int | None, channels: int = 3,
                workers: int | None = None) -> PreparedData:
    """The images of a user folder (see `read_folder_report` for what was skipped)."""
    return read_folder_report(root, image_size, channels, workers).data


def skipped_report_path(prepared: str | os.PathLike) -> Path:
    """The CSV listing the skipped files, beside the prepared .npz (folder.npz -> folder.skipped.csv)."""
    p = Path(prepared)
    return p.with_name(p.name.removesuffix(".npz") + ".skipped.csv")


def skipped_csv(skipped: list[tuple[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "reason"])
    w.writerows(skipped)
    return buf.getvalue()


def write_png_folder(data: PreparedData, root: str | os.PathLike, per_class: int | None = None, seed: int = 0) -> Path:
    """Write a prepared (labelled) dataset as PNG files in class sub-folders: the layout a user
    gives `scl prepare folder` (for trying the folder tool on a benchmark such as Fashion-MNIST).

    Class folder names are the class names with "/" replaced by "_"; files are <index>.png
    (the image's index in `data`). per_class: at most that many images per class, a
    deterministic random choice (seed).
    """
    from PIL import Image

    if not data.has_labels:
        raise DataError("write_png_folder needs labelled data (class sub-folders are the labels)")
    root = Path(root)
    rng = np.random.default_rng(seed)
    for c, name in enumerate(data.class_names):
        idx = np.flatnonzero(data.labels == c)
        if per_class is not None and len(idx) > per_class:
            idx = np.sort(rng.choice(idx, per_class, replace=False))
        folder = root / name.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for i in idx:
            im = data.images[i]
            Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(folder / f"{i:05d}.png")
    return root
