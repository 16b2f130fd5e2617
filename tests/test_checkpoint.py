"""Checkpoints: no code runs on load, a digest beside them, crash-safe digest updates."""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

import scl.checkpoint as ck
from scl.checkpoint import digest_path, load_checkpoint, save_checkpoint
from scl.errors import CheckpointError, CheckpointMismatch


class RunsCode:
    """Unpickling this calls os.system: what a crafted checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _state() -> dict:
    lin = torch.nn.Linear(3, 2)
    return {
        "epoch": 3,
        "model": lin.state_dict(),
        "pseudo": {"target": np.arange(10, dtype=np.int64) % 3},
        "weights": np.linspace(0, 1, 4, dtype=np.float32),
        "records": [{"epoch": 1, "acc": np.float64(0.25), "sizes": [1, 2]}],
        "settings": {"tasks": ("target", "under"), "root": None},
    }


def flip_bytes_in_largest_tensor(path: Path, nbytes: int = 64) -> None:
    """XOR `nbytes` bytes in the middle of the largest tensor storage (stored uncompressed)."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        start = info.header_offset + 30 + name_len + extra_len + max(0, info.file_size // 2 - nbytes // 2)
        f.seek(start)
        chunk = f.read(min(nbytes, info.file_size))
        f.seek(start)
        f.write(bytes(b ^ 0xFF for b in chunk))


def test_round_trip_restores_numpy_and_plain_values(tmp_path):
    state = _state()
    path = save_checkpoint(tmp_path / "checkpoint.pt", state)
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["settings"] == state["settings"]
    assert isinstance(back["pseudo"]["target"], np.ndarray) and back["pseudo"]["target"].dtype == np.int64
    assert np.array_equal(back["pseudo"]["target"], state["pseudo"]["target"])
    assert np.array_equal(back["weights"], state["weights"]) and back["weights"].dtype == np.float32
    assert back["records"] == [{"epoch": 1, "acc": 0.25, "sizes": [1, 2]}]
    assert isinstance(back["model"], OrderedDict)
    for k, v in state["model"].items():
        assert torch.equal(back["model"][k], v)
    torch.nn.Linear(3, 2).load_state_dict(back["model"])


def test_file_is_readable_by_torch_weights_only(tmp_path):
    """No pickled numpy (or any other) object: torch's safe unpickler reads it as it is."""
    path = save_checkpoint(tmp_path / "checkpoint.pt", _state())
    raw = torch.load(path, weights_only=True)
    assert torch.is_tensor(raw["weights"]["__ndarray__"])


def test_digest_file_is_sha256sum_format(tmp_path):
    import hashlib

    path = save_checkpoint(tmp_path / "checkpoint.pt", _state())
    line = digest_path(path).read_text()
    assert line == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  checkpoint.pt\n"


def test_crafted_checkpoint_does_not_run_code_even_with_a_matching_digest(tmp_path):
    import hashlib

    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1, "model": RunsCode(marker)}, path)
    # the attacker controls both files: the digest matches, the content must still be refused
    digest_path(path).write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  checkpoint.pt\n")
    with pytest.raises(CheckpointError, match="more than tensors and plain values"):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_without_digest_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"x": RunsCode(marker)}, path)
    # an older scl's or another program's file: a mismatch (--restart-if-changed starts afresh)
    with pytest.raises(CheckpointMismatch, match="no digest file checkpoint.pt.sha256"):
        load_checkpoint(path)
    assert not marker.exists()


def test_flipped_bytes_are_refused(tmp_path):
    state = {"memory": torch.randn(256, 32), "epoch": 2}
    path = save_checkpoint(tmp_path / "checkpoint.pt", state)
    flip_bytes_in_largest_tensor(path)
    # torch itself would load it: the values are just wrong
    assert not torch.equal(torch.load(path, weights_only=True)["memory"], state["memory"])
    with pytest.raises(CheckpointError, match="is corrupt.*--restart"):
        load_checkpoint(path)


def test_truncated_and_garbage_checkpoints_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "checkpoint.pt", _state())
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    import hashlib

    path.write_bytes(b"not a checkpoint")
    digest_path(path).write_text(f"{hashlib.sha256(b'not a checkpoint').hexdigest()}  checkpoint.pt\n")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        load_checkpoint(path)


def _kill_at_checkpoint_rename(monkeypatch):
    """The process dies after the digest file was updated, before the checkpoint's rename."""
    def killed(path, write):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ck, "_atomic_write", killed)


def test_kill_between_digest_and_checkpoint_keeps_the_old_checkpoint_loadable(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1})
    with monkeypatch.context() as m:
        _kill_at_checkpoint_rename(m)
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path)["epoch"] == 1  # the old file still matches a listed digest
    with monkeypatch.context() as m:  # killed a second time at the same point
        _kill_at_checkpoint_rename(m)
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(path, {"epoch": 3})
    assert load_checkpoint(path)["epoch"] == 1
    save_checkpoint(path, {"epoch": 4})
    assert load_checkpoint(path)["epoch"] == 4
    assert len(digest_path(path).read_text().splitlines()) == 1  # the stale line is gone


def test_remove_checkpoint_removes_the_digest(tmp_path):
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 1})
    ck.remove_checkpoint(path)
    assert not path.exists() and not digest_path(path).exists()
