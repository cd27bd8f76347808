"""A new local MLflow store is copied from a migrated empty store made once per MLflow version
(riskmodel.tracking.fresh_store): it must be exactly the store MLflow makes itself, only for a new
local SQLite file (the URI in force, MLFLOW_TRACKING_URI too), and never at the cost of a store."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from riskmodel.tracking import Tracker
from riskmodel.tracking.fresh_store import cache_dir, empty_store, seed_new_store, sqlite_file

PRAGMAS = ("page_size", "user_version", "application_id", "auto_vacuum", "encoding", "journal_mode", "freelist_count")


def content(db: Path) -> tuple[list[str], dict[str, object]]:
    """Every statement of the database's dump (schema and rows) and its file-level settings.

    The statements are sorted, and so are the lines of each: MLflow itself creates the indexes of a
    table, and the constraints inside a CREATE TABLE, in the order of a Python set (it changes with
    PYTHONHASHSEED: two stores MLflow makes in two processes differ so), which SQLite does not use."""
    con = sqlite3.connect(db)
    try:
        # the Default experiment's creation and update times (ms) are the moment each store was opened
        dump = [re.sub(r"\b1\d{12}\b", "<ms>", line) for line in con.iterdump()]
        lines = sorted("\n".join(sorted(line.rstrip(", ") for line in statement.split("\n"))) for statement in dump)
        pragmas = {p: con.execute(f"pragma {p}").fetchone()[0] for p in PRAGMAS}
    finally:
        con.close()
    return lines, pragmas


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RISKMODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # MLflow's Default experiment sits under ./mlruns of the working directory
    return tmp_path / "cache"


def test_a_seeded_store_is_the_store_mlflow_makes_itself(cache: Path) -> None:
    import mlflow

    mlflow.MlflowClient(tracking_uri="sqlite:///made/mlflow.db").search_experiments()  # MLflow alone: migrations
    assert seed_new_store("sqlite:///seeded/mlflow.db")
    mlflow.MlflowClient(tracking_uri="sqlite:///seeded/mlflow.db").search_experiments()
    made, seeded = content(Path("made/mlflow.db")), content(Path("seeded/mlflow.db"))
    assert len(made[0]) > 50
    assert any("alembic_version" in line for line in made[0])
    assert any('INSERT INTO "experiments"' in line and "Default" in line for line in seeded[0])
    assert seeded == made  # every table, index, migration mark and row (the Default experiment's path too)
    assert len(list((cache / "mlflow-stores").glob("*.db"))) == 1  # made once, named by the versions


def test_the_empty_store_is_made_once_and_has_no_experiment(cache: Path) -> None:
    first = empty_store()
    stamp = first.stat().st_mtime_ns
    assert empty_store() == first
    assert first.stat().st_mtime_ns == stamp
    con = sqlite3.connect(first)
    try:
        assert con.execute("select count(*) from experiments").fetchone() == (0,)
        assert con.execute("select count(*) from alembic_version").fetchone() == (1,)
    finally:
        con.close()


def test_the_cache_is_where_the_user_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("RISKMODEL_CACHE", "RISKMODEL_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "riskmodel"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "riskmodel"
    monkeypatch.setenv("RISKMODEL_HOME", str(tmp_path / "rm"))
    assert cache_dir() == tmp_path / "rm" / "cache"
    monkeypatch.setenv("RISKMODEL_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_only_a_new_local_sqlite_file_is_seeded(cache: Path) -> None:
    assert sqlite_file("sqlite:///mlruns/mlflow.db?timeout=20") == Path("mlruns/mlflow.db")
    assert sqlite_file("sqlite:////abs/store.db") == Path("/abs/store.db")
    for uri in ("sqlite:///:memory:", "sqlite://", "postgresql://u@h/db", "http://localhost:5000", "file:./mlruns"):
        assert sqlite_file(uri) is None
        assert not seed_new_store(uri)
    Path("old.db").write_bytes(b"someone's store")
    assert not seed_new_store("sqlite:///old.db")
    assert Path("old.db").read_bytes() == b"someone's store"  # an existing file is never replaced
    assert not cache.exists()  # nothing was made for any of them


def test_the_tracker_seeds_the_store_named_by_mlflow_tracking_uri(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env/runs.db")
    tracker = Tracker("seeded")
    assert Path("from-env/runs.db").exists()
    assert not Path("mlruns").exists()
    assert (cache / "mlflow-stores").exists()
    names = [e.name for e in tracker.mlflow.MlflowClient().search_experiments()]
    assert sorted(names) == ["Default", "seeded"]


def test_an_unusable_cache_leaves_the_store_to_mlflow(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.parent.mkdir(exist_ok=True)
    cache.write_text("a file where the cache folder should be")
    assert not seed_new_store("sqlite:///plain/mlflow.db")
    assert not Path("plain/mlflow.db").exists()
    assert not list(Path(".").glob("plain/*.partial"))
    tracker = Tracker("plain", "sqlite:///plain/mlflow.db")  # MLflow migrates it, as before
    assert [e.name for e in tracker.mlflow.MlflowClient().search_experiments()] == ["plain", "Default"]
