"""The exit codes of `scl` and the one handler that turns any failure into them.

Every command runs inside `run_command`, so no failure ends in a bare traceback:

  0    done
  1    unexpected error (a bug): a one-line message plus the file holding the traceback
  2    bad input the user can fix: settings, data, paths, permissions, a read-only folder,
       a run folder another `scl train` holds
  3    the run failed: training diverged or collapsed, a checkpoint is corrupt or unsafe,
       the disk filled up (free space and rerun: it resumes)
  130  interrupted (Ctrl-C): rerun the same command to resume

An exception says its own code with a class attribute `exit_code` (ConfigError,
DataError, ReportError: 2; TrainingError, CheckpointError, RunFailed: 3); OS errors are
sorted by errno. Set SCL_TRACEBACK=1 to get the traceback on stderr instead.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3
EXIT_INTERRUPTED = 130

# the user's environment: fix the path or the permissions, nothing was computed wrongly
_INPUT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
                 errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST}
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def describe_os_error(e: OSError) -> tuple[int, str]:
    """(exit code, message naming the file and the fix) of an OS error."""
    what = e.strerror or str(e)
    where = f" ({e.filename})" if e.filename else ""
    if e.errno in _SPACE_ERRNOS:
        return EXIT_RUN_FAILED, (f"{what}{where}: the disk is full. Nothing half-written was kept; free some space "
                                 "and run the same command again (a training run resumes from its last checkpoint)")
    if e.errno == errno.EROFS:
        return EXIT_BAD_INPUT, f"{what}{where}: the folder is on a read-only file system; write elsewhere (--out)"
    if e.errno in (errno.EACCES, errno.EPERM):
        return EXIT_BAD_INPUT, f"{what}{where}: no permission; fix the folder's permissions or write elsewhere (--out)"
    if e.errno in _INPUT_ERRNOS:
        return EXIT_BAD_INPUT, f"{what}{where}"
    return EXIT_RUN_FAILED, f"{type(e).__name__}: {what}{where}"


def _traceback_file(command: str) -> Path:
    """Where an unexpected error's traceback goes: logs/errors/ here, else the temp folder."""
    name = f"scl-{command}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    for folder in (Path("logs") / "errors", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(traceback.format_exc())
            return path.resolve()
        except OSError:
            continue
    raise OSError("no writable folder for the traceback")


def run_command(command: str, func: Callable[[], int]) -> int:
    """Run one `scl` command; every failure becomes a message on stderr and its exit code."""
    prefix = f"scl {command}"
    try:
        return func()
    except KeyboardInterrupt:
        print(f"\n{prefix}: interrupted. Nothing half-written was kept; resume by running the same command.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # SystemExit (argparse, sys.exit) passes through
        if os.environ.get("SCL_TRACEBACK"):
            raise
        code = getattr(type(e), "exit_code", None)
        if isinstance(code, int):
            print(f"{prefix}: error: {e}", file=sys.stderr)
            return code
        if isinstance(e, OSError):
            code, message = describe_os_error(e)
            print(f"{prefix}: error: {message}", file=sys.stderr)
            return code
        try:
            where = f"the full traceback is in {_traceback_file(command)}"
        except OSError:
            traceback.print_exc()
            where = "the traceback is above"
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"{prefix}: unexpected error: {type(e).__name__}: {first}\n{prefix}: {where}; "
              "please report it (SCL_TRACEBACK=1 prints it here)", file=sys.stderr)
        return EXIT_UNEXPECTED


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint, unusable device
    or fast-path setting). Says why."""

    exit_code = EXIT_RUN_FAILED
