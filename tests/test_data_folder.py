"""User image folders: class sub-folders or flat, skipping non-images, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scl.data.errors import DataError
from scl.data.folder import read_folder
from scl.data.prepared import load_prepared
from scl.data.registry import prepare


def img(path: Path, size=(20, 10), color=(0, 128, 255), fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


def test_class_subfolders_give_sorted_labels(tmp_path):
    img(tmp_path / "zebra" / "1.png", color=(200, 0, 0))
    img(tmp_path / "cat" / "b.jpg")
    img(tmp_path / "cat" / "nested" / "a.PNG")  # nested images belong to their class folder
    (tmp_path / "cat" / "readme.txt").write_text("not an image")
    (tmp_path / "cat" / ".hidden.png").write_bytes(b"hidden, skipped")
    (tmp_path / "empty").mkdir()  # a folder without images is no class
    data = read_folder(tmp_path, image_size=16, workers=2)
    assert data.class_names == ["cat", "zebra"]
    assert data.labels.tolist() == [0, 0, 1]
    assert data.images.shape == (3, 16, 16, 3) and data.images.dtype == np.uint8
    assert tuple(data.images[2, 8, 8]) == (200, 0, 0)


def test_flat_folder_is_unlabelled_and_grayscale_option(tmp_path):
    for name in ("b.png", "a.bmp", "c.gif"):
        img(tmp_path / name, size=(12, 30))
    (tmp_path / "list.csv").write_text("x")
    data = read_folder(tmp_path, image_size=8, channels=1, workers=1)
    assert data.images.shape == (3, 8, 8, 1) and data.labels.tolist() == [-1, -1, -1]
    assert data.class_names == [] and not data.has_labels


def test_empty_and_missing_folder(tmp_path):
    (tmp_path / "only.txt").write_text("x")
    with pytest.raises(DataError, match="holds no images"):
        read_folder(tmp_path, 16)
    with pytest.raises(DataError, match="does not exist.*--root"):
        read_folder(tmp_path / "nope", 16)


def test_mixed_layout_is_an_error(tmp_path):
    img(tmp_path / "top.png")
    img(tmp_path / "cls" / "a.png")
    with pytest.raises(DataError, match="mixes images"):
        read_folder(tmp_path, 16)


def test_unreadable_image_named_and_no_output_written(tmp_path):
    src = tmp_path / "imgs"
    img(src / "good.png")
    (src / "bad.jpg").write_bytes(b"definitely not a jpeg")
    out = tmp_path / "prepared" / "folder.npz"
    with pytest.raises(DataError, match=r"bad\.jpg"):
        prepare("folder", out, root=src, image_size=16)
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_prepare_folder_roundtrip(tmp_path):
    img(tmp_path / "imgs" / "a" / "1.png")
    img(tmp_path / "imgs" / "b" / "2.png")
    out = prepare("folder", tmp_path / "f.npz", root=tmp_path / "imgs", image_size=24, channels=3)
    data = load_prepared(out)
    assert data.images.shape == (2, 24, 24, 3) and data.class_names == ["a", "b"]
