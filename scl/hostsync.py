"""Record every operation that makes the host wait for the device (a "host read").

A training step on an accelerator runs as a queue of kernels the CPU launches ahead of
the device. Anything that needs a tensor's *value* on the host - `.item()`, `if tensor:`,
`float(t)`, `.tolist()`, `.cpu()` / `.numpy()`, an operator whose output *shape* depends
on the values (`nonzero`, boolean-mask indexing, `bincount`, `unique`) - stalls that
queue until the device has caught up. On a CPU nothing stalls, so such reads are
invisible there; this module makes them visible on any device, so a CPU test can prove
that the step has none (tests/test_hostsync.py, tests/test_train.py).

`HostSyncRecorder` is a context manager that watches at two levels at once:

  Python level (a TorchFunctionMode)   Tensor.item / tolist / numpy / __array__ /
                                       __bool__ / __int__ / __float__ / __index__ /
                                       __format__, Tensor.cpu, and .to() onto another
                                       device than the tensor's
  operator level (a TorchDispatchMode) aten._local_scalar_dense, is_nonzero, nonzero,
                                       masked_select, bincount, unique*, index / index_put
                                       with boolean indices, repeat_interleave with a
                                       tensor of repeats and no output_size, copies
                                       between devices, and lift_fresh: a tensor built
                                       from host data (torch.tensor(...)) inside the
                                       region, which on an accelerator is a host-to-device
                                       copy from pageable memory

The operator level also sees the backward pass and the optimiser (autograd propagates the
mode to its threads). Each event carries the operator and the innermost frames of the
`scl` package that caused it, so a failing assert says where to look.

What a CPU run cannot see: a `.to(device)` of a CPU tensor is a no-op when the device
is the CPU. Such copies are caught when the same test runs on CUDA (the CUDA variant of
the test, run by `make gpu-check`), where they are copies between devices.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_PACKAGE_DIR = str(Path(__file__).resolve().parent)

# Tensor methods whose result is a host value read from the tensor's data
_PY_READS = {
    "item", "tolist", "numpy", "__array__", "__bool__", "__int__", "__float__", "__index__", "__format__",
    "cpu",
}

# aten operators (overload packet names) that read device data on the host
_ATEN_READS = {
    "_local_scalar_dense": "reads a value on the host (.item(), bool(), float())",
    "is_nonzero": "reads a value on the host (truth value of a tensor)",
    "nonzero": "output shape depends on the values",
    "masked_select": "output shape depends on the values",
    "bincount": "output length depends on the values",
    "unique_dim": "output shape depends on the values",
    "_unique": "output shape depends on the values",
    "_unique2": "output shape depends on the values",
    "unique_consecutive": "output shape depends on the values",
    "equal": "returns a host bool",
    "allclose": "returns a host bool",
    "lift_fresh": "a tensor built from host data inside the region (host-to-device copy on an accelerator)",
    "lift_fresh_copy": "a tensor built from host data inside the region (host-to-device copy on an accelerator)",
}


@dataclass(frozen=True)
class HostRead:
    op: str  # e.g. "aten._local_scalar_dense" or "Tensor.item"
    why: str
    where: tuple[str, ...] = field(default=())  # innermost scl frames, "file:line in function"

    def __str__(self) -> str:
        loc = " <- ".join(self.where) if self.where else "(outside the scl package)"
        return f"{self.op}: {self.why} at {loc}"


def _scl_frames(limit: int = 3) -> tuple[str, ...]:
    frames = [f for f in traceback.extract_stack() if f.filename.startswith(_PACKAGE_DIR)
              and not f.filename.endswith("hostsync.py")]
    return tuple(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in reversed(frames[-limit:]))


def _devices(obj, out: set) -> None:
    if isinstance(obj, torch.Tensor):
        out.add(obj.device)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _devices(o, out)


def _has_bool_index(indices) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


class _OpLevel(TorchDispatchMode):
    def __init__(self, sink):
        super().__init__()
        self.sink = sink

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        why = _ATEN_READS.get(name)
        if why is None:
            if name in ("index", "_unsafe_index") and _has_bool_index(args[1] if len(args) > 1 else None):
                why = "boolean-mask indexing: output shape depends on the values"
            elif name in ("index_put", "index_put_", "_index_put_impl_") and _has_bool_index(args[1] if len(args) > 1 else None):
                why = "boolean-mask assignment: needs the number of True values"
            elif name == "repeat_interleave" and isinstance(args[0] if args else None, torch.Tensor) \
                    and args[0].dim() > 0 and kwargs.get("output_size") is None and (len(args) < 3 or args[2] is None):
                why = "repeat_interleave with tensor repeats and no output_size: output length depends on the values"
            elif name in ("_to_copy", "copy_", "_copy_from", "_copy_from_and_resize"):
                devs: set = set()
                _devices(args, devs)
                target = kwargs.get("device")
                if target is not None:
                    devs.add(torch.device(target))
                if len(devs) > 1:
                    why = "copy between devices " + " -> ".join(sorted(str(d) for d in devs))
        if why is not None:
            self.sink(HostRead(f"aten.{name}", why, _scl_frames()))
        return func(*args, **kwargs)


class _PythonLevel(TorchFunctionMode):
    def __init__(self, sink):
        super().__init__()
        self.sink = sink

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _PY_READS and args and isinstance(args[0], torch.Tensor):
            self.sink(HostRead(f"Tensor.{name}", "reads the tensor's data on the host", _scl_frames()))
        elif name == "to" and args and isinstance(args[0], torch.Tensor):
            target = kwargs.get("device")
            for a in args[1:]:
                if isinstance(a, (str, torch.device)):
                    target = a
                elif isinstance(a, torch.Tensor):
                    target = a.device
            if target is not None and torch.device(target).type != args[0].device.type:
                self.sink(HostRead("Tensor.to", f"copy {args[0].device} -> {target}", _scl_frames()))
        return func(*args, **kwargs)


class HostSyncRecorder:
    """Context manager: `events` lists every host read made inside it (see the module
    docstring). `allow` names operators to ignore (e.g. {"aten.lift_fresh"})."""

    def __init__(self, allow: set[str] | frozenset[str] = frozenset()):
        self.allow = set(allow)
        self.events: list[HostRead] = []
        self._modes = (_PythonLevel(self._record), _OpLevel(self._record))

    def _record(self, event: HostRead) -> None:
        if event.op not in self.allow:
            self.events.append(event)

    def __enter__(self) -> "HostSyncRecorder":
        self.events.clear()
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for m in reversed(self._modes):
            m.__exit__(*exc)

    def report(self) -> str:
        """One line per event, for assertion messages."""
        return "\n".join(str(e) for e in self.events) or "no host reads"

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.events:
            out[e.op] = out.get(e.op, 0) + 1
        return out
