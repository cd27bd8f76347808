"""What people read: the classical survival report (``riskmodel report``; of the bundled study, or
of a declared cohort), the TRIPOD+AI model report of every run, the per-patient pages of
``riskmodel score --report``, and their figures."""

from __future__ import annotations

from riskmodel.reporting.declared_report import build_declared_report
from riskmodel.reporting.model_report import ModelFacts, limitations
from riskmodel.reporting.model_report import render as render_model_report
from riskmodel.reporting.patient_report import write_patient_reports
from riskmodel.reporting.survival_report import build_report

__all__ = [
    "ModelFacts",
    "build_declared_report",
    "build_report",
    "limitations",
    "render_model_report",
    "write_patient_reports",
]
