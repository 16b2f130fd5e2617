"""User image folders: class sub-folders or flat, skipping non-images, clear errors."""

from __future__ import annotations

import csv
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scl.data.errors import DataError
from scl.data.folder import (AUTO_SIZE_MAX, class_folders, has_class_folders, read_folder, read_folder_report,
                             skipped_report_path)
from scl.data.images import load_image
from scl.data.prepared import load_meta, load_prepared
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


def test_unreadable_files_are_listed_not_fatal(tmp_path):
    """Corrupt, truncated, empty and non-image files are skipped and every one is listed."""
    src = tmp_path / "imgs"
    img(src / "good.png")
    img(src / "good2.jpg", color=(10, 20, 30))
    (src / "bad.jpg").write_bytes(b"definitely not a jpeg")
    (src / "empty.png").write_bytes(b"")
    full = (src / "good.png").read_bytes()
    (src / "truncated.png").write_bytes(full[: len(full) // 2])
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "prepared" / "folder.npz"
    prepare("folder", out, root=src, image_size=16)
    data = load_prepared(out)
    assert data.paths == ["good.png", "good2.jpg"] and len(data.images) == 2
    report = skipped_report_path(out)
    assert report == tmp_path / "prepared" / "folder.skipped.csv"
    rows = list(csv.DictReader(report.open()))
    reasons = {Path(r["path"]).name: r["reason"] for r in rows}
    assert set(reasons) == {"bad.jpg", "empty.png", "truncated.png", "notes.txt"}
    assert reasons["notes.txt"].startswith("not an image file")
    assert all(reasons[n].startswith("cannot be decoded") for n in ("bad.jpg", "empty.png", "truncated.png"))
    assert load_meta(out)["source"]["skipped"] == 4


def test_prepare_cli_counts_skipped_files(tmp_path, capsys):
    from scl.cli import main

    src = tmp_path / "imgs"
    for c in ("a", "b"):
        img(src / c / "1.png")
        img(src / c / "2.png")
    (src / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "f.npz"
    assert main(["prepare", "folder", "--root", str(src), "--out", str(out), "--image-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "1 file skipped" in printed and "f.skipped.csv" in printed


def test_clean_folder_writes_an_empty_report(tmp_path):
    img(tmp_path / "imgs" / "a.png")
    img(tmp_path / "imgs" / "b.png")
    out = prepare("folder", tmp_path / "f.npz", root=tmp_path / "imgs", image_size=8)
    assert skipped_report_path(out).read_text() == "path,reason\n"  # never a stale list from an earlier prepare


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    """A real 16-bit grayscale PNG: 0, mid-grey and full scale become 0, 128, 255 (Pillow's
    own convert would clip everything above 255 to white)."""
    a = np.array([[0, 128 * 257, 65535, 100 * 257]] * 4, np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode == "I;16"
    got = load_image(path, 4, "L")[..., 0]
    assert got[0].tolist() == [0, 128, 255, 100]
    assert load_image(path, 4, "RGB")[0, 1].tolist() == [128, 128, 128]


def _png_rgb16(path: Path, rgb: np.ndarray) -> None:
    """A 48-bit RGB PNG (Pillow cannot write one): signature, IHDR, IDAT, IEND by hand."""
    h, w, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_sixteen_bit_rgb_png(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 128 * 257, 0
    _png_rgb16(tmp_path / "c48.png", rgb)
    assert load_image(tmp_path / "c48.png", 4, "RGB")[2, 2].tolist() == [255, 128, 0]


def test_float_tiff_is_scaled_not_black(tmp_path):
    unit = np.array([[0.0, 0.5, 1.0, 0.25]] * 4, np.float32)  # [0, 1] -> x 255
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    assert Image.open(tmp_path / "unit.tif").mode == "F"
    assert load_image(tmp_path / "unit.tif", 4, "L")[0, :, 0].tolist() == [0, 128, 255, 64]
    wide = np.array([[-10.0, 0.0, 30.0, 10.0]] * 4, np.float32)  # another range: stretched to 0..255
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    assert load_image(tmp_path / "wide.tif", 4, "L")[0, :, 0].tolist() == [0, 64, 255, 128]
    nan = unit.copy()
    nan[1, 1] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    with pytest.raises(DataError, match="NaN"):
        load_image(tmp_path / "nan.tif", 4, "L")


def test_alpha_and_palette_images_composite_over_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent black
    rgba.putpixel((1, 1), (255, 0, 0, 255))
    rgba.save(tmp_path / "a.png")
    got = load_image(tmp_path / "a.png", 4, "RGB")
    assert got[0, 0].tolist() == [255, 255, 255] and got[1, 1].tolist() == [255, 0, 0]
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((2, 2), 1)
    pal.save(tmp_path / "p.png", transparency=0)
    got = load_image(tmp_path / "p.png", 4, "RGB")
    assert got[0, 0].tolist() == [255, 255, 255] and got[2, 2].tolist() == [0, 255, 0]
    la = Image.new("LA", (4, 4), (0, 0))
    la.save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png", 4, "L")[0, 0, 0] == 255


def test_mixed_sizes_and_modes_in_one_folder(tmp_path):
    img(tmp_path / "rgb.png", size=(40, 20))
    Image.new("L", (10, 10), 77).save(tmp_path / "gray.png")
    Image.new("CMYK", (12, 16), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("1", (9, 9), 1).save(tmp_path / "bw.bmp")
    data = read_folder(tmp_path, image_size=8)
    assert data.images.shape == (4, 8, 8, 3)
    assert data.images[2, 4, 4].tolist() == [77, 77, 77]  # sorted: bw, cmyk, gray, rgb


def test_one_class_folder_is_refused_before_training(tmp_path):
    """One class would score ACC = NMI = ARI = 1 whatever the clustering: refused at prepare."""
    img(tmp_path / "only" / "a.png")
    img(tmp_path / "only" / "b.png")
    (tmp_path / "no-images").mkdir()
    with pytest.raises(DataError, match="one class sub-folder.*ACC = NMI = ARI = 1"):
        prepare("folder", tmp_path / "f.npz", root=tmp_path, image_size=8)
    assert not (tmp_path / "f.npz").exists()


def test_a_class_whose_files_all_fail_is_no_class(tmp_path):
    img(tmp_path / "a" / "1.png")
    img(tmp_path / "c" / "1.png")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"broken")
    got = read_folder_report(tmp_path, 8)
    assert got.data.class_names == ["a", "c"] and got.data.labels.tolist() == [0, 1]
    assert any("without a readable image" in reason for _, reason in got.skipped)


def test_single_image_and_only_broken_images(tmp_path):
    img(tmp_path / "one" / "a.png")
    with pytest.raises(DataError, match="single readable image"):
        read_folder(tmp_path / "one", 8)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="no readable image.*x.jpg"):
        read_folder(tmp_path / "broken", 8)


def test_one_imageless_subfolder_reader_and_workflow_agree(tmp_path):
    """The folder that failed the baseline job after prepare: images at the top plus one
    sub-folder without images. One rule (class_folders) for the reader and the workflow."""
    img(tmp_path / "a.png")
    img(tmp_path / "b.png")
    (tmp_path / "thumbs").mkdir()
    (tmp_path / "thumbs" / "index.txt").write_text("x")
    assert class_folders(tmp_path) == [] and not has_class_folders(tmp_path)
    data = read_folder(tmp_path, 8)
    assert not data.has_labels and len(data) == 2
    # the workflow plans with the reader's rule (scl/experiments.py's default has_labels)
    from scl.config import load_params
    from scl.experiments import ExperimentSet

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    params["data"]["folder"] = str(tmp_path)
    plan = ExperimentSet.from_params(params, "folder")
    assert plan.scored == [] and plan.baselines() == []


DEEP_LEVELS = 1100


def _remove_deep_tree(top: Path, levels: int) -> None:
    """Remove top/d/d/.../d (`levels` deep) bottom-up, one folder at a time: shutil.rmtree
    and pytest's own cleanup of old basetemp folders recurse once per level and end in a
    RecursionError on this tree, which would break every later pytest run."""
    chain = [top]
    for _ in range(levels):
        chain.append(chain[-1] / "d")
    for folder in reversed(chain):
        if not folder.exists():
            continue
        for entry in folder.iterdir():  # the files of this level; its sub-folder is gone already
            entry.unlink()
        folder.rmdir()


def test_deep_folder_tree(tmp_path):
    """1,100 nested folders (os.walk recursed, and ended in a RecursionError)."""
    top = tmp_path / "a"
    try:
        top.mkdir()
        deep = top
        for _ in range(DEEP_LEVELS):  # one level at a time: Path.mkdir(parents=True) itself recurses
            deep = deep / "d"
            os.mkdir(deep)
        img(deep / "deep.png")
        img(top / "top.png")
        img(tmp_path / "b" / "x.png")
        data = read_folder_report(tmp_path, 8)
        assert data.data.class_names == ["a", "b"] and data.data.labels.tolist() == [0, 0, 1]
        assert data.paths[0].endswith("/deep.png") and data.paths[0].count("/") == DEEP_LEVELS + 1
    finally:
        _remove_deep_tree(top, DEEP_LEVELS)
    assert not top.exists()


def test_symlink_loop_ends(tmp_path):
    img(tmp_path / "a" / "x.png")
    img(tmp_path / "b" / "y.png")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    data = read_folder(tmp_path, 8)
    assert data.labels.tolist() == [0, 1]


def test_image_size_from_the_data(tmp_path):
    for i, side in enumerate((32, 32, 40)):
        img(tmp_path / f"{i}.png", size=(side, side + 5))
    got = read_folder_report(tmp_path, None)
    assert got.image_size == 32 and got.data.images.shape[1:] == (32, 32, 3)
    assert "median shorter side" in got.size_reason
    img(tmp_path / "big" / "x.png", size=(500, 400))
    img(tmp_path / "big" / "y.png", size=(500, 400))
    assert read_folder_report(tmp_path / "big", None).image_size == AUTO_SIZE_MAX


def test_prepare_folder_roundtrip(tmp_path):
    img(tmp_path / "imgs" / "a" / "1.png")
    img(tmp_path / "imgs" / "b" / "2.png")
    out = prepare("folder", tmp_path / "f.npz", root=tmp_path / "imgs", image_size=24, channels=3)
    data = load_prepared(out)
    assert data.images.shape == (2, 24, 24, 3) and data.class_names == ["a", "b"]
