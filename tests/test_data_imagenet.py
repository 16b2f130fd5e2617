"""ImageNet-10 / -Dogs from a train folder layout, Tiny-ImageNet from its zip layout, the resize rule."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scl.data import registry
from scl.data.download import Resource
from scl.data.errors import DataError
from scl.data.imagenet import read_imagenet_subset, read_tiny_imagenet
from scl.data.images import load_image, resize_shorter_center_crop
from scl.data.prepared import load_prepared
from scl.data.reference import imagenet_subset

RED, BLUE = (255, 0, 0), (0, 0, 255)




def solid(path: Path, size: tuple[int, int], color, mode: str = "RGB", fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)


def make_imagenet(root: Path, subset: str, per_class: int = 2) -> list[str]:
    wnids = [w for w, _ in imagenet_subset(subset)]
    for label, wnid in enumerate(wnids):
        for i in range(per_class):
            # The value encodes the label, to check labels follow the reference order.
            solid(root / wnid / f"{wnid}_{i}.JPEG", (40 + 7 * i, 30), (10 * label, 100, 200), fmt="JPEG")
    return wnids


def test_resize_rule_shorter_side_then_center_crop():
    img = Image.new("RGB", (100, 50), RED)
    img.paste(Image.new("RGB", (50, 50), BLUE), (50, 0))  # left half red, right half blue
    out = np.asarray(resize_shorter_center_crop(img, 96))
    assert out.shape == (96, 96, 3)
    assert tuple(out[48, 5]) == RED and tuple(out[48, 90]) == BLUE
    tall = np.asarray(resize_shorter_center_crop(Image.new("RGB", (20, 300), RED), 8))
    assert tall.shape == (8, 8, 3) and (tall == np.array(RED, np.uint8)).all()
    exact = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(resize_shorter_center_crop(exact, 16)), np.asarray(exact))  # untouched


def test_imagenet10_from_train_folder(tmp_path):
    wnids = make_imagenet(tmp_path / "train", "imagenet10")
    (tmp_path / "train" / wnids[0] / "notes.txt").write_text("skipped: not an image")
    with pytest.warns(UserWarning, match="expected 1300 images per class"):
        data = read_imagenet_subset(tmp_path / "train", "imagenet10", image_size=96, workers=2)
    assert data.images.shape == (20, 96, 96, 3) and data.images.dtype == np.uint8
    assert data.labels.tolist() == [i // 2 for i in range(20)]
    assert data.class_names[0] == "king penguin" and data.class_names[-1] == "orange"
    red = data.images[:, 48, 48, 0].astype(int)
    assert np.all(np.abs(red - 10 * data.labels) <= 3)  # JPEG rounding


def test_imagenet_dogs_needs_its_own_classes(tmp_path):
    make_imagenet(tmp_path / "train", "imagenet10")  # shares only the Maltese dog folder with the dogs subset
    with pytest.raises(DataError) as e:
        read_imagenet_subset(tmp_path / "train", "imagenet-dogs")
    msg = str(e.value)
    assert str(tmp_path / "train" / "n02086646") in msg and "--root" in msg and "data.imagenet_root" in msg


def test_missing_imagenet_root(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*data.imagenet_root in params.yaml / pass --root"):
        read_imagenet_subset(tmp_path / "nowhere", "imagenet10")
    with pytest.raises(DataError, match="was not given"):
        registry.prepare("imagenet10", tmp_path / "o.npz")
    assert not (tmp_path / "o.npz").exists()


def test_hint_when_root_is_the_parent_of_train(tmp_path):
    make_imagenet(tmp_path / "ILSVRC" / "train", "imagenet10", per_class=1)
    with pytest.raises(DataError, match="did you mean that"):
        read_imagenet_subset(tmp_path / "ILSVRC", "imagenet10")


def test_unreadable_image_is_named(tmp_path):
    wnids = make_imagenet(tmp_path / "train", "imagenet10", per_class=1)
    bad = tmp_path / "train" / wnids[3] / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.warns(UserWarning), pytest.raises(DataError) as e:
        registry.prepare("imagenet10", tmp_path / "out" / "i10.npz", root=tmp_path / "train", workers=2)
    assert str(bad) in str(e.value) and "delete or replace" in str(e.value)
    assert not (tmp_path / "out" / "i10.npz").exists()


def test_truncated_jpeg_is_an_error(tmp_path):
    path = tmp_path / "a.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(DataError, match="a.jpg"):
        load_image(path, 32)


def make_tiny_zip(path: Path, wnids: list[str], per_class: int = 2) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "".join(w + "\n" for w in wnids))
        z.writestr("tiny-imagenet-200/words.txt",
                   "".join(f"{w}\tname {i}, synonym\n" for i, w in enumerate(wnids)) + "n99999999\tunused\n")
        for label, wnid in enumerate(wnids):
            z.writestr(f"tiny-imagenet-200/train/{wnid}/{wnid}_boxes.txt", "")
            for i in range(per_class):
                mode, color = ("L", 30 * label) if i == 1 else ("RGB", (30 * label, 0, 0))  # some are grayscale
                img = Image.new(mode, (64, 64), color)
                buf = io.BytesIO()
                img.save(buf, format="JPEG")
                z.writestr(f"tiny-imagenet-200/train/{wnid}/images/{wnid}_{i}.JPEG", buf.getvalue())
        z.writestr("tiny-imagenet-200/val/val_annotations.txt", "")


def test_prepare_tiny_imagenet_from_zip(tmp_path, monkeypatch):
    wnids = ["n01443537", "n01629819", "n01641577"]
    archive = tmp_path / "mirror" / "tiny-imagenet-200.zip"
    archive.parent.mkdir()
    make_tiny_zip(archive, wnids)
    res = Resource("tiny-imagenet-200.zip", (archive.as_uri(),), hashlib.md5(archive.read_bytes()).hexdigest(),
                   "tiny-imagenet-200")
    spec = replace(registry.DATASETS["tiny-imagenet"], resources=(res,))
    monkeypatch.setitem(registry.DATASETS, "tiny-imagenet", spec)
    with pytest.warns(UserWarning, match="full dataset has 100000"):
        out = registry.prepare("tiny-imagenet", tmp_path / "t.npz", raw_dir=tmp_path / "raw", workers=1)
    data = load_prepared(out)
    assert data.images.shape == (6, 64, 64, 3)
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.class_names == ["name 0", "name 1", "name 2"]
    assert (data.images[3] == data.images[3, :, :, :1]).all()  # grayscale JPEG -> equal RGB channels
    # Resizable, and an extracted folder can be given directly.
    small = read_tiny_imagenet(tmp_path / "raw" / "tiny-imagenet-200", image_size=32, workers=1)
    assert small.images.shape == (6, 32, 32, 3)


def test_tiny_imagenet_missing_class_folder(tmp_path):
    folder = tmp_path / "tiny-imagenet-200"
    folder.mkdir()
    (folder / "wnids.txt").write_text("n01443537\n")
    with pytest.raises(DataError, match=r"train/n01443537/images does not exist"):
        read_tiny_imagenet(folder)
