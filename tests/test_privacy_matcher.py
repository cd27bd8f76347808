"""The PHI guard's compiled matchers (issue 17, part 7) decide exactly as the scans they replace:
``snippet in text`` for every value, and the date pattern tried at every position."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskmodel.privacy import _DATE, _TOKEN, PhiGuard, PrivacyError, SubstringSet, _has_date

# a small alphabet, so that random patterns and texts meet often (with a space, and a non-ASCII letter)
LETTERS = "ab c-é1"
patterns = st.lists(st.text(LETTERS, min_size=1, max_size=24), max_size=30)
texts = st.text(LETTERS, max_size=400)


@settings(max_examples=300, deadline=None)
@given(patterns, texts)
def test_the_substring_set_finds_a_pattern_exactly_when_a_scan_would(found: list[str], text: str) -> None:
    assert SubstringSet(found).search(text) == any(p in text for p in found)


@settings(max_examples=200, deadline=None)
@given(patterns, st.integers(0, 400), st.integers(0, 29))
def test_a_pattern_planted_anywhere_is_found(found: list[str], at: int, which: int) -> None:
    if not found:
        return
    text = ("xyz " * 100)[:at] + found[which % len(found)] + "q" * 20
    assert SubstringSet(found).search(text)


DATE_PARTS = [
    "2014", "1999", "2020", "03", "3", "17", "31", "12", "-", "/", ".", " ", ", ", "Mar", "march", "Sept",
    "th", "st", "0", "7", "x", "v", "e", "\n",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(DATE_PARTS), max_size=200), st.integers(0, 300))
def test_dates_are_found_exactly_as_the_pattern_at_every_position_finds_them(parts: list[str], pad: int) -> None:
    text = "0.5 " * pad + "".join(parts)  # long texts take the windowed path, short ones the plain one
    assert _has_date(text) == (_DATE.search(text) is not None)


def _reference(identifiers: frozenset[str], free_text: tuple[str, ...], text: str) -> str:
    """The guard's identifier and free-text rules as they were: one scan per value."""
    if identifiers.intersection(_TOKEN.findall(text)) or [v for v in identifiers if " " in v and v in text]:
        return "identifier"
    if any(snippet in text for snippet in free_text):
        return "free text"
    return "passed"


def _decision(guard: PhiGuard, text: str) -> str:
    try:
        guard.check_text("x", text)
    except PrivacyError as exc:
        return "identifier" if "identifier" in str(exc) else "free text"
    return "passed"


WORDS = st.text("abcd 1-", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(WORDS, max_size=20), st.lists(st.text("abcd 1-", min_size=8, max_size=20), max_size=10), texts)
def test_the_guard_refuses_exactly_what_one_scan_per_value_refused(ids: list[str], notes: list[str], text: str) -> None:
    text = re.sub(r"\d", "1", text)  # no dates: only the identifier and free-text rules are compared
    guard = PhiGuard(identifiers=frozenset(ids), free_text=tuple(notes))
    assert _decision(guard, text) == _reference(frozenset(ids), tuple(notes), text)


@pytest.mark.parametrize("text", ["", "a", "see Jo Ann", "Jo Ann", "xx Jo Annx", "note: the old mill road"])
def test_spaced_identifiers_and_free_text_are_found_at_the_edges_of_a_text(text: str) -> None:
    guard = PhiGuard(identifiers=frozenset({"Jo Ann"}), free_text=("the old mill",))
    assert _decision(guard, text) == _reference(frozenset({"Jo Ann"}), ("the old mill",), text)
