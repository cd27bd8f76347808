"""Workflows over the floors below: preparing an experiment's data once for every command,
developing and recording each model family (``riskmodel train``)."""

from __future__ import annotations

from riskmodel.workflow.develop import Developed, develop_family
from riskmodel.workflow.prepare import PreparedEndpoint, make_pipeline, prepare_endpoints
from riskmodel.workflow.train import RunResult, TrainResult, train

__all__ = [
    "Developed",
    "PreparedEndpoint",
    "RunResult",
    "TrainResult",
    "develop_family",
    "make_pipeline",
    "prepare_endpoints",
    "train",
]
