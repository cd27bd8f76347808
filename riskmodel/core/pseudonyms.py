"""Pseudonyms: a salted, one-way stand-in for a patient ID wherever one must be shown.

The salt is kept per installation (``RISKMODEL_SALT``, else the file ``$RISKMODEL_HOME/salt``,
default ``~/.config/riskmodel/salt``, created on first use with mode 600) and never logged.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

__all__ = ["pseudonym", "pseudonyms", "salt"]


def salt() -> bytes:
    """This installation's salt for pseudonyms (created on first use; never logged)."""
    env = os.environ.get("RISKMODEL_SALT")
    if env:
        return env.encode()
    home = Path(os.environ.get("RISKMODEL_HOME", Path.home() / ".config" / "riskmodel"))
    path = home / "salt"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        home.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(value)
        return value


def pseudonym(patient_id: object) -> str:
    """A salted, one-way stand-in for a patient ID, stable on this installation.

    >>> p = pseudonym("MRN-0042")
    >>> p.startswith("pid:"), len(p), p == pseudonym(" MRN-0042 "), "0042" in p
    (True, 16, True, False)
    """
    digest = hashlib.sha256(salt() + b"\x00" + str(patient_id).strip().encode()).hexdigest()
    return f"pid:{digest[:12]}"


def pseudonyms(patient_ids: Iterable[object]) -> list[str]:
    """:func:`pseudonym` of each ID, the salt read once (a file of patients, not one per call).

    >>> pseudonyms(["MRN-0042", " MRN-0042"]) == [pseudonym("MRN-0042")] * 2
    True
    """
    prefix = hashlib.sha256(salt() + b"\x00")
    out = []
    for pid in patient_ids:
        h = prefix.copy()
        h.update(str(pid).strip().encode())
        out.append(f"pid:{h.hexdigest()[:12]}")
    return out
