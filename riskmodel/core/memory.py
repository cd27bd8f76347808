"""Bounded peak memory: freed heap pages handed back, and skops files written straight to disk.

Two things raised the peak memory of ``riskmodel train`` at registry scale without changing any
number (issue 21, measured with memray and RSS sampling at 20,000 patients):

- skops's ``dump`` builds the whole zip in a ``BytesIO`` before writing it: a second, in-memory
  copy of a random forest's node arrays (570 MB for one cause of a 20,000-patient forest).
  :func:`dump_skops` writes the same members, in the same order, to the file as they are made.
- a forest's trees are built in worker threads, whose malloc arenas keep the pages of a freed
  model (the held-out split's forest) mapped: the next forest is built beside them.
  :func:`release_freed_memory` asks glibc to return them (``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
from pathlib import Path
from typing import Any
from zipfile import ZIP_STORED, ZipFile


@functools.cache
def _trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)


def release_freed_memory() -> None:
    """Return the heap pages of freed objects to the operating system (glibc's ``malloc_trim``);
    nothing happens where the C library has no such call (macOS, musl). No value changes."""
    trim = _trim()
    if trim is not None:
        trim(0)


def dump_skops(obj: Any, path: Path) -> None:
    """``skops.io.dump(obj, path)`` (uncompressed, skops's default) with the zip written to
    ``path`` as it is built, not first to memory: the same members with the same bytes."""
    import skops
    from skops.io._utils import SaveContext, get_state  # skops's own dump, without its BytesIO

    with ZipFile(path, "w", compression=ZIP_STORED) as zip_file:
        context = SaveContext(zip_file=zip_file)
        state = get_state(obj, context)
        context.clear_memo()
        state["protocol"] = context.protocol
        state["_skops_version"] = skops.__version__
        zip_file.writestr("schema.json", json.dumps(state, indent=2))
