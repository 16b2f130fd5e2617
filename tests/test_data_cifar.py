"""CIFAR-10 / CIFAR-100 readers on tiny batches in the exact upstream pickle format."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from scl.data import cifar, registry
from scl.data.download import Resource
from scl.data.errors import DataError
from scl.data.prepared import load_meta, load_prepared
from scl.data.reference import cifar100_coarse_map




def dump(path: Path, obj: dict) -> None:
    # Upstream batches were pickled by Python 2: str keys/values arrive as bytes.
    path.write_bytes(pickle.dumps(obj, protocol=2))


def hwc_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def to_rows(images: np.ndarray) -> np.ndarray:
    """HWC images -> CIFAR rows: 1024 R values (row-major), then 1024 G, then 1024 B."""
    rows = np.empty((len(images), 3072), np.uint8)
    for i, img in enumerate(images):
        rows[i] = np.concatenate([img[:, :, c].reshape(-1) for c in range(3)])
    return rows


CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def write_cifar10(folder: Path, per_batch: int = 5, train_batches: int = 5) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, train_batches + 1)] + ["test_batch"]
    xs, ys = [], []
    for k, name in enumerate(names):
        x, y = hwc_images(per_batch, k), [(k + i) % 10 for i in range(per_batch)]
        dump(folder / name, {b"batch_label": name.encode(), b"labels": y, b"data": to_rows(x),
                             b"filenames": [b"f%d.png" % i for i in range(per_batch)]})
        xs.append(x)
        ys += y
    dump(folder / "batches.meta", {b"label_names": CIFAR10_NAMES, b"num_cases_per_batch": per_batch,
                                   b"num_vis": 3072})
    return np.concatenate(xs), np.asarray(ys)


def write_cifar100(folder: Path, n: int = 5, coarse_of=None) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True)
    coarse_of = cifar100_coarse_map() if coarse_of is None else coarse_of
    xs, fines = [], []
    for k, name in enumerate(("train", "test")):
        x = hwc_images(n, 10 + k)
        fine = [(37 * k + 11 * i) % 100 for i in range(n)]
        dump(folder / name, {b"filenames": [b"x.png"] * n, b"batch_label": b"b", b"fine_labels": fine,
                             b"coarse_labels": [int(coarse_of[f]) for f in fine], b"data": to_rows(x)})
        xs.append(x)
        fines += fine
    dump(folder / "meta", {b"fine_label_names": [b"f%d" % i for i in range(100)],
                           b"coarse_label_names": [n.encode() for n in cifar.CIFAR100_COARSE_NAMES]})
    return np.concatenate(xs), np.asarray(fines)


def test_cifar10_reader_pixels_and_labels(tmp_path):
    x, y = write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=5, train_batches=2)
    data = cifar.read_cifar10(tmp_path / "cifar-10-batches-py", ("data_batch_1", "data_batch_2", "test_batch"))
    assert data.images.shape == (15, 32, 32, 3) and data.images.dtype == np.uint8
    assert np.array_equal(data.images, x) and np.array_equal(data.labels, y)
    assert data.class_names[0] == "airplane" and len(data.class_names) == 10


def test_cifar_row_layout_orientation(tmp_path):
    """Byte k of a row is channel k // 1024, row (k % 1024) // 32, column k % 32."""
    folder = tmp_path / "c"
    folder.mkdir()
    row = np.zeros((1, 3072), np.uint8)
    row[0, 0 * 1024 + 0 * 32 + 5] = 200  # red, top row, column 5
    row[0, 2 * 1024 + 31 * 32 + 0] = 100  # blue, bottom row, column 0
    dump(folder / "b", {b"data": row, b"labels": [3]})
    img = cifar.batch_images(cifar.load_batch(folder / "b"), folder / "b")[0]
    assert img[0, 5, 0] == 200 and img[5, 0, 0] == 0
    assert img[31, 0, 2] == 100 and img[0, 31, 2] == 0


def test_cifar10_missing_or_corrupt_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, per_batch=2)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 does not exist"):
        cifar.read_cifar10(folder)
    (folder / "data_batch_2").write_bytes((folder / "data_batch_1").read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_2 is truncated or corrupt"):
        cifar.read_cifar10(folder, ("data_batch_2",))


def test_cifar100_20_maps_fine_to_coarse(tmp_path):
    x, fine = write_cifar100(tmp_path / "cifar-100-python")
    data = cifar.read_cifar100_20(tmp_path / "cifar-100-python")
    assert data.images.shape == (10, 32, 32, 3) and np.array_equal(data.images, x)
    table = {0: 4, 1: 1, 2: 14, 3: 8}  # first rows of cifar100_coarse.csv
    coarse = cifar100_coarse_map()
    assert all(coarse[f] == c for f, c in table.items())
    assert np.array_equal(data.labels, coarse[fine]) and data.labels.max() < 20
    assert data.class_names[4] == "fruit_and_vegetables" and len(data.class_names) == 20


def test_cifar100_mapping_disagreement_is_an_error(tmp_path):
    wrong = (cifar100_coarse_map() + 1) % 20
    write_cifar100(tmp_path / "cifar-100-python", coarse_of=wrong)
    with pytest.raises(DataError, match="disagree with scl/reference/cifar100_coarse.csv"):
        cifar.read_cifar100_20(tmp_path / "cifar-100-python")


def test_reference_tables_are_package_data():
    from scl.data.reference import read_reference_csv

    for name in ("table1_reported.csv", "table2_reported.csv", "table3_reported.csv"):
        assert read_reference_csv(name)
    assert len(cifar100_coarse_map()) == 100
    assert np.bincount(cifar100_coarse_map()).tolist() == [5] * 20


def write_cifar10_archive(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A small cifar-10-python.tar.gz in tmp_path/mirror, laid out as the upstream one."""
    staging = tmp_path / "staging"
    x, y = write_cifar10(staging / "cifar-10-batches-py", per_batch=2)
    archive = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as t:
        t.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, x, y


def test_prepare_cifar10_from_archive_via_file_url(tmp_path, monkeypatch):
    """The whole path: file:// download -> md5 check -> atomic extraction -> read -> .npz."""
    archive, x, y = write_cifar10_archive(tmp_path)
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    res = Resource("cifar-10-python.tar.gz", (archive.as_uri(),), digest, "cifar-10-batches-py")
    monkeypatch.setitem(registry.DATASETS, "cifar10", replace(registry.DATASETS["cifar10"], resources=(res,)))
    raw = tmp_path / "raw"
    with pytest.warns(UserWarning, match="full dataset has 60000"):
        out = registry.prepare("cifar10", tmp_path / "prepared" / "cifar10.npz", raw_dir=raw)
    data = load_prepared(out)
    assert np.array_equal(data.images, x) and np.array_equal(data.labels, y)
    assert load_meta(out)["source"]["md5"] == digest
    assert sorted(p.name for p in raw.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_prepare_cifar10_checksum_mismatch(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + b"\0" * 50)
    res = replace(registry.DATASETS["cifar10"].resources[0], urls=(archive.as_uri(),))
    monkeypatch.setitem(registry.DATASETS, "cifar10", replace(registry.DATASETS["cifar10"], resources=(res,)))
    with pytest.raises(DataError, match="expected md5 c58f30108f718f92721af3b95e74349a"):
        registry.prepare("cifar10", tmp_path / "out.npz", raw_dir=tmp_path / "raw")
    assert not (tmp_path / "out.npz").exists() and not (tmp_path / "raw" / "cifar-10-python.tar.gz").exists()
