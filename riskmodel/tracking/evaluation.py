"""MLflow side of ``riskmodel evaluate``: the development run behind a model URI, and the
evaluation run that links back to it."""

from __future__ import annotations

import re
from collections.abc import Mapping

from riskmodel.core.redact import redact_url
from riskmodel.privacy import PhiGuard
from riskmodel.tracking.linked_run import link_note, linked_run
from riskmodel.tracking.store import Tracker, mlflow_module, resolve_tracking_uri

__all__ = ["record_evaluation", "source_run_id"]

_RUNS = re.compile(r"^runs:/([0-9a-fA-F]{8,64})/")
_MODELS = re.compile(r"^models:/([^/]+)/(\d+)$")


def source_run_id(uri: str, tracking_uri: str | None = None) -> str | None:
    """The run that logged the model at ``uri`` (``runs:/`` or ``models:/<name>/<version>``), or
    None for a model folder or a registry alias it cannot resolve."""
    found = _RUNS.match(uri)
    if found:
        return found.group(1)
    found = _MODELS.match(uri)
    if not found:
        return None
    mlflow = mlflow_module(resolve_tracking_uri(tracking_uri))
    try:
        run_id = mlflow.MlflowClient().get_model_version(found.group(1), found.group(2)).run_id
    except Exception:  # the model already loaded from this URI; a registry that cannot say is no error
        return None
    return str(run_id) if run_id else None


def record_evaluation(
    experiment: str,
    name: str,
    *,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    artifacts: Mapping[str, str],
    development_run: str | None,
    tracking_uri: str | None = None,
    guard: PhiGuard | None = None,
) -> tuple[str, str]:
    """One run under ``experiment``: riskmodel.* tags, metrics, text artifacts, and a note that
    links it to the development run. Returns (run ID, the store's URI as it may be shown)."""
    tracker = Tracker(experiment, tracking_uri, guard=guard)
    link = {"development_run_id": development_run} if development_run else {}
    with linked_run(tracker, name, {**tags, **link}, metrics, artifacts) as run_id:
        if development_run:
            link_note(tracker, "External validation of the model of run", development_run)
    return run_id, redact_url(tracker.uri)
