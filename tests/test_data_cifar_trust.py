"""CIFAR batches are pickles: nothing in them may run code, and an extracted folder is
compared with its md5-verified archive before anything in it is read."""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from scl.data import cifar, registry
from scl.data.download import Resource, extracted_differences
from scl.data.errors import DataError
from scl.data.prepared import load_prepared
from test_data_cifar import write_cifar10, write_cifar10_archive


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def craft(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({b"data": RunsCode(marker), b"labels": [0]}, protocol=2))


def test_a_crafted_batch_is_refused_not_run(tmp_path):
    marker = tmp_path / "code-ran"
    craft(tmp_path / "data_batch_1", marker)
    with pytest.raises(DataError, match=r"refused to load (posix|os)\.system .*crafted to run code"):
        cifar.load_batch(tmp_path / "data_batch_1")
    assert not marker.exists()


@pytest.fixture
def cifar_archive(tmp_path, monkeypatch):
    """A small CIFAR-10 archive served from a file:// mirror, pinned by its md5 as the real one is."""
    archive, x, y = write_cifar10_archive(tmp_path)
    res = replace(registry.DATASETS["cifar10"].resources[0], urls=(archive.as_uri(),),
                  md5=hashlib.md5(archive.read_bytes()).hexdigest())
    assert res.verify_extracted
    monkeypatch.setitem(registry.DATASETS, "cifar10", replace(registry.DATASETS["cifar10"], resources=(res,)))
    return x, y


def _prepare(tmp_path, **kw):
    with pytest.warns(UserWarning):
        return registry.prepare("cifar10", tmp_path / "out.npz", raw_dir=tmp_path / "raw", **kw)


def test_a_crafted_file_in_the_extracted_folder_is_replaced_from_the_archive(tmp_path, cifar_archive):
    x, y = cifar_archive
    _prepare(tmp_path)  # downloads, verifies, extracts
    folder = tmp_path / "raw" / "cifar-10-batches-py"
    marker = tmp_path / "code-ran"
    craft(folder / "data_batch_3", marker)
    (folder / "extra.pkl").write_bytes(b"x")
    with pytest.warns(UserWarning, match=r"did not match .*data_batch_3 differs from the archive.*extra.pkl is not "
                                         r"in the archive.*moved to .*cifar-10-batches-py.bad"):
        out = registry.prepare("cifar10", tmp_path / "out2.npz", raw_dir=tmp_path / "raw")
    assert not marker.exists()
    data = load_prepared(out)
    assert np.array_equal(data.images, x) and np.array_equal(data.labels, y)
    assert extracted_differences(tmp_path / "raw" / "cifar-10-python.tar.gz", folder, "cifar-10-batches-py") == []


def test_an_extracted_folder_without_its_archive_is_not_read(tmp_path, cifar_archive):
    raw = tmp_path / "raw"
    write_cifar10(raw / "cifar-10-batches-py", per_batch=2)
    marker = tmp_path / "code-ran"
    craft(raw / "cifar-10-batches-py" / "data_batch_1", marker)
    with pytest.raises(DataError, match="cannot be checked against its archive.*--no-download"):
        registry.prepare("cifar10", tmp_path / "out.npz", raw_dir=raw, download=False)
    assert not marker.exists()


def test_an_intact_folder_is_reused(tmp_path, cifar_archive):
    _prepare(tmp_path)
    folder = tmp_path / "raw" / "cifar-10-batches-py"
    before = {p.name: p.stat().st_ino for p in folder.iterdir()}
    _prepare(tmp_path, download=False)
    assert {p.name: p.stat().st_ino for p in folder.iterdir()} == before  # not extracted again
    assert not (tmp_path / "raw" / "cifar-10-batches-py.bad").exists()
