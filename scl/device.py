"""Where and how the training step runs: device choice, autocast (AMP), torch.compile errors.

Execution settings only (docs/ARCHITECTURE.md, "Fast path"): they change how the step is
computed, not what it computes. Used by the trainer (scl/train.py) and `scl bench`.
"""

from __future__ import annotations

import contextlib

import torch

from scl.errors import TrainingError


def pick_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; a CUDA device that is missing is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available; use --set device=cpu")
    return torch.device(name)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the `amp` setting on `device` (None: off), or a clear error."""
    if amp in ("off", False, None):
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise TrainingError(f"amp=fp16 needs a CUDA device (it trains with a GradScaler); this run is on "
                                f"{device}: use amp=bf16 or amp=off")
        return torch.float16
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TrainingError(f"amp=bf16: {torch.cuda.get_device_name(device)} does not support bfloat16; "
                                "use amp=fp16 or amp=off")
        if device.type not in ("cuda", "cpu"):
            raise TrainingError(f"amp=bf16 is supported on cuda and cpu, not {device}; use amp=off")
        return torch.bfloat16
    raise TrainingError(f"unknown amp setting {amp!r}; use off, bf16 or fp16")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for `dtype`, or no context at all when it is None (the plain path)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """fp16 trains with a GradScaler (bf16 and float32 need none)."""
    return torch.amp.GradScaler(device.type) if dtype == torch.float16 else None


def to_channels_last(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """A batch in the layout the model was put in (`channels_last` setting)."""
    return x.contiguous(memory_format=torch.channels_last) if enabled else x


def is_compile_error(e: BaseException) -> bool:
    """An error raised by torch.compile's machinery (dynamo / inductor), not by the model."""
    mod = type(e).__module__ or ""
    return mod.startswith(("torch._dynamo", "torch._inductor")) or "BackendCompilerFailed" in type(e).__name__


@contextlib.contextmanager
def explain_compile_errors(enabled: bool):
    """Turn a torch.compile failure into a TrainingError that names the setting."""
    try:
        yield
    except Exception as e:
        if enabled and is_compile_error(e):
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise TrainingError(f"torch.compile of the encoders failed ({type(e).__name__}: {first[:300]}); "
                                "set compile: false (--set compile=false)") from e
        raise
