"""Crash-safe writes: a killed process leaves the old file or the new one, never half of one.

Files are written to a temporary sibling, flushed to disk and renamed over the target (a rename is
atomic on POSIX within one file system). Folders are built beside their target under a hidden
temporary name and renamed, or their files moved, only once complete.

Only regular files are replaced: a target that is a symbolic link, a device (``/dev/null``), a
FIFO or a socket is refused with a :class:`~riskmodel.errors.UserInputError`, never replaced and
never written through. A full disk (or quota, or read-only file system) is one line naming the
output, with the old file left as it was. Temporaries are named ``.<target>.<pid>.<random>.tmp``;
each write first removes those of its folder whose process is gone (a killed run's), and
untagged ones of an older riskmodel after :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from riskmodel.errors import UserInputError, refuse_special_file, require_writable

T = TypeVar("T")

__all__ = [
    "STALE_AFTER_S",
    "atomic_write_bytes",
    "atomic_write_text",
    "clean_stale_temporaries",
    "disk_error",
    "process_alive",
    "retry_first_use",
    "sqlite_setup_lock",
    "staged_file",
    "staged_folder",
]

STALE_AFTER_S = (
    15 * 60
)  # an untagged temporary older than this is a dead run's (no write takes so long between touches)
_TAGGED = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]{8}\.tmp$")  # ours: .<target>.<pid>.<random>.tmp
_UNTAGGED = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # riskmodel before the PID tag
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def disk_error(exc: OSError, target: Path) -> UserInputError | None:
    """A full disk, a quota, a too-large file or a read-only file system as one line about
    ``target``; None for other OS errors."""
    if exc.errno not in _FULL:
        return None
    reason = os.strerror(exc.errno).lower() if exc.errno is not None else "write failed"
    return UserInputError(f"{target}: cannot write it ({reason}); nothing already there was changed")


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries riskmodel left in ``folder`` when a run was killed; return them.

    Only names of riskmodel's own pattern are touched: tagged with a process ID that no longer
    runs, or (untagged, from an older riskmodel) last changed more than :data:`STALE_AFTER_S` ago.
    A tagged temporary of a living process, another user's, or anything else is left alone.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        tagged = _TAGGED.match(entry.name)
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_uid != os.getuid() or stat.S_ISLNK(info.st_mode):
            continue
        if tagged:
            stale = int(tagged[1]) != os.getpid() and not process_alive(int(tagged[1]))
        else:
            stale = bool(_UNTAGGED.match(entry.name)) and now - info.st_mtime > STALE_AFTER_S
        if not stale:
            continue
        path = Path(entry.path)
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _file_mode(target: Path) -> int:
    """The permissions the written file gets: the replaced file's, else what ``open`` would give
    (mkstemp's temporaries are private, 0600, which would hide a shared score file)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (setting it to read it
    would briefly loosen it for every other thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically.

    ``path`` must be a regular file or not exist: a symbolic link or a special file (device,
    FIFO, socket) is refused, not replaced. A full disk leaves the old file whole and raises a
    one-line :class:`~riskmodel.errors.UserInputError`.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, as :func:`atomic_write_text` does."""
    target = Path(path)
    require_writable(target)
    clean_stale_temporaries(target.parent)
    mode = _file_mode(target)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        friendly = disk_error(exc, target)
        if friendly is None:
            raise
        raise friendly from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


@contextmanager
def staged_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write in several steps (a streamed output); on
    success it is flushed to disk and renamed over ``path``, on any error removed, so ``path`` is
    either the old file, untouched, or the complete new one. Refusals as :func:`atomic_write_text`."""
    target = Path(path)
    require_writable(target)
    clean_stale_temporaries(target.parent)
    mode = _file_mode(target)
    fd, name = tempfile.mkstemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        friendly = disk_error(exc, target)
        if friendly is None:
            raise
        raise friendly from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def staged_folder(final: str | Path, *, merge: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it becomes ``final``.

    Without ``merge``, ``final`` must not exist or be empty, and the whole folder is renamed into
    place. With ``merge``, each file is renamed into ``final`` (so an existing report folder
    is updated file by file, each file whole); ``final`` may then be a link to a folder, which is
    written into on purpose, but a file in it that is a link or a special file is refused before
    any is replaced. On any error the temporary folder is removed.
    """
    target = Path(final)
    if target.is_symlink() and not merge:
        raise UserInputError(f"{target}: is a symbolic link; give the folder it points to")
    if target.exists():
        require_writable(target, folder=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if merge and target.exists():
            files = sorted(p for p in tmp.rglob("*") if p.is_file())
            for path in files:  # every target checked before any is replaced
                refuse_special_file(target / path.relative_to(tmp))
            for path in files:
                dest = target / path.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
            shutil.rmtree(tmp)
        else:
            if target.exists():
                target.rmdir()  # only an empty folder may be replaced
            os.rename(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        friendly = disk_error(exc, target)
        if friendly is None:
            raise
        raise friendly from None
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
