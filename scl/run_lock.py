"""One `scl train` per run folder at a time, and no stale temporary files in it.

`run_lock(folder)` takes an exclusive `flock` on `<folder>/.scl-train.lock` for the life
of the run; a second `scl train` on the same folder is refused at once (RunLocked, exit 2)
instead of racing the first and leaving the last writer's files. The kernel drops the lock
when its holder dies (even by SIGKILL), so a killed run never leaves the folder locked.

Under the lock, `*.tmp` files in the folder are leftovers of writes that were killed
(scl.io writes to `<name>.<random>.tmp` and renames): nobody else can be writing them, so
they are deleted, by the run when it starts and by the lock when it is released. The second
sweep is for Ctrl-C: an interrupt that lands inside a write before the writer has the
temporary's name (inside `tempfile.mkstemp`) leaves a file that no `except` can remove.
`.dvcignore` keeps both the lock and such leftovers out of DVC.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from scl.errors import RunLocked

log = logging.getLogger("scl.run_lock")

LOCK_NAME = ".scl-train.lock"


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid else "another process"


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike):
    """Hold the run folder `folder` (created if needed) exclusively, or raise RunLocked."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(
                f"{folder} is in use by another `scl train` ({_holder(path)}); two runs in one folder would "
                "overwrite each other. Wait for it to end, or give this run another --out") from None
        except BaseException:
            os.close(fd)
            raise
        # a holder that just finished unlinks the file: make sure we locked the one in place
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            remove_stray_temporaries(folder)  # still ours: nothing else writes here while we hold it
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def remove_stray_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete `*.tmp` leftovers of killed writes in `folder` (call it only under run_lock)."""
    removed = []
    for p in sorted(Path(folder).glob("*.tmp")):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.warning("removed %d temporary file(s) left by an interrupted write: %s", len(removed),
                    ", ".join(p.name for p in removed))
    return removed
