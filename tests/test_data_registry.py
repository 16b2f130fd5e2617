"""The dataset table, `prepare` options, atomic output, and the `scl prepare` command."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import scl.data
import scl.data.download as dl
import scl.io
from scl.data import registry
from scl.cli import build_parser, run_prepare
from scl.data import DATASET_NAMES
from scl.data.errors import DataError
from scl.data.prepared import load_prepared

NAMES = ["digits", "fashion", "cifar10", "cifar100-20", "stl10", "imagenet10", "imagenet-dogs", "tiny-imagenet",
         "folder"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(url, *a, **k):
        raise AssertionError(f"test tried to reach the network: {url}")

    monkeypatch.setattr(dl, "urlopen", refuse)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["prepare", *argv])


def test_registry_names_and_specs():
    assert list(registry.DATASETS) == NAMES == list(DATASET_NAMES)
    sizes = {n: s.image_size for n, s in registry.DATASETS.items()}
    assert sizes == {"digits": 8, "fashion": 28, "cifar10": 32, "cifar100-20": 32, "stl10": 96, "imagenet10": 96,
                     "imagenet-dogs": 96, "tiny-imagenet": 64, "folder": 64}
    md5s = {r.filename: r.md5 for s in registry.DATASETS.values() for r in s.resources}
    assert md5s["cifar-10-python.tar.gz"] == "c58f30108f718f92721af3b95e74349a"
    assert md5s["cifar-100-python.tar.gz"] == "eb9058c3a382ffc7106e4002c42a8d85"
    assert md5s["stl10_binary.tar.gz"] == "91f7769df0f17e558f3565bffb0c7dfb"
    assert md5s["tiny-imagenet-200.zip"] == "90528d7ca1a48142e341f4ef8d21d0de"
    assert md5s["fashion-mnist/train-images-idx3-ubyte.gz"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"


def test_unknown_name_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError) as e:
        registry.prepare("mnist", tmp_path / "x.npz")
    assert isinstance(e.value, scl.data.DataError)
    assert all(n in str(e.value) for n in NAMES)
    with pytest.raises(ValueError, match="cifar100-20"):
        registry.download("cifar100", tmp_path)


def test_option_validation(tmp_path):
    with pytest.raises(DataError, match="fixed image size of 32"):
        registry.prepare("cifar10", tmp_path / "x.npz", image_size=64)
    with pytest.raises(DataError, match="--root applies only to"):
        registry.prepare("cifar10", tmp_path / "x.npz", root=tmp_path)
    with pytest.raises(DataError, match="unknown option"):
        registry.prepare("digits", tmp_path / "x.npz", colour=True)
    with pytest.raises(DataError, match="cannot be downloaded automatically"):
        registry.download("imagenet10", tmp_path)
    assert registry.download("digits", tmp_path) == []


def test_no_download_error_names_file(tmp_path):
    with pytest.raises(DataError) as e:
        registry.prepare("stl10", tmp_path / "s.npz", raw_dir=tmp_path / "raw", download=False)
    assert str(tmp_path / "raw" / "stl10_binary.tar.gz") in str(e.value) and "--no-download" in str(e.value)


def test_atomic_write_leaves_no_file_on_failure(tmp_path, monkeypatch):
    """A crash while the .npz is being written leaves neither the final name nor a temp file."""
    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(scl.io.np, "savez_compressed", crash)
    out = tmp_path / "prepared" / "digits.npz"
    with pytest.raises(OSError, match="disk full"):
        registry.prepare("digits", out)
    assert list(out.parent.iterdir()) == []


def test_atomic_write_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    out = registry.prepare("digits", tmp_path / "digits.npz")
    before = out.read_bytes()
    monkeypatch.setattr(scl.io.np, "savez_compressed", lambda f, **a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        registry.prepare("digits", out)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["digits.npz"]


def test_cli_prepare_success_and_error(tmp_path, capsys):
    folder = tmp_path / "imgs"
    for i in range(3):
        (folder / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (10, 10), (i * 50, 0, 0)).save(folder / f"c{i % 2}" / f"{i}.png")
    args = parse("folder", "--root", str(folder), "--out", str(tmp_path / "f.npz"), "--image-size", "12")
    assert args.run is run_prepare
    assert run_prepare(args) == 0
    assert "3 images of 12x12x3, 2 classes" in capsys.readouterr().out
    assert load_prepared(tmp_path / "f.npz").labels.tolist() == [0, 0, 1]

    args = parse("imagenet10", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "i.npz"))
    assert run_prepare(args) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "missing") in err and "--root" in err and not (tmp_path / "i.npz").exists()

    args = parse("cifar10", "--raw-dir", str(tmp_path / "raw"), "--no-download", "--out", str(tmp_path / "c.npz"))
    assert run_prepare(args) == 2 and "cifar-10-python.tar.gz" in capsys.readouterr().err


def test_cli_defaults():
    args = parse("digits")
    assert args.out is None and args.raw_dir == Path("data/raw") and args.root is None
    assert args.image_size is None and args.no_download is False
    with pytest.raises(SystemExit):
        parse("not-a-dataset")


def test_meta_records_array_hashes(tmp_path):
    from scl.data.prepared import load_meta

    out = registry.prepare("digits", tmp_path / "d.npz")
    meta, data = load_meta(out), load_prepared(out)
    assert meta["images_sha256"] == hashlib.sha256(np.ascontiguousarray(data.images).tobytes()).hexdigest()
