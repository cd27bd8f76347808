"""The store as users browse it: load a model by URI, list trained runs, start the MLflow UI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from riskmodel.core.redact import redact_text, redact_url
from riskmodel.errors import RiskModelError, UserInputError
from riskmodel.scoring import RiskModel
from riskmodel.tracking.store import TAG_PREFIX, mlflow_module, resolve_tracking_uri
from riskmodel.tracking.verify import Verified, verify_model_folder

__all__ = ["download_model_dir", "list_runs", "load_model", "verify_model"]


def _download(uri: str, tracking_uri: str | None) -> Path:
    """Download a logged model's whole folder (nothing in it is imported or run)."""
    store = resolve_tracking_uri(tracking_uri)
    mlflow = mlflow_module(store)
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:
        raise UserInputError(
            f"{redact_url(uri)}: cannot fetch this model from {redact_url(store)} ({redact_text(str(exc), store, uri)})"
        ) from None


def download_model_dir(uri: str, *, tracking_uri: str | None = None) -> Path:
    """Download a logged model, verify its whole folder, and return the riskmodel folder inside it."""
    return verify_model(uri, tracking_uri=tracking_uri).model_dir


def verify_model(uri: str | Path, *, tracking_uri: str | None = None) -> Verified:
    """Verify a model by URI (a folder, ``runs:/``, ``models:/``) and load it, without running any
    of its code: the MLflow files first (:mod:`riskmodel.tracking.verify`), then the riskmodel folder."""
    text = str(uri)
    if text.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
        local = _download(text, tracking_uri)
        if not (local / "MLmodel").is_file() and not (local / "artifacts").is_dir():
            raise RiskModelError(f"{uri}: not a riskmodel model (no MLmodel, no artifacts folder)")
        return verify_model_folder(local)
    path = Path(text)
    if not path.exists():
        raise UserInputError(f"{text}: no such model (give a model folder, runs:/<id>/model or models:/<name>/<v>)")
    return verify_model_folder(path)


def list_runs(tracking_uri: str | None = None) -> pd.DataFrame:
    """Every riskmodel child run in the store: ids, endpoint, family, status and headline metrics."""
    store = resolve_tracking_uri(tracking_uri)
    mlflow = mlflow_module(store)
    try:
        experiments = [e.experiment_id for e in mlflow.search_experiments()]
        if not experiments:
            return pd.DataFrame()
        runs = mlflow.search_runs(
            experiment_ids=experiments,
            filter_string=f"tags.`{TAG_PREFIX}family` != ''",
            order_by=["attributes.start_time DESC"],
        )
    except Exception as exc:  # a store that is down is one line, without its password
        raise UserInputError(
            f"cannot open the MLflow tracking store {redact_url(store)}: {redact_text(str(exc), store)}"
        ) from None
    if runs.empty:
        return pd.DataFrame()
    keep = {
        "run_id": "run_id",
        "tags.riskmodel.experiment": "experiment",
        "tags.riskmodel.endpoint": "endpoint",
        "tags.riskmodel.family": "family",
        "status": "status",
        "metrics.harrell_c_mean": "harrell_c",
        "metrics.uno_c_mean": "uno_c",
        "metrics.ibs_mean": "ibs",
        "tags.riskmodel.n_patients": "patients",
        "tags.riskmodel.n_events": "events",
    }
    present = {k: v for k, v in keep.items() if k in runs.columns}
    table: pd.DataFrame = runs[list(present)].rename(columns=present)
    return table


def load_model(uri: str | Path, *, tracking_uri: str | None = None) -> RiskModel:
    """Load a model from a local directory, ``runs:/<run_id>/model`` or ``models:/<name>/<version>``,
    after verifying its whole folder (:func:`verify_model`)."""
    return verify_model(uri, tracking_uri=tracking_uri).model
