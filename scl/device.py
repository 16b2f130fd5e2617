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
    raise TrainingError(f"unknown amp setting {amp!r}; use auto, off, bf16 or fp16")


def _cpu_native_bf16() -> bool:
    """oneDNN runs bf16 natively on this CPU (AVX-512 BF16 / AMX); AVX2-only CPUs emulate
    it, and bf16 convolutions there were 9.5-12x SLOWER than float32 (issue 11)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` runs bf16 natively, and why (for the run's log)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} supports bf16 natively"
        return False, f"{name} has no native bf16"
    if device.type == "cpu":
        if _cpu_native_bf16():
            return True, "oneDNN reports native bf16 on this CPU"
        return False, "oneDNN reports no native bf16 on this CPU (bf16 would be emulated, slower than float32)"
    return False, f"no bf16 autocast on {device.type}"


def resolve_amp(amp: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """The `amp` setting on `device`: `auto` is bf16 where the device runs it natively,
    else float32 (off); any other value is taken as set (`amp_dtype`). Returns the autocast
    dtype (None: off) and the reason, for the run's log."""
    if amp != "auto":
        return amp_dtype(amp, device), f"amp={amp} as set"
    ok, why = native_bf16(device)
    return (torch.bfloat16, f"auto -> bf16: {why}") if ok else (None, f"auto -> float32: {why}")


def resolve_channels_last(setting, device: torch.device, amp: torch.dtype | None) -> tuple[bool, str]:
    """The `channels_last` setting: `auto` is on for CUDA (tensor-core convolutions want
    NHWC) and for a CPU running bf16 (oneDNN's bf16 convolutions want NHWC), else off."""
    if setting != "auto":
        return bool(setting), f"channels_last={str(bool(setting)).lower()} as set"
    if device.type == "cuda":
        return True, "auto -> on: CUDA convolutions prefer NHWC"
    if device.type == "cpu" and amp == torch.bfloat16:
        return True, "auto -> on: oneDNN's bf16 convolutions prefer NHWC"
    return False, "auto -> off: float32 on this device"


def execution_choice(device: torch.device, amp: torch.dtype | None, amp_why: str, channels_last: bool,
                     cl_why: str) -> dict:
    """What the run's log records of the execution choices (JSON-friendly)."""
    return {"device": str(device), "amp": {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp, "off"),
            "amp_why": amp_why, "channels_last": channels_last, "channels_last_why": cl_why}


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
