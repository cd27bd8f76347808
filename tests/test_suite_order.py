"""The suite's schedule: the longest test files are handed to the xdist workers first (conftest.py)."""

from __future__ import annotations

import tomllib

import pytest

import conftest
from tests.conftest import REPO


def test_every_longest_first_file_exists_once() -> None:
    # a renamed or deleted file would silently fall back to its collection place
    assert len(set(conftest.LONGEST_FIRST)) == len(conftest.LONGEST_FIRST)
    missing = [path for path in conftest.LONGEST_FIRST if not (REPO / path).is_file()]
    assert not missing


def test_xdist_keeps_the_collection_order() -> None:
    # with loadscope reordering (xdist's default) files go out by their number of tests and the order is lost
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "--no-loadscope-reorder" in addopts
    assert addopts[addopts.index("--dist") + 1] == "loadfile"


class _Item:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


def test_the_longest_files_move_to_the_front_and_the_rest_keep_their_order() -> None:
    first, second = conftest.LONGEST_FIRST[:2]
    items = [_Item(n) for n in ("tests/a.py::x", f"{second}::t", "tests/b.py::y", f"{first}::u", "tests/a.py::z")]
    conftest.pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    expected = [f"{first}::u", f"{second}::t", "tests/a.py::x", "tests/b.py::y", "tests/a.py::z"]
    assert [i.nodeid for i in items] == expected


@pytest.mark.parametrize("nodeid", ["riskmodel/stats/km.py::riskmodel.stats.km.kaplan_meier"])
def test_a_doctest_keeps_its_place(nodeid: str) -> None:
    items = [_Item(nodeid), _Item(f"{conftest.LONGEST_FIRST[0]}::t")]
    conftest.pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [i.nodeid for i in items][-1] == nodeid
