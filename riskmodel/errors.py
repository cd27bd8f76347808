"""One exception family for riskmodel.

User errors (bad files, bad configs, unsafe requests) derive from :class:`UserInputError`
and carry exit code 2; the CLI prints their message and never a traceback.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from riskmodel.core.pseudonyms import pseudonym

__all__ = [
    "NUMERICAL_FAILURES",
    "CohortFileError",
    "CohortValidationError",
    "FeatureError",
    "GuaranteeTimeBiasError",
    "ModelFileError",
    "Problem",
    "RiskModelError",
    "RiskModelWarning",
    "UserInputError",
    "is_own_error",
    "one_line",
    "own_warnings_silenced",
    "refuse_special_file",
    "require_writable",
]

Severity = Literal["error", "warning"]


class RiskModelWarning(UserWarning):
    """A warning raised by riskmodel itself (the test suite turns these into errors)."""


@contextmanager
def own_warnings_silenced() -> Iterator[None]:
    """Silence riskmodel's own warnings inside the block: for a fit whose non-convergence is
    counted or reported elsewhere (a fold, a resample, a slope refit), not printed each time."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RiskModelWarning)
        yield


class RiskModelError(Exception):
    """Base class of every error riskmodel raises on purpose."""

    exit_code = 1


class UserInputError(RiskModelError, ValueError):
    """The user's input (file, option, config) is wrong; exit code 2."""

    exit_code = 2


class ModelFileError(UserInputError):
    """A model directory is missing, tampered with, or not a riskmodel model."""


class CohortFileError(UserInputError):
    """A cohort or mapping file cannot be read at all (missing, empty, wrong format)."""


class FeatureError(UserInputError):
    """Features cannot be built from the data given (missing values, unknown categories)."""


class GuaranteeTimeBiasError(UserInputError):
    """A feature measured after time zero was requested without the matching landmark."""


# What a fit or a metric may raise on one fold's or resample's data: it fails that fold, not the run.
# (numpy's LinAlgError is a ValueError; naming it would import numpy with every command's --help.)
NUMERICAL_FAILURES: tuple[type[Exception], ...] = (ValueError, ArithmeticError)


MAX_LINE_CHARS = 400  # one problem's line; longer text is cut with an ellipsis


def one_line(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """``text`` as one line of at most ``limit`` characters: line breaks and control characters
    become spaces, and a longer text is cut with an ellipsis (a message quoting a huge value
    stays readable).

    >>> one_line("a\\nb" + "x" * 10, limit=8)
    'a bxx...'
    """
    flat = "".join(c if c.isprintable() else " " for c in text)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def is_own_error(exc: BaseException) -> bool:
    """Whether ``exc`` is riskmodel's own error about the user's input (a bad parameter, a bad
    config), which must stop the work rather than count as a failed fold.

    A :class:`FeatureError` in one fold (a category its training part never saw) is about that
    fold's data, so it is not.
    """
    return isinstance(exc, RiskModelError) and not isinstance(exc, FeatureError)


def _show(value: object) -> str:
    # a numpy or pandas value can only exist once its module is imported: no import here
    np, pd = sys.modules.get("numpy"), sys.modules.get("pandas")
    if np is not None and isinstance(value, np.generic):
        value = value.item()
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return "(empty)"
    if isinstance(value, float) and value != value:
        return "(empty)"
    if isinstance(value, str) and not value.strip():
        return "(empty)" if not value else repr(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Problem:
    """One finding about a cohort: where it is, what value, and which rule it breaks.

    ``row`` is the row as a user sees it in a spreadsheet (the header is row 1), or the index
    label for an in-memory table. ``None`` fields are omitted from the message.

    >>> str(Problem("must be at most 400 Gy", file="c.csv", row=5, column="d90_gy", value="450"))
    "error: c.csv, row 5, column d90_gy, value '450': must be at most 400 Gy"
    """

    rule: str
    file: str | None = None
    row: object = None
    column: str | None = None
    value: object = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column}")
        if self.value is not None:
            shown = _show(self.value)
            if self.column == "patient_id" and str(self.value).strip() and shown != "(empty)":
                shown = pseudonym(self.value)  # a patient ID is never echoed, only its pseudonym
            where.append(f"value {shown}")
        prefix = ", ".join(where)
        return f"{self.severity}: {prefix}: {self.rule}" if prefix else f"{self.severity}: {self.rule}"


def refuse_special_file(path: object, *, option: str = "output") -> None:
    """Refuse a file target that exists and is a symbolic link, a device, a FIFO or a socket."""
    import stat
    from pathlib import Path

    p = Path(str(path))
    try:
        mode = p.lstat().st_mode
    except OSError:
        return  # not there (yet): nothing to refuse
    if stat.S_ISLNK(mode):
        raise UserInputError(
            f"{option} {p}: is a symbolic link; riskmodel replaces only regular files (give the path it points to)"
        )
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise UserInputError(
            f"{option} {p}: is a device, FIFO or socket, not a regular file; riskmodel writes only regular files"
        )


def require_writable(path: object, *, folder: bool = False, option: str = "output") -> None:
    """Refuse, before any work, an output path that cannot be written (missing parent, wrong kind).

    A file output that exists must be a regular file: riskmodel replaces it whole (see
    :func:`riskmodel.core.files.atomic_write_text`), so a symbolic link, a device such as
    ``/dev/null``, a FIFO or a socket is refused rather than replaced or written through.
    """
    from pathlib import Path

    p = Path(str(path))
    if folder and p.exists() and not p.is_dir():
        raise UserInputError(f"{option} {p}: is a file; give a folder")
    if not folder and p.is_dir():
        raise UserInputError(f"{option} {p}: is a folder; give a file name")
    if not folder:
        refuse_special_file(p, option=option)
    parent = p.parent if not folder or not p.exists() else p
    if not parent.exists():
        raise UserInputError(f"{option} {p}: the folder {parent} does not exist")


class CohortValidationError(UserInputError):
    """The cohort breaks one or more rules of the contract; every problem is listed."""

    def __init__(self, problems: Sequence[Problem], source: str = "cohort") -> None:
        self.problems = [p for p in problems if p.severity == "error"]
        self.warnings = [p for p in problems if p.severity == "warning"]
        n = len(self.problems)
        head = f"{source}: {n} error{'s' if n != 1 else ''} found; the cohort was not loaded"
        super().__init__("\n".join([head, *(one_line(str(p)) for p in self.problems)]))
