"""A new local SQLite tracking store without MLflow's schema migrations on every first ``train``.

MLflow makes a new SQLite store by creating its first tables and then running every Alembic
migration since (about 2 s of CPU, half the cost of opening the store, paid again by every new
project folder and every ``train`` in a fresh directory). Their result is the same file for every
new store of one MLflow version, so it is made once, by MLflow's own code, into the user's cache
(:func:`cache_dir`), and copied into place for each new store. The one thing a new store holds
beyond its schema, the "Default" experiment (whose artifact location and creation time belong to
that store), is not in the copy: MLflow adds it itself when it opens the store, exactly as it does
right after migrating a new one.

Only a local ``sqlite:///`` file that does not exist yet is seeded (the URI in force:
``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the project default); a server, another
database, an in-memory store or an existing file is left to MLflow, and so is a new store whenever
the cache cannot be used (a read-only home, a renamed MLflow function): then MLflow migrates it as
before.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from importlib import metadata
from pathlib import Path

from riskmodel.core.files import sqlite_setup_lock

__all__ = ["cache_dir", "empty_store", "seed_new_store", "sqlite_file"]


def cache_dir() -> Path:
    """riskmodel's cache: ``RISKMODEL_CACHE``, else ``$RISKMODEL_HOME/cache`` (where riskmodel keeps its
    files when told), else ``$XDG_CACHE_HOME/riskmodel``, else ``~/.cache/riskmodel``."""
    if os.environ.get("RISKMODEL_CACHE"):
        return Path(os.environ["RISKMODEL_CACHE"])
    if os.environ.get("RISKMODEL_HOME"):
        return Path(os.environ["RISKMODEL_HOME"]) / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "riskmodel"


def sqlite_file(uri: str) -> Path | None:
    """The database file of a local ``sqlite:///`` URI (None for any other store, or one in memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") or path.startswith("file:") else Path(path)


def _template_name() -> str:
    """The empty store's file name: every library that shapes its bytes, by version."""
    versions = [f"{name}-{metadata.version(name)}" for name in ("mlflow", "sqlalchemy", "alembic")]
    return "-".join([*versions, f"sqlite-{sqlite3.sqlite_version}"]) + ".db"


def empty_store() -> Path:
    """A migrated, empty MLflow store of the installed versions (made here by MLflow on first use)."""
    path = cache_dir() / "mlflow-stores" / _template_name()
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite_setup_lock(f"sqlite:///{path}"):  # two first trains at once: one makes it
        if not path.exists():
            from mlflow.store.db import utils

            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            partial.unlink(missing_ok=True)
            engine = utils.create_sqlalchemy_engine_with_retry(f"sqlite:///{partial}")  # type: ignore[no-untyped-call]
            try:
                # what SqlAlchemyStore runs on an empty database: the first tables, then every migration
                utils._initialize_tables(engine)  # type: ignore[no-untyped-call]
            finally:
                engine.dispose()
            os.replace(partial, path)  # never a half-made store under the final name
    return path


def seed_new_store(uri: str) -> bool:
    """Copy the migrated empty store to ``uri``'s file if it is a local SQLite store not yet made;
    whether it did. Call it holding :func:`~riskmodel.core.files.sqlite_setup_lock` of ``uri``."""
    db = sqlite_file(uri)
    if db is None or db.exists():
        return False
    partial = db.with_name(f"{db.name}.{os.getpid()}.partial")
    try:
        template = empty_store()
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, partial)
        os.link(partial, db)  # never over a store another program made meanwhile (FileExistsError)
    except Exception:  # the cache is not usable here: MLflow makes the store itself, as before
        return False
    finally:
        partial.unlink(missing_ok=True)
    return True
