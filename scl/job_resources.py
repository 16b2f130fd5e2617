"""What a workflow job asks a cluster scheduler for: memory and time limit, per experiment set.

    experiment_sets:
      <set>:
        resources:
          train:    {mem_mb: 16000, runtime: {cifar10: 120, tiny-imagenet: 600}}
          baseline: {mem_mb: 24000, runtime: 120}

`mem_mb` is memory per job in MB (SLURM `--mem`); `runtime` the time limit in minutes (SLURM
`-t`): one number for every dataset of the set, or one per dataset. A kind of job not
listed (or a key left out) gets DEFAULT (the SLURM profile's own default for jobs that declare nothing). These are
execution settings: they change no result, so the workflow does not rerun anything for them.
A retry gets `attempt` times the time: a training run killed at its limit resumes from its
checkpoint (`scl train`), so the second submission finishes what the first began.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from scl.config import ConfigError

KINDS = ("train", "baseline")
DEFAULT = {"mem_mb": 4000, "runtime": 60}


@dataclass(frozen=True)
class JobResources:
    """One kind of job of one experiment set."""

    mem_mb: int
    runtime: int | dict[str, int]

    def runtime_for(self, dataset: str, attempt: int = 1) -> int:
        """Minutes for a job on `dataset`, the `attempt`-th time it is submitted (1 = first)."""
        base = self.runtime[dataset] if isinstance(self.runtime, dict) else self.runtime
        return int(base) * max(1, int(attempt))


def _positive_int(value, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: expected a whole number >= {minimum}, got {value!r}")
    return value


def for_set(block: Mapping | None, where: str, datasets: Sequence[str]) -> dict[str, JobResources]:
    """{kind: JobResources} of an experiment set's `resources` block (`where` names it in errors:
    experiment_sets.<set>.resources); a clear ConfigError for a bad or partial block."""
    block = block or {}
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where}: expected a block like {{train: {{mem_mb: 16000, runtime: 120}}}}, got {block!r}")
    unknown = sorted(set(block) - set(KINDS))
    if unknown:
        raise ConfigError(f"{where}: unknown kind(s) of job {', '.join(unknown)}; expected {', '.join(KINDS)}")
    out = {}
    for kind in KINDS:
        spec = {**DEFAULT, **(block.get(kind) or {})}
        where_kind = f"{where}.{kind}"
        unknown = sorted(set(spec) - set(DEFAULT))
        if unknown:
            raise ConfigError(f"{where_kind}: unknown key(s) {', '.join(unknown)}; expected mem_mb, runtime")
        mem_mb = _positive_int(spec["mem_mb"], f"{where_kind}.mem_mb", 100)
        runtime = spec["runtime"]
        if isinstance(runtime, Mapping):
            runtime = {d: _positive_int(m, f"{where_kind}.runtime.{d}", 1) for d, m in runtime.items()}
            missing = [d for d in datasets if d not in runtime]
            if missing:
                raise ConfigError(f"{where_kind}.runtime gives no time for {', '.join(missing)}: add them, "
                                  "or give one number of minutes for every dataset")
        else:
            runtime = _positive_int(runtime, f"{where_kind}.runtime", 1)
        out[kind] = JobResources(mem_mb, runtime)
    return out
