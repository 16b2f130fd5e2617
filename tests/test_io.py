"""Atomic writes (scl/io.py): a failed write never leaves a file under the final name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scl import io as sio


class Unpicklable:
    """Pickling raises after torch.save has already written the start of its zip archive
    (a few hundred bytes reach the temporary file first)."""

    def __reduce__(self):
        raise RuntimeError("cannot pickle me")


def big_then_bad():
    return {"weights": torch.zeros(200_000), "bad": Unpicklable()}


def only(path_dir):
    return sorted(p.name for p in path_dir.iterdir())


def test_torch_save_failure_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    removed = []  # (name, size) of files scl.io cleans up
    real_unlink = Path.unlink

    def spy(self, *args, **kwargs):
        if self.exists():
            removed.append((self.name, self.stat().st_size))
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", spy)
    with pytest.raises(RuntimeError, match="cannot pickle me"):
        sio.atomic_torch_save(target, big_then_bad())
    assert not target.exists()
    # the failure really happened midway: bytes had reached a temp file, which was removed
    assert len(removed) == 1 and removed[0][0].startswith("checkpoint.pt.") and removed[0][1] > 0
    assert only(tmp_path) == []  # no stray *.tmp files


def test_torch_save_failure_keeps_previous_file(tmp_path):
    target = tmp_path / "checkpoint.pt"
    sio.atomic_torch_save(target, {"epoch": 3, "w": torch.arange(5)})
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        sio.atomic_torch_save(target, big_then_bad())
    assert target.read_bytes() == before
    assert only(tmp_path) == ["checkpoint.pt"]
    ck = torch.load(target, weights_only=True)
    assert ck["epoch"] == 3 and torch.equal(ck["w"], torch.arange(5))


def test_interrupt_midway_leaves_nothing(tmp_path):
    """A KeyboardInterrupt (BaseException) after half the bytes are written."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"old content")
    seen = {}

    def write(f):
        f.write(b"x" * 1000)
        f.flush()
        seen["tmp"] = [p.name for p in tmp_path.iterdir() if p.name != "out.bin"]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sio._atomic_write(target, write)
    assert len(seen["tmp"]) == 1 and seen["tmp"][0].endswith(".tmp")  # the bytes went to a temp file
    assert target.read_bytes() == b"old content"
    assert only(tmp_path) == ["out.bin"]


def test_savez_failure_leaves_nothing(tmp_path):
    target = tmp_path / "features.npz"
    target_ok = tmp_path / "ok.npz"
    sio.atomic_savez(target_ok, a=np.arange(3))
    bad = np.empty(2, dtype=object)
    bad[0], bad[1] = np.arange(100_000), Unpicklable()
    with pytest.raises(RuntimeError):
        sio.atomic_savez(target, good=np.zeros(100_000), bad=bad)
    assert not target.exists()
    assert only(tmp_path) == ["ok.npz"]
    assert np.load(target_ok)["a"].tolist() == [0, 1, 2]


def test_successful_writes_roundtrip(tmp_path):
    sio.atomic_write_json(tmp_path / "m.json", {"acc": np.float32(0.5), "x": np.arange(2), "n": np.int64(3)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"acc": 0.5, "x": [0, 1], "n": 3}
    sio.atomic_write_text(tmp_path / "sub" / "dir" / "t.txt", "héllo")  # parent folders made
    assert (tmp_path / "sub" / "dir" / "t.txt").read_text(encoding="utf-8") == "héllo"
    sio.atomic_savez(tmp_path / "a.npz", images=np.ones((2, 3), np.uint8))
    assert np.load(tmp_path / "a.npz")["images"].dtype == np.uint8
    sio.atomic_save_npy(tmp_path / "e.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    assert np.array_equal(np.load(tmp_path / "e.npy"), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert only(tmp_path) == ["a.npz", "e.npy", "m.json", "sub"]


def test_json_unserialisable_raises_and_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="not JSON serialisable"):
        sio.atomic_write_json(tmp_path / "m.json", {"x": object()})
    assert only(tmp_path) == []


def test_jsonl_roundtrip_and_missing(tmp_path):
    path = tmp_path / "log.jsonl"
    assert sio.read_jsonl(path) == []
    records = [{"epoch": 1, "loss": np.float64(2.5)}, {"epoch": 2, "loss": 1.25}]
    sio.write_jsonl(path, records)
    assert sio.read_jsonl(path) == [{"epoch": 1, "loss": 2.5}, {"epoch": 2, "loss": 1.25}]
    sio.write_jsonl(path, records[:1])  # rewritten, not appended
    assert sio.read_jsonl(path) == [{"epoch": 1, "loss": 2.5}]
    assert only(tmp_path) == ["log.jsonl"]
