"""Honest performance of a modelling procedure: repeated cross-validation, Harrell's bootstrap
optimism correction, calibration (slopes, curves with bands, ICI/E50/E90, D-calibration) and
decision curves, also of cumulative incidence with competing risks (competing); a dose-response
without a cut-off and its threshold analysis. Every function takes a pipeline or fitted model and a
survival (or competing-risks) target (the dose-response, plain arrays)."""

from __future__ import annotations

from riskmodel.validation.bootstrap import Validation, validate, validation_metrics
from riskmodel.validation.calibration import (
    CalibrationCurve,
    SmoothCalibration,
    calibration_curve,
    calibration_in_the_large,
    calibration_slope,
    calibration_slope_at,
    d_calibration,
    smooth_calibration,
    survival_at_own_time,
)
from riskmodel.validation.competing import cif_at_horizon, cif_calibration_groups, net_benefit_competing
from riskmodel.validation.crossval import CrossValidation, cross_validate, stratified_splitter, survival_matrix
from riskmodel.validation.decision import net_benefit
from riskmodel.validation.dose_response import DoseResponse, dose_response
from riskmodel.validation.in_sample import InSample, in_sample_calibration
from riskmodel.validation.threshold import ThresholdAnalysis, threshold_analysis

__all__ = [
    "CalibrationCurve",
    "CrossValidation",
    "DoseResponse",
    "InSample",
    "SmoothCalibration",
    "ThresholdAnalysis",
    "Validation",
    "calibration_curve",
    "calibration_in_the_large",
    "calibration_slope",
    "calibration_slope_at",
    "cif_at_horizon",
    "cif_calibration_groups",
    "cross_validate",
    "d_calibration",
    "dose_response",
    "in_sample_calibration",
    "net_benefit",
    "net_benefit_competing",
    "smooth_calibration",
    "stratified_splitter",
    "survival_at_own_time",
    "survival_matrix",
    "threshold_analysis",
    "validate",
    "validation_metrics",
]
