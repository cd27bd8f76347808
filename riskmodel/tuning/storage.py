"""Where a study lives: the Optuna storage URL, opened safely by several workers at once, and the
study's one MLflow parent run."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from riskmodel.core.files import retry_first_use, sqlite_setup_lock
from riskmodel.core.redact import redact_text, redact_url
from riskmodel.errors import UserInputError
from riskmodel.tuning.objective import optuna_module

__all__ = ["GRACE_SECONDS", "HEARTBEAT_SECONDS", "default_storage", "open_storage", "parent_run", "shareable_storage"]

HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 30  # a trial whose heartbeat is older than this is failed (crashed worker, any host)


def default_storage(tracking_uri: str) -> str:
    """``sqlite:///<folder of the MLflow store>/optuna.db``, else ``sqlite:///mlruns/optuna.db``."""
    if tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]).parent
        return f"sqlite:///{folder / 'optuna.db'}"
    return "sqlite:///mlruns/optuna.db"


def shareable_storage(url: str) -> str:
    """The storage URL without its password, for tags and messages (:func:`riskmodel.core.redact.redact_url`).

    >>> shareable_storage("postgresql://ann:se/cr@t@db.example:5432/optuna")
    'postgresql://ann:***@db.example:5432/optuna'
    """
    return redact_url(url)


def open_storage(url: str) -> Any:
    """Optuna's RDB storage at ``url`` with heartbeats; a new SQLite file is created one worker at a time."""
    optuna = optuna_module()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///").split("?", 1)[0]).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), sqlite_setup_lock(url):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental API
            return retry_first_use(
                lambda: optuna.storages.RDBStorage(
                    url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS
                )
            )
    except Exception as exc:
        raise UserInputError(f"--storage: cannot open {shareable_storage(url)}: {redact_text(str(exc), url)}") from None


def parent_run(study: Any, tracker: Any, name: str, tags: Mapping[str, str]) -> str:
    """The study's one MLflow parent run: reopened when it exists, else created and recorded.

    Two workers starting together may both create one; both record theirs, wait, read back the
    winner, and the loser ends its own run as KILLED (tagged ``superseded``).
    """
    known = study.user_attrs.get("mlflow_parent_run_id")
    if known:
        try:
            return str(tracker.open_run(name, tags, run_id=known))
        except Exception:  # the tracking store was wiped or changed: start a new parent
            pass
    mine = tracker.open_run(name, tags)
    study.set_user_attr("mlflow_parent_run_id", mine)
    time.sleep(1.0)
    winner = study.user_attrs.get("mlflow_parent_run_id")
    if winner != mine:
        tracker.log_to(mine, tags={"superseded": str(winner)})
        tracker.close_run(mine, "KILLED")
        return str(tracker.open_run(name, tags, run_id=winner))
    return str(mine)
