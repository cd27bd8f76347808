"""The PHI guard on files: zip archives (skops estimators) are read member by member.

A member holding an identifier is refused and named; a numeric ``.npy`` member is skipped unread
(shown by one whose bytes spell an identifier and a date yet passes: had it been scanned as
text, it would have been refused); an array of strings is read by its elements.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from riskmodel.privacy import PhiGuard, PrivacyError

GUARD = PhiGuard(identifiers=frozenset({"KX90007", "Ms Quillfeather 9012"}))


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def archive(folder: Path, **members: bytes) -> Path:
    path = folder / "estimator.skops"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name.replace("__", "/"), data)
    return path


# numbers whose bytes happen to spell an identifier and a full date
SPELLING = npy(np.frombuffer(b"KX90007 2014-03-17 Ms Quillfeather 9012 ", dtype=np.uint8))


def test_the_numbers_really_spell_an_identifier_so_scanning_them_as_text_would_refuse() -> None:
    assert b"KX90007" in SPELLING
    with pytest.raises(PrivacyError):
        GUARD.check_text("bytes", SPELLING.decode("utf-8", "replace"))


def test_a_numeric_npy_member_is_skipped_unread(tmp_path: Path) -> None:
    path = archive(tmp_path, **{"arrays__leaf_values.npy": SPELLING, "schema.json": b'{"n_estimators": 100}'})
    GUARD.check_file(path)
    floats = archive(tmp_path, **{"a.npy": npy(np.array([[2014.03, 17.0], [np.nan, 1e300]]))})
    PhiGuard(identifiers=frozenset({"2014"})).check_file(floats)


@pytest.mark.parametrize(
    ("member", "data"),
    [
        ("schema.json", b'{"feature_names_in_": ["age", "KX90007"]}'),
        ("notes.txt", b"fitted on Ms Quillfeather 9012's record"),
        ("arrays__names.npy", npy(np.array(["age", "KX90007"]))),  # UTF-32: its bytes do not read as text
        ("arrays__names_bytes.npy", npy(np.array([b"KX90007"]))),
        ("arrays__broken.npy", b"\x93NUMPY but not really KX90007"),
    ],
)
def test_a_member_holding_an_identifier_is_refused_and_named(tmp_path: Path, member: str, data: bytes) -> None:
    path = archive(tmp_path, **{"arrays__leaf_values.npy": SPELLING, member: data})
    with pytest.raises(PrivacyError, match="patient identifier") as info:
        GUARD.check_file(path, "model/estimator.skops")
    assert f"model/estimator.skops/{member.replace('__', '/')}" in str(info.value)
    assert "KX90007" not in str(info.value)  # the refusal never quotes the value


def test_a_date_in_a_member_is_refused(tmp_path: Path) -> None:
    path = archive(tmp_path, **{"schema.json": b'{"fitted": "2014-03-17"}'})
    with pytest.raises(PrivacyError, match="full date"):
        GUARD.check_file(path)
