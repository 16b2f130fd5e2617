"""A run's wall-clock times, kept apart from its results.

Epoch records carry `epoch_time_s` and `samples_per_s` while training (and, for the first
epoch a process trains, its `execution` choice: machine-dependent too); they are written to
timing.json (scl.paths.TIMING) beside the run's files, never to log.jsonl, metrics.json or the
checkpoint, so that a rerun that reproduces the numbers reproduces those files byte for byte
(git and DVC ignore timing.json).
"""

from __future__ import annotations

import json
from pathlib import Path

from scl.io import atomic_write_json
from scl.paths import TIMING

WALL_CLOCK = ("epoch_time_s", "samples_per_s")
# what else depends on the process and the machine, not on the run: the execution choice
# (amp / channels_last and why, scl.device.execution_choice) of the first epoch a process trains
PER_PROCESS = (*WALL_CLOCK, "execution")


def split_timing(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Epoch records -> (the records without per-process fields, {epoch, per-process fields} per epoch)."""
    return ([{k: v for k, v in r.items() if k not in PER_PROCESS} for r in records],
            [{"epoch": r.get("epoch"), **{k: r[k] for k in PER_PROCESS if k in r}} for r in records])


def write_timing(out: Path, records: list[dict]) -> None:
    timing = split_timing(records)[1]
    atomic_write_json(out / TIMING, {"train_time_s": float(sum(t.get("epoch_time_s", 0.0) for t in timing)),
                                     "epochs": timing})


def merge_timing(out: Path, records: list[dict]) -> list[dict]:
    """Records from a checkpoint with their wall-clock fields from timing.json, where it has them."""
    try:
        timing = {t["epoch"]: t for t in json.loads((out / TIMING).read_text())["epochs"]}
    except (OSError, ValueError, KeyError, TypeError):
        timing = {}
    return [{**r, **timing.get(r.get("epoch"), {})} for r in records]


def last_execution(out: Path) -> dict | None:
    """The `execution` record of the last process that trained the run in `out` (its amp /
    channels_last choice and why), or None where timing.json is missing, unreadable or has none."""
    try:
        epochs = json.loads((Path(out) / TIMING).read_text())["epochs"]
        chosen = [e["execution"] for e in epochs if isinstance(e, dict) and isinstance(e.get("execution"), dict)]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return chosen[-1] if chosen else None
