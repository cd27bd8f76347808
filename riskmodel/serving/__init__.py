"""The calculators: ``riskmodel serve`` (a web app on the models' own scoring path) and
``riskmodel calculator`` (one offline HTML file for a Cox model).

The package sits above scoring, tracking and reporting: it verifies model folders through
tracking, answers with :class:`riskmodel.scoring.RiskModel`, and reuses the patient pages' band
and what-if. FastAPI and uvicorn are imported only when a server is made.
"""

from __future__ import annotations

from riskmodel.serving.form import InputField, input_fields, patient_frame, request_model
from riskmodel.serving.server import check_host, load_verified, serve

__all__ = ["InputField", "check_host", "input_fields", "load_verified", "patient_frame", "request_model", "serve"]
