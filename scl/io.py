"""Atomic file writes: a reader never sees a half-written file.

Every artefact is written to a temporary file in the same folder, flushed to disk and
then renamed over the target (rename is atomic on POSIX). A run killed mid-write leaves
at most a stray ``*.tmp*`` file, never a truncated file under the final name.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    return _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_savez(path, **arrays) -> Path:
    """np.savez_compressed, atomically. `path` should end in .npz."""
    return _atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def atomic_save_npy(path, array: np.ndarray) -> Path:
    """np.save, atomically. `path` should end in .npy (np.save adds nothing to a file object)."""
    return _atomic_write(path, lambda f: np.save(f, array))


def atomic_torch_save(path, obj: Any) -> Path:
    import torch

    return _atomic_write(path, lambda f: torch.save(obj, f))


def write_jsonl(path, records: list[dict]) -> Path:
    """Rewrite a JSON-lines file atomically (used to keep the log in step with checkpoints)."""
    text = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in records)
    return atomic_write_text(path, text)


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
