"""The PHI guard: what may leave the clinic in MLflow runs, logs and shared reports.

Every param, tag, metric name, text artifact, model file and shared report passes
:meth:`PhiGuard.check` before it is written. ``tracking.py`` calls it for everything it writes to
MLflow, and ``report.py`` calls it for every file. A refusal raises :class:`PrivacyError`, which
names the field and the rule. It never quotes the offending value, because the message would leak it.

Refused (after HIPAA Safe Harbor's identifiers and date elements):

* **full dates**: a day or a month with its year (2014-03-17, 17/03/2014, 03/2014, 17 Mar 2014,
  March 2014, …). A year alone is allowed.
* **identifier values**: any patient ID of the cohort, or any value of a column riskmodel does
  not use (names, MRNs, notes), appearing as a token. Purely numeric IDs shorter than 4 digits
  can't be told from ordinary numbers; they are checked only through the two rules below. So
  are IDs that are the export's row numbers (every ID a whole number from 0 to the rows read,
  as in a file numbered 1 to n): there every count of patients up to n, and every year, is
  somebody's ID, and a report could state neither.
* **free text from the input**: any text cell of 8 characters or more from a column riskmodel does
  not use, appearing anywhere.
* **patient-level rows**: a table whose header names two or more cohort columns, or a list
  param as long as the cohort (one value per patient).

PNG images (files, or inlined in HTML as ``data:image/png;base64,…``) are checked through their
text chunks, the only place a PNG carries text; their pixel data is not text, and scanning it as
text would refuse reports on chance byte sequences that look like "03/2014".

Patient IDs that must appear in a log are written as :func:`pseudonym`: a salted SHA-256, with a
salt kept per installation (``RISKMODEL_SALT``, else the file ``$RISKMODEL_HOME/salt``, default
``~/.config/riskmodel/salt``, created on first use with mode 600). The salt is never logged.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from riskmodel.core.pseudonyms import pseudonym, salt
from riskmodel.errors import UserInputError

__all__ = ["PhiGuard", "PrivacyError", "SubstringSet", "pseudonym", "salt", "years_only"]

_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_YEAR = r"(?:19|20)\d\d"
_MM = r"(?:0?[1-9]|1[0-2])"
_DD = r"(?:0?[1-9]|[12]\d|3[01])"
_DATE_PATTERNS = [
    rf"(?<![\d.]){_YEAR}[-/]{_MM}(?:[-/]{_DD})?(?![\d])",  # 2014-03-17, 2014/03
    rf"(?<![\d.]){_YEAR}\.{_MM}\.{_DD}(?![\d])",  # 2014.03.17 (a dot needs the day: 2014.3 is a number)
    rf"(?<![\d.]){_DD}[-/.]{_DD}[-/.]{_YEAR}(?!\d)",  # 17/03/2014, 17.3.2014, 3/17/2014
    rf"(?<![\d.]){_MM}[-/]{_YEAR}(?!\d)",  # 03/2014
    rf"\b{_DD}(?:st|nd|rd|th)?[ -]{_MONTHS}\.?,?[ -]{_YEAR}\b",  # 17 Mar 2014
    rf"\b{_MONTHS}\.?[ -]{_DD}(?:st|nd|rd|th)?,?[ -]{_YEAR}\b",  # Mar 17, 2014
    rf"\b{_MONTHS}\.?,?[ -]{_YEAR}\b",  # March 2014
]
_DATE = re.compile("|".join(f"(?:{p})" for p in _DATE_PATTERNS), re.IGNORECASE)
# every date above holds a year; around each place a year could start, the date pattern is tried
# on a window wide enough for the longest date ("September 17th, 2014", "2014-03-17") and the
# characters its look-arounds read, instead of at every position of a long text
_YEAR_AT = re.compile(r"(?=(?:19|20)\d\d)")
_BEFORE_YEAR, _AFTER_YEAR = 40, 24


def _has_date(text: str) -> bool:
    """``_DATE.search(text) is not None``, trying the pattern only near the years in ``text``."""
    if len(text) < 256:
        return _DATE.search(text) is not None
    for year in _YEAR_AT.finditer(text):
        p = year.start()
        end = min(len(text), p + _AFTER_YEAR)
        found = _DATE.search(text, max(0, p - _BEFORE_YEAR), end)
        if found is not None and (found.end() + 1 < end or end == len(text)):
            return True
        if found is not None and _DATE.search(text, found.start()) is not None:
            return True  # a match at the window's edge: confirmed on the whole text
    return False


# a word-like token; digits right after a dot, or before ".<digit>", belong to a decimal number
_INLINE_PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_text(data: bytes) -> str:
    r"""The text a PNG carries: its tEXt, zTXt and iTXt chunks (keywords and values), one per line.

    >>> png_text(_PNG_MAGIC + (9).to_bytes(4, "big") + b"tEXtTitle\x00x2y" + bytes(4))
    'Title x2y'
    """
    import zlib

    out, pos = [], len(_PNG_MAGIC)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"tEXt":
            out.append(body.replace(b"\x00", b" "))
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\x00")
            try:
                out.append(key + b" " + zlib.decompress(rest[1:]))
            except zlib.error:
                out.append(body)  # undecodable: check its raw bytes
        elif kind == b"iTXt":
            out.append(body.replace(b"\x00", b" "))
    return "\n".join(chunk.decode("utf-8", errors="replace") for chunk in out)


def _without_pixels(text: str) -> str:
    """``text`` with every inlined PNG replaced by the text chunks it carries."""
    import base64
    import binascii

    def chunks(match: re.Match[str]) -> str:
        try:
            return " " + png_text(base64.b64decode(match.group(1))) + " "
        except (binascii.Error, ValueError):
            return match.group(0)

    return _INLINE_PNG.sub(chunks, text) if "data:image/png;base64," in text else text


_TOKEN = re.compile(r"(?<![\w.])[A-Za-z0-9][A-Za-z0-9_\-]*(?!\.\d)(?![\w])")


def _numeric_npy(fh: Any) -> bool:
    """Whether an open ``.npy`` member holds numbers or booleans only (read from its header)."""
    import numpy as np

    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            _, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except ValueError:
        return False
    return dtype.kind in "biuf" and dtype.fields is None


def _npy_strings(data: bytes) -> str | None:
    """The elements of a ``.npy`` array of strings, one per line; None for any other array.

    numpy stores a ``U`` array as UTF-32, whose bytes do not read as text (every character is
    followed by three NULs), so the identifiers in it would pass a check of its bytes.

    >>> import io
    >>> import numpy as np
    >>> buffer = io.BytesIO()
    >>> np.save(buffer, np.array(["A-17", "B-2"]), allow_pickle=False)
    >>> print(_npy_strings(buffer.getvalue()))
    A-17
    B-2
    """
    import io

    import numpy as np

    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None  # an object array (a pickle) or not an array: its bytes are checked as text
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "US":
        return None
    return "\n".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.ravel())


class PrivacyError(UserInputError):
    """Something about to be logged or shared looks like protected health information."""


def years_only(text: str) -> str:
    """Replace every day- or month-precision date in ``text`` by its year.

    >>> years_only("implants 2013-01 to 2019-03; seen 17 Mar 2014")
    'implants 2013 to 2019; seen 2014'
    """

    def year(match: re.Match[str]) -> str:
        found = re.search(_YEAR, match.group(0))
        return found.group(0) if found else ""

    return _DATE.sub(year, text)


def _identifier_like(value: str) -> bool:
    return len(value) >= 4 or any(ch.isalpha() for ch in value)


def _row_numbers(ids: list[str], rows: int) -> bool:
    """Whether the IDs are row numbers: whole numbers (no leading zero) from 0 to ``rows``.

    >>> _row_numbers(["1", "2", "3"], 3), _row_numbers(["1", "2", "7874"], 3), _row_numbers(["007", "2"], 3)
    (True, False, False)
    """
    return bool(ids) and all(v.isdecimal() and (v == "0" or v[0] != "0") and int(v) <= rows for v in ids)


_WINDOW = 16  # patterns are found by a hash of their first (up to) 16 characters
_BASE_INT, _MASK = 1_000_003, 2**64 - 1
_BASE = np.uint64(_BASE_INT)


def _code_points(text: str) -> np.ndarray:
    """``text`` as an array of its code points (lone surrogates included)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)


def _window_hashes(points: np.ndarray, k: int) -> np.ndarray:
    """The polynomial hash (mod 2**64) of every window of ``k`` code points, one per start."""
    n = len(points) - k + 1
    h = np.zeros(max(n, 0), dtype=np.uint64)
    if n <= 0:
        return h
    for j in range(k):  # numpy's uint64 arithmetic wraps silently: the hash is mod 2**64
        h = h * _BASE + points[j : j + n]
    return h


class SubstringSet:
    """A set of strings, found anywhere in a text in one pass: ``any(p in text for p in patterns)``.

    Built once per cohort. Each pattern is filed under the hash of its first ``k = min(len, 16)``
    characters; a text's windows of each length ``k`` are hashed at once (numpy), the hashes
    looked up in the sorted keys, and the few candidates verified with ``str.startswith``. A
    check costs the text's length, not the number of patterns (100,000 notes scanned one by one
    cost 1.2 s per check; see ``benchmarks/phi_guard.py``).

    >>> found = SubstringSet(["John Smith", "needs review"])
    >>> found.search("seen by John Smith today"), found.search("John Smit"), found.search("")
    (True, False, False)
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        buckets: dict[int, dict[int, list[str]]] = {}
        for p in sorted(set(patterns)):
            if not p:
                continue
            k = min(len(p), _WINDOW)
            key = 0
            for ch in p[:k]:  # the hash _window_hashes computes, in Python integers
                key = (key * _BASE_INT + ord(ch)) & _MASK
            buckets.setdefault(k, {}).setdefault(key, []).append(p)
        self._buckets = {k: {h: tuple(ps) for h, ps in b.items()} for k, b in buckets.items()}
        self._keys = {k: np.array(sorted(b), dtype=np.uint64) for k, b in buckets.items()}
        self.size = sum(len(v) for b in buckets.values() for v in b.values())

    def search(self, text: str) -> bool:
        """Whether any pattern occurs in ``text``."""
        if not self.size or not text:
            return False
        points = _code_points(text)
        for k, keys in self._keys.items():
            hashes = _window_hashes(points, k)
            if not len(hashes):
                continue
            where = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
            for i in np.flatnonzero(keys[where] == hashes):
                if text.startswith(self._buckets[k][int(hashes[i])], int(i)):
                    return True
        return False


def _own_tokens(values: Any) -> tuple[set[str], list[str]]:
    """The tokens, and the texts, of an experiment's own config values (nested dicts and lists)."""
    tokens: set[str] = set()
    texts: list[str] = []
    stack = [values]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
            stack.extend(str(k) for k in v)
        elif isinstance(v, list | tuple | set | frozenset):
            stack.extend(v)
        elif isinstance(v, bool) or v is None:
            continue
        else:
            if isinstance(v, float) and math.isfinite(v) and v.is_integer():
                tokens.add(str(int(v)))
            text = str(v)
            texts.append(text)
            tokens.update(_TOKEN.findall(text))
            tokens.add(text.strip())
    return tokens, texts


@dataclass(frozen=True)
class PhiGuard:
    """The checkpoint; build it with :meth:`for_cohort` so it knows the cohort's identifiers."""

    identifiers: frozenset[str] = frozenset()
    free_text: tuple[str, ...] = ()
    n_patients: int = 0
    cohort_columns: frozenset[str] = field(default_factory=frozenset)
    # compiled once, in __post_init__: the identifiers with a space, and the free text, as
    # substring sets (the other identifiers are single tokens, looked up in the set above)
    _spaced: SubstringSet = field(init=False, repr=False, compare=False)
    _free: SubstringSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_spaced", SubstringSet(v for v in self.identifiers if " " in v))
        object.__setattr__(self, "_free", SubstringSet(self.free_text))

    @classmethod
    def for_cohort(cls, cohort: Any, *, own: Any = None) -> PhiGuard:
        """A guard for a :class:`~riskmodel.cohort.Cohort` (IDs, unused columns' values, size).

        ``own``: the experiment's own config values (a nested dict, as logged). They are the
        user's settings, logged with every run, so none of them is treated as an identifier or
        free text: a patient whose ID equals the seed (2013) does not refuse a train.
        """
        from riskmodel.cohort.contract import COLUMNS

        data = getattr(cohort, "data", cohort)
        sensitive: Iterable[str] = getattr(cohort, "sensitive", ())
        ids = [str(v).strip() for v in data["patient_id"].dropna()] if "patient_id" in data.columns else []
        values = {v for v in [*ids, *sensitive] if v}
        if _row_numbers(ids, getattr(cohort, "n_read", None) or len(data)):
            values -= set(ids)
        if own is not None:
            tokens, texts = _own_tokens(own)
            joined = "\n".join(texts)
            values = {v for v in values if v not in tokens and (_TOKEN.fullmatch(v) or v not in joined)}
        identifiers = frozenset(v for v in values if _identifier_like(v))
        free_text = tuple(sorted(v for v in values if len(v) >= 8 and not re.fullmatch(r"[\w\-]+", v)))
        # the contract's columns and the cohort's outcome columns (derived ones too: lc_cr_months)
        columns = frozenset(c.name for c in COLUMNS) | frozenset(getattr(cohort, "outcomes", ()))
        declaration = getattr(cohort, "declaration", None)
        if declaration is not None:  # a declared cohort's own columns, by name and by header
            columns |= frozenset(str(c).lower() for c in data.columns)
            columns |= frozenset(c.lower() for c in declaration.source_columns())
        return cls(identifiers, free_text, len(data), columns)

    # ------------------------------------------------------------------ checks
    def check(self, field: str, value: Any) -> None:
        """Refuse ``value`` (text, bytes, number, or a mapping / list of them) under ``field``."""
        if value is None or isinstance(value, bool | int | float):
            return
        if isinstance(value, bytes):
            self.check_text(field, value.decode("utf-8", errors="replace"))
        elif isinstance(value, dict):
            for k, v in value.items():
                self.check_text(f"{field} key", str(k))
                self.check(f"{field}.{k}", v)
        elif isinstance(value, list | tuple):
            self._check_sequence(field, value)
            for i, v in enumerate(value):
                self.check(f"{field}[{i}]", v)
        else:
            self.check_text(field, str(value))

    def check_text(self, field: str, text: str) -> None:
        """The text rules: dates, identifiers, free text, patient-level tables and sequences."""
        text = _without_pixels(text)
        if _has_date(text):
            raise PrivacyError(f"refused to write {field}: it contains a full date (only years may be shared)")
        if self.identifiers and (not self.identifiers.isdisjoint(_TOKEN.findall(text)) or self._spaced.search(text)):
            raise PrivacyError(
                f"refused to write {field}: it contains a patient identifier or a value of an unused input column"
            )
        if self._free.search(text):
            raise PrivacyError(f"refused to write {field}: it contains free text copied from the input")
        self._check_table(field, text)

    def _check_sequence(self, field: str, values: list[Any] | tuple[Any, ...]) -> None:
        if self.n_patients >= 10 and len(values) >= self.n_patients:
            raise PrivacyError(f"refused to write {field}: a list of {len(values)} values, one per patient")

    def _check_table(self, field: str, text: str) -> None:
        head, _, rest = text.partition("\n")
        if not rest.strip() or not self.cohort_columns:
            return
        for sep in (",", "\t", ";", "|"):
            cells = {c.strip().strip('"').lower() for c in head.split(sep)}
            if len(cells & self.cohort_columns) >= 2:
                raise PrivacyError(
                    f"refused to write {field}: it is a table with patient-level cohort columns "
                    f"({', '.join(sorted(cells & self.cohort_columns)[:4])})"
                )

    def check_file(self, path: Path, name: str | None = None) -> None:
        """Check a file's bytes (text or binary) before it is logged or shared.

        A zip archive (a skops estimator) is checked member by member: its numeric arrays are
        numbers, which carry no identifier or date, and are skipped; an array of strings is
        checked by its elements, and every other member (the schema, text or object arrays) as
        text. A forest of 800 patients took 84 s to scan as one block of bytes.
        """
        label = name or path.name
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.infolist():
                    with archive.open(member) as fh:
                        if member.filename.endswith(".npy") and _numeric_npy(fh):
                            continue
                    data = archive.read(member)
                    strings = _npy_strings(data) if member.filename.endswith(".npy") else None
                    text = strings if strings is not None else data.decode("utf-8", "replace")
                    self.check_text(f"{label}/{member.filename}", text)
            return
        data = path.read_bytes()
        if data.startswith(_PNG_MAGIC):
            self.check_text(label, png_text(data))
        else:
            self.check_text(label, data.decode("utf-8", errors="replace"))

    def check_tree(self, folder: Path, label: str) -> None:
        """Check every file under ``folder``."""
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.check_file(path, f"{label}/{path.relative_to(folder)}")
