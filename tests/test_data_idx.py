"""IDX reader (hand-written files, plain and gzip), Fashion-MNIST loader, digits loader."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from scl.data import idx
from scl.data.digits import read_digits
from scl.data.download import Resource
from scl.data.errors import ChecksumError, DataError
from scl.data.prepared import load_meta, load_prepared
from scl.data.registry import prepare




def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file written by hand: 0, 0, dtype code, ndim, big-endian uint32 dims, data."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_fashion(folder: Path, counts: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in counts.items():
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y)))
        arrays[prefix] = (x, y)
    return arrays


def test_read_idx_plain_and_gz(tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte").write_bytes(idx_bytes(x))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        got = idx.read_idx(tmp_path / name)
        assert got.dtype == np.uint8 and np.array_equal(got, x)
    y = np.array([1, -2, 70000], dtype=np.int32)  # multi-byte type: big-endian on disk
    (tmp_path / "b").write_bytes(idx_bytes(y))
    assert idx.read_idx(tmp_path / "b").tolist() == [1, -2, 70000]
    # The header hand-written byte by byte, independent of the helper above.
    (tmp_path / "c").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x03" + bytes([7, 8, 9]))
    assert idx.read_idx(tmp_path / "c").tolist() == [7, 8, 9]


def test_read_idx_rejects_truncated_and_non_idx(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    (tmp_path / "cut").write_bytes(data[:-5])
    with pytest.raises(DataError, match="truncated or corrupt"):
        idx.read_idx(tmp_path / "cut")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(data)[:-10])
    with pytest.raises(DataError, match="cut.gz"):
        idx.read_idx(tmp_path / "cut.gz")
    (tmp_path / "junk").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DataError, match="not an IDX file"):
        idx.read_idx(tmp_path / "junk")


def test_fashion_reader_on_small_files(tmp_path):
    arrays = write_fashion(tmp_path, {"train": 6, "t10k": 4})
    data = idx.read_fashion_mnist(tmp_path, {"train": 6, "t10k": 4}, sha256=None)
    assert data.images.shape == (10, 28, 28, 1) and data.images.dtype == np.uint8
    assert np.array_equal(data.images[:6, ..., 0], arrays["train"][0])  # train first, then test
    assert np.array_equal(data.labels[6:], arrays["t10k"][1])
    assert data.labels.dtype == np.int64 and data.class_names[0] == "T-shirt/top"
    with pytest.raises(DataError, match=r"expected uint8 \(60000, 28, 28\)"):
        idx.read_fashion_mnist(tmp_path, sha256=None)  # real counts enforced by default
    with pytest.raises(ChecksumError, match="sha256"):
        idx.read_fashion_mnist(tmp_path, {"train": 6, "t10k": 4})  # not the upstream content


def test_fashion_upstream_download_path_uses_md5_of_gz(tmp_path):
    """Without Debian's copy, the .gz files are fetched (here: file:// URLs) and md5-checked."""
    mirror = tmp_path / "mirror"
    write_fashion(mirror, {"train": 3, "t10k": 2})
    resources = tuple(
        Resource(f"fashion-mnist/{p.name}", (p.as_uri(),), hashlib.md5(p.read_bytes()).hexdigest())
        for p in sorted(mirror.iterdir())
    )
    from dataclasses import replace

    from scl.data import registry

    spec = replace(registry.DATASETS["fashion"], resources=resources)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.DATASETS, "fashion", spec)
        with pytest.warns(UserWarning, match="full dataset has 70000"):
            out = prepare("fashion", tmp_path / "f.npz", raw_dir=tmp_path / "raw", debian_dir=None,
                          idx_sha256=None, splits={"train": 3, "t10k": 2})
    assert len(load_prepared(out)) == 5
    assert load_meta(out)["source"]["origin"] == "upstream"
    assert (tmp_path / "raw" / "fashion-mnist" / "train-images-idx3-ubyte.gz").exists()


def test_fashion_without_debian_copy_or_network_names_both_fixes(tmp_path):
    def offline(url, dest):
        raise OSError("network is unreachable")

    with pytest.raises(DataError) as e:
        idx.fashion_source(tmp_path / "raw", fetch=offline, debian_dir=tmp_path / "no-debian")
    msg = str(e.value)
    assert "could not download" in msg and "network is unreachable" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path / "no-debian") in msg
    assert not list((tmp_path / "raw").rglob("*.part"))  # nothing half-written left behind


@pytest.mark.skipif(not idx.DEBIAN_FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_from_debian_files():
    folder, origin = idx.fashion_source("unused-raw-dir", download=False)
    assert origin == "debian"
    prov: dict = {}
    data = idx.read_fashion_mnist(folder, provenance=prov)  # pinned decompressed sha256s + shapes
    assert data.images.shape == (70_000, 28, 28, 1) and data.images.dtype == np.uint8
    assert data.labels.shape == (70_000,) and set(np.unique(data.labels)) == set(range(10))
    assert np.bincount(data.labels).tolist() == [7000] * 10
    assert len(prov["files"]) == 4


def test_digits_loader():
    data = read_digits()
    assert data.images.shape == (1797, 8, 8, 1) and data.images.dtype == np.uint8
    assert data.images.max() == 255 and data.images.min() == 0
    assert data.labels.dtype == np.int64 and sorted(set(data.labels.tolist())) == list(range(10))
    assert data.class_names == [str(i) for i in range(10)]
    from sklearn.datasets import load_digits

    raw = load_digits().images
    assert np.array_equal(data.images[..., 0], np.floor(raw * 255 / 16 + 0.5).astype(np.uint8))
    assert set(np.unique(data.images).tolist()) == {int(v * 255 / 16 + 0.5) for v in range(17)}


def test_prepare_digits_roundtrip(tmp_path):
    out = prepare("digits", tmp_path / "prepared" / "digits.npz")
    data = load_prepared(out)
    assert len(data) == 1797 and data.has_labels and data.images.max() == 255
    meta = load_meta(out)
    assert meta["dataset"] == "digits" and meta["num_images"] == 1797 and len(meta["images_sha256"]) == 64
