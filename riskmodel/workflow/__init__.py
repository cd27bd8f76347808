"""Workflows over the floors below: preparing an experiment's data once for every command,
developing and recording each model family (``riskmodel train``), and an experiment's survival
report (``riskmodel report``)."""

from __future__ import annotations

from riskmodel.workflow.develop import Developed, develop_family
from riskmodel.workflow.prepare import PreparedEndpoint, make_pipeline, prepare_endpoints
from riskmodel.workflow.report import experiment_report
from riskmodel.workflow.train import RunResult, TrainResult, train

__all__ = [
    "Developed",
    "PreparedEndpoint",
    "RunResult",
    "TrainResult",
    "develop_family",
    "experiment_report",
    "make_pipeline",
    "prepare_endpoints",
    "train",
]
