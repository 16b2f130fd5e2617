"""Checkpoints that cannot run code and cannot be silently corrupt.

A checkpoint (`checkpoint.pt`) travels: it is kept in a run folder, pushed to and pulled
from the DVC remote, copied by hand. Two rules make reading one safe:

1. It holds tensors and plain Python values only (dict, list, tuple, str, int, float,
   bool, None), so `torch.load(weights_only=True)` reads it: an unpickler that builds
   nothing else, so a crafted file cannot execute code. numpy arrays are stored as tensors
   under a one-key marker dict ({"__ndarray__": tensor}) and come back as numpy arrays;
   numpy scalars are stored as Python numbers.
2. A digest file beside it (`checkpoint.pt.sha256`, sha256sum format) is checked before
   the file is unpickled at all: flipped bytes, a truncated copy or a file from elsewhere
   are refused with a message that says what to do.

Crash safety: the digest file is written (atomically) *before* the checkpoint is renamed
into place and lists the new digest and the previous one, so a kill between the two
renames leaves the old checkpoint with a digest that still matches it; the next save
drops the stale line.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scl.errors import CheckpointError, CheckpointMismatch
from scl.io import _atomic_write, atomic_write_text

_ND = "__ndarray__"
DIGEST_SUFFIX = ".sha256"


def digest_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def _dict_like(obj: dict, out: dict) -> dict:
    """`out` as the kind of dict `obj` is: a module's state_dict (an OrderedDict) keeps its
    version `_metadata`, which load_state_dict reads."""
    if not isinstance(obj, OrderedDict):
        return out
    out = OrderedDict(out)
    if hasattr(obj, "_metadata"):
        out._metadata = obj._metadata
    return out


def to_safe(obj: Any) -> Any:
    """`obj` with numpy arrays -> marked tensors and numpy scalars -> Python numbers, recursively."""
    if isinstance(obj, np.ndarray):
        return {_ND: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if _ND in obj:
            raise ValueError(f"a checkpoint dict may not use the key {_ND!r}")
        return _dict_like(obj, {k: to_safe(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_safe(v) for v in obj)
    return obj


def from_safe(obj: Any) -> Any:
    """Inverse of `to_safe`: marked tensors -> numpy arrays."""
    if isinstance(obj, dict):
        if set(obj) == {_ND}:
            return obj[_ND].cpu().numpy()
        return _dict_like(obj, {k: from_safe(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_safe(v) for v in obj)
    return obj


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _listed_digests(path: Path) -> list[str]:
    """Digests the digest file accepts for `path` (newest first); [] when it has none."""
    try:
        lines = digest_path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name and len(parts[0]) == 64:
            out.append(parts[0].lower())
    return out


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write `state` to `path` (atomically) and its digest beside it."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(to_safe(state), buf)
    data = buf.getvalue()
    new = _sha256(data)
    # new digest first, the one of the checkpoint still in place second (see module doc);
    # two lines listed means an earlier save was cut short: hash the file actually in place
    listed = _listed_digests(path) if path.exists() else []
    if len(listed) > 1:
        listed = [_sha256(path.read_bytes())]
    old = [d for d in listed[:1] if d != new]
    atomic_write_text(digest_path(path), "".join(f"{d}  {path.name}\n" for d in [new, *old]))
    _atomic_write(path, lambda f: f.write(data))
    if old:
        atomic_write_text(digest_path(path), f"{new}  {path.name}\n")
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """The state saved by `save_checkpoint`, after its digest was checked; else CheckpointError."""
    path = Path(path)
    fix = (f"Fix: delete {path} (and {digest_path(path).name}) or pass --restart to start this run afresh; "
           "restore the file from where it came from to keep the finished epochs")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} is unreadable ({e.strerror or e}). {fix}") from e
    accepted = _listed_digests(path)
    if not accepted:
        # another program's or an older scl's file: not loaded, and like a checkpoint of other
        # code, a run that may start afresh (--restart-if-changed) does so
        raise CheckpointMismatch(f"checkpoint {path} has no digest file {digest_path(path).name} beside it, so it "
                                 f"cannot be trusted (it was written by another program or an older version). {fix}")
    actual = _sha256(data)
    if actual not in accepted:
        raise CheckpointError(f"checkpoint {path} is corrupt: its sha256 is {actual[:16]}..., the digest file "
                              f"says {accepted[0][:16]}... (flipped bytes, a truncated or replaced copy). {fix}")
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # UnpicklingError for a forbidden global, RuntimeError for a bad zip ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise CheckpointError(f"checkpoint {path} holds more than tensors and plain values, or is not a torch "
                              f"checkpoint ({type(e).__name__}: {first}); it was not loaded. {fix}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict. {fix}")
    return from_safe(state)


def remove_checkpoint(path: str | os.PathLike) -> None:
    """Delete a checkpoint and its digest (a restart)."""
    path = Path(path)
    path.unlink(missing_ok=True)
    digest_path(path).unlink(missing_ok=True)
