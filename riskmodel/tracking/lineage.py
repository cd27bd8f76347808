"""MLflow side of ``riskmodel update``: the updated model logged as a new model with its lineage
(parent model and run, method, data digest) as tags, linked back to the parent's run, and
registered as a new version when asked."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from riskmodel.core.redact import redact_url
from riskmodel.privacy import PhiGuard
from riskmodel.scoring import RiskModel
from riskmodel.tracking.linked_run import link_note, linked_run
from riskmodel.tracking.store import Tracker

__all__ = ["RecordedUpdate", "record_update"]


@dataclass(frozen=True)
class RecordedUpdate:
    """Where an update went: its run, its model's ``runs:/`` URI, its registered version if any."""

    run_id: str
    model_uri: str
    registered_uri: str | None
    store: str


def record_update(
    experiment: str,
    name: str,
    *,
    model: RiskModel,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    artifacts: Mapping[str, str],
    parent_run: str | None,
    register: str | None = None,
    tracking_uri: str | None = None,
    guard: PhiGuard | None = None,
) -> RecordedUpdate:
    """One run under ``experiment``: riskmodel.* tags (the lineage among them), metrics, text
    artifacts, the updated model, and a note linking to the parent's run. ``register``: a
    registered-model name under which the model becomes a new version."""
    tracker = Tracker(experiment, tracking_uri, guard=guard)
    link = {"parent_run_id": parent_run} if parent_run else {}
    with linked_run(tracker, name, {**tags, **link}, metrics, artifacts) as run_id:
        with tempfile.TemporaryDirectory() as tmp:
            uri = tracker.log_model(model, model.save(Path(tmp) / "riskmodel"))
        tracker.mlflow.set_tag("riskmodel.model_uri", uri)
        if parent_run:
            link_note(tracker, f"Model updated ({tags.get('method', '')}) from the model of run", parent_run)
    registered = tracker.register(uri, register) if register else None
    return RecordedUpdate(run_id, uri, registered, redact_url(tracker.uri))
