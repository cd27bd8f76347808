"""MLflow tracking: the only package that imports mlflow.

Store: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db`` with
artifacts under ``mlruns/artifacts``. One parent run per ``train``, one child run per
(endpoint, family). Models are logged as MLflow pyfunc models *from code*: the logged model holds
riskmodel's pickle-free model directory as an artifact and a small code file, never a
cloudpickled object. No input example or dataset profile is logged, so no patient row is.

Every param, tag, metric name, text artifact and model file passes the PHI guard
(:class:`riskmodel.privacy.PhiGuard`) before MLflow sees it; a refusal names the field.
"""

from __future__ import annotations

from riskmodel.tracking.pyfunc import set_pyfunc_model
from riskmodel.tracking.runs import download_model_dir, list_runs, load_model, verify_model
from riskmodel.tracking.store import DEFAULT_TRACKING_URI, TAG_PREFIX, Tracker, resolve_tracking_uri
from riskmodel.tracking.ui import run_ui

__all__ = [
    "DEFAULT_TRACKING_URI",
    "TAG_PREFIX",
    "Tracker",
    "download_model_dir",
    "list_runs",
    "load_model",
    "resolve_tracking_uri",
    "run_ui",
    "set_pyfunc_model",
    "verify_model",
]
