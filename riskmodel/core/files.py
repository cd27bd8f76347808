"""Crash-safe writes: a killed process leaves the old file or the new one, never half of one.

Files are written to a temporary sibling, flushed to disk and renamed over the target (a rename is
atomic on POSIX within one file system). Folders are built beside their target under a hidden
temporary name and renamed, or their files moved, only once complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

__all__ = ["atomic_write_text", "process_alive", "retry_first_use", "sqlite_setup_lock", "staged_folder"]


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@contextmanager
def staged_folder(final: str | Path, *, merge: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it becomes ``final``.

    Without ``merge``, ``final`` must not exist or be empty, and the whole folder is renamed into
    place. With ``merge``, each file is renamed into ``final`` (so an existing report folder
    is updated file by file, each file whole). On any error the temporary folder is removed.
    """
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if merge and target.exists():
            for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
                dest = target / path.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
            shutil.rmtree(tmp)
        else:
            if target.exists():
                target.rmdir()  # only an empty folder may be replaced
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def retry_first_use(create: Callable[[], T], attempts: int = 6) -> T:
    """``create()``, retried when several workers set up the same new database at once.

    The first use of an empty Optuna or MLflow database creates its tables; two workers starting
    together can both try, and the loser fails on "already exists". After the winner is done the
    tables are there, so a retry after a short random pause succeeds.
    """
    import random
    import time

    for attempt in range(attempts):
        try:
            return create()
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}".lower()
            racing = any(
                k in text
                for k in (
                    "already exists",
                    "duplicate",
                    "uniqueviolation",
                    "unique constraint",
                    "alembic_version",  # two processes migrating a new MLflow store at once
                    "database is locked",
                )
            )
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.3, 1.5))
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def sqlite_setup_lock(url: str) -> Iterator[None]:
    """For a ``sqlite:///`` URL, hold an exclusive lock on ``<file>.lock`` while the block runs.

    SQLite cannot migrate a new database from two processes at once (MLflow's and Optuna's
    schema upgrades are not one transaction there), so workers on one machine open such a store
    one at a time. Other URLs (PostgreSQL, a tracking server) pass straight through.
    """
    if not url.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock = Path(url.removeprefix("sqlite:///").split("?", 1)[0] + ".lock")  # the file, not its query
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def process_alive(pid: int) -> bool:
    """Whether a process with this ID exists on this host (signal 0 probes without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
