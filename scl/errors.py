"""The errors `scl` stops with, and the exit code each one means.

  0    done
  1    unexpected error (a bug): a one-line message plus the file holding the traceback
  2    bad input the user can fix: settings, data, paths, permissions, a read-only folder,
       a run folder another `scl train` holds
  3    the run failed: training diverged or collapsed, a checkpoint is corrupt, unsafe or of
       another run, the disk filled up (free space and rerun: it resumes)
  130  interrupted (Ctrl-C): rerun the same command to resume

An error says its own code with a class attribute `exit_code`: the ones here, and the
domain errors beside their code (ConfigError, DataError, ReportError, BaselineError: 2).
The one handler that turns every failure of every command into its code (OS errors
sorted by errno, unexpected ones to a traceback file) is `run_command` in scl/cli.py.
"""

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3
EXIT_INTERRUPTED = 130


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint, unusable device
    or fast-path setting). Says why."""

    exit_code = EXIT_RUN_FAILED


class CheckpointMismatch(TrainingError):
    """The run folder's checkpoint belongs to another run identity (settings or code), or
    carries no digest (written by an older scl or another program). It is not loaded;
    `scl train --restart-if-changed` starts the run afresh instead."""


class CheckpointError(TrainingError):
    """A checkpoint is corrupt (digest mismatch), unsafe (more than tensors and plain
    values), unreadable or of another structure. Says the fix."""


class RunFailed(TrainingError):
    """A run finished but its result is unusable (diverged, collapsed). Says why and what to try."""


class RunLocked(RuntimeError):
    """Another process holds the run folder."""

    exit_code = EXIT_BAD_INPUT
