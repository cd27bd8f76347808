"""Zip archives read from model folders (skops files are zips): checked before any member is read.

A zip's central directory declares every member's size; Python's reader never returns more than
the declared size, so refusing on the declared sizes bounds the memory a read can take. A member
compressed more than :data:`MAX_RATIO` times (skops stores its arrays uncompressed, ratio 1), a
total over the cap, too many members, a symbolic link or a path that leaves the archive is refused.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

from riskmodel.errors import ModelFileError

__all__ = ["MAX_MEMBERS", "MAX_RATIO", "check_zip", "max_unzipped_bytes"]

MAX_RATIO = 100
MAX_MEMBERS = 100_000
DEFAULT_MAX_MB = 2048  # a 500-tree forest of 10,000 patients is well under this
MAX_MB_VARIABLE = "RISKMODEL_MAX_MODEL_MB"


def max_unzipped_bytes() -> int:
    """The cap on a model archive's total uncompressed size (``RISKMODEL_MAX_MODEL_MB`` lifts it)."""
    raw = os.environ.get(MAX_MB_VARIABLE, "")
    try:
        mb = int(raw) if raw.strip() else DEFAULT_MAX_MB
    except ValueError:
        mb = DEFAULT_MAX_MB
    return max(mb, 1) << 20


def check_zip(path: Path) -> list[str]:
    """Check ``path``'s central directory, reading no member; return its member names.

    Raises :class:`ModelFileError` (one line) on anything a model file riskmodel writes never holds.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelFileError(f"{path}: not a readable zip archive ({type(exc).__name__})") from None
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"{path}: {len(infos)} members, over the {MAX_MEMBERS} a model file may hold")
    total, cap = 0, max_unzipped_bytes()
    names = []
    for info in infos:
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or ":" in name:
            raise ModelFileError(f"{path}: member {name[:60]!r} points outside the archive; refusing to read it")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ModelFileError(f"{path}: member {name[:60]!r} is a symbolic link; refusing to read it")
        if info.file_size > MAX_RATIO * max(info.compress_size, 1) and info.file_size > (1 << 20):
            raise ModelFileError(
                f"{path}: member {name[:60]!r} expands {info.file_size // max(info.compress_size, 1)} times "
                f"(over {MAX_RATIO}): a zip bomb, refusing to read it"
            )
        total += info.file_size
        if total > cap:
            raise ModelFileError(
                f"{path}: over {cap >> 20} MB uncompressed; refusing to read it "
                f"(set {MAX_MB_VARIABLE} to lift the cap for a model you trust)"
            )
        names.append(name)
    if len(set(names)) != len(names):
        raise ModelFileError(f"{path}: a member name appears twice; refusing to read it")
    return names
