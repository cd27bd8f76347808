"""Root pytest set-up, shared by the tests and the doctests in riskmodel/."""

import os
import tempfile

import pytest

# a fixed pseudonym salt, so tests never create the per-installation salt file in $HOME
os.environ.setdefault("RISKMODEL_SALT", "riskmodel-tests")
# riskmodel's cache (the migrated empty MLflow store, riskmodel.tracking.fresh_store) under /tmp, not $HOME
os.environ.setdefault("RISKMODEL_CACHE", os.path.join(tempfile.gettempdir(), f"riskmodel-test-cache-{os.getuid()}"))

# The test files that take longest, longest first (per-file sums of a full run's junit times, 2026-12-02:
# test_reconstruct's one byte-for-byte rebuild is 18 % of the suite; re-measure with `pytest --junitxml=...`
# when a file grows). With `--dist loadfile` a file runs whole on one worker
# and xdist hands files out in collection order (`--no-loadscope-reorder`), so these start first and the
# many short files fill in behind them: no long file is left to run alone at the end. Every other file
# keeps its place. Only the order changes: which tests run, and how, does not.
LONGEST_FIRST = (
    "tests/cohort/test_reconstruct.py",
    "tests/test_tune.py",
    "tests/test_train.py",
    "tests/test_privacy.py",
    "tests/test_validation.py",
    "tests/test_secrets.py",
    "tests/test_report.py",
    "tests/test_plan.py",
    "tests/test_init.py",
    "tests/test_declared_cli.py",
    "tests/test_competing_scoring.py",
    "tests/test_model_verify.py",
    "tests/test_ui.py",
    "tests/test_crash_safety.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable
