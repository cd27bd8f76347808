"""External validation of a fixed competing-risks model (a CIF model) on patients it never saw.

The counterpart of :mod:`riskmodel.validation.external` for a target with the cause (0 censored,
1 the event of interest, 2 a competing event; :func:`riskmodel.stats.competing_array`). Every
measure is of the predicted cumulative incidence of the event of interest, CIF_1(t), never of a
survival probability; the model is fixed and the 95 % intervals are percentile intervals over
bootstrap resamples of the validation patients (Steyerberg, Clinical Prediction Models, 2nd ed.,
ch. 17). The measures reuse the estimators of :mod:`riskmodel.stats.competing_metrics` and
:mod:`riskmodel.validation.competing`, with the censoring weights of the validation data itself
(``riskRegression::Score(..., cens.model = "marginal")``), under the survival measures' keys:

=====================  =======================================================================
key                    meaning with competing risks
=====================  =======================================================================
``harrell_c``          Wolbers C (Wolbers et al., Epidemiology 2009;20:555-61), of the risk score
``uno_c``              Wolbers C with IPCW, truncated at the largest horizon (Wolbers et al. 2014)
``td_auc_<h>``         AUC of CIF_1(h), Blanche et al. (Stat Med 2013) definition 2
``brier_<h>``          IPCW Brier score of CIF_1(h) (Graf et al. 1999; as ``Score``)
``brier_km_<h>``       the same of the null model: the Aalen-Johansen CIF_1(h) of the validation data
``scaled_brier_<h>``   1 − Brier/Brier of the null model (riskRegression's IPA)
``ibs``, ``ibs_km``    the CIF Brier scores integrated over the grid (model, Aalen-Johansen null)
``scaled_ibs``         1 − ibs/ibs_km
``oe_<h>``             observed Aalen-Johansen CIF_1(h) over the mean predicted CIF_1(h)
``slope_<h>``          Fine-Gray coefficient of cloglog CIF_1(h) (Austin et al., Diagn Progn Res 2022)
``ici_<h>`` …          ICI, E50, E90 of the Fine-Gray smoother on cloglog CIF_1(h) (Austin et al. 2022)
=====================  =======================================================================

The grouped calibration (Aalen-Johansen per group of predicted CIF), the smoothed curve (without a
bootstrap band: its band columns are NaN) and the competing decision curve (Vickers et al.; the
Aalen-Johansen CIF among the treated) are drawn at each horizon.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.metrics import defined_or_nan
from riskmodel.models.cif import cif_matrix
from riskmodel.stats import is_competing, step_values
from riskmodel.stats.competing import aalen_johansen
from riskmodel.stats.competing_metrics import (
    cif_auc,
    cif_brier,
    cif_integrated_brier,
    wolbers_c,
    wolbers_c_ipcw,
)
from riskmodel.validation.calibration import CalibrationCurve
from riskmodel.validation.competing import (
    cif_calibration_groups,
    cif_observed_expected,
    cif_slope_at,
    net_benefit_competing,
    smooth_cif_calibration,
)
from riskmodel.validation.external import THRESHOLDS, ExternalValidation, bootstrap_table, ibs_grid

__all__ = [
    "FixedCif",
    "competing_external_validation",
    "competing_point_estimates",
    "fixed_cif_predictions",
    "validate_cif_predictions",
]

_CALIBRATION_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)


@dataclass(frozen=True)
class FixedCif:
    """A fixed competing model's predictions for the validation patients (rows), computed once."""

    horizons: tuple[float, ...]
    risk: np.ndarray  # the model's risk score (the CIF of the event at its risk horizon)
    cif: np.ndarray  # CIF_1(h), one column per horizon
    grid: tuple[float, ...]  # the integrated Brier score's time points
    cif_grid: np.ndarray  # CIF_1(t) on the grid

    def take(self, idx: np.ndarray) -> FixedCif:
        """The predictions of rows ``idx`` (a bootstrap resample)."""
        return FixedCif(self.horizons, self.risk[idx], self.cif[idx], self.grid, self.cif_grid[idx])


def fixed_cif_predictions(estimator: Any, Z: Any, y: Any, horizons: Sequence[float]) -> FixedCif:
    """Risk score, CIF_1 at the horizons and on the grid of a fitted competing model for design ``Z``."""
    h = tuple(float(v) for v in horizons)
    grid = ibs_grid(y, h)
    risk = np.asarray(estimator.predict_risk(Z), dtype=float)
    cif = np.asarray(cif_matrix(estimator, Z, list(h))[0], dtype=float)
    cif_grid = np.asarray(cif_matrix(estimator, Z, list(grid))[0], dtype=float)
    return FixedCif(h, risk, cif, grid, cif_grid)


def _null_cif(y: Any, times: Any) -> np.ndarray:
    """The Aalen-Johansen CIF_1 of ``y`` at ``times`` (0 before its first event of interest)."""
    steps, cif = aalen_johansen(np.asarray(y["time"], float), np.asarray(y["cause"], int), cause=1)
    return step_values(steps, cif, np.asarray(times, dtype=float), before=0.0)


def _smooth(y: Any, f: np.ndarray, h: float) -> dict[str, float]:
    try:
        fit = smooth_cif_calibration(y, f, h)
    except _CALIBRATION_ERRORS:
        return {f"ici_{h:g}": math.nan, f"e50_{h:g}": math.nan, f"e90_{h:g}": math.nan}
    return {f"ici_{h:g}": fit.ici, f"e50_{h:g}": fit.e50, f"e90_{h:g}": fit.e90}


def _horizon_measures(y: Any, p: FixedCif, j: int, h: float) -> dict[str, float]:
    f = p.cif[:, j]
    cause, time = np.asarray(y["cause"], int), np.asarray(y["time"], float)
    cases = ((time <= h) & (cause == 1)).any()
    out: dict[str, float] = {}
    out[f"td_auc_{h:g}"] = defined_or_nan(partial(cif_auc, y, y, f, h)) if cases and h < time.max() else math.nan
    null = np.full(len(f), float(_null_cif(y, [h])[0]))
    brier = defined_or_nan(partial(cif_brier, y, y, f, h)) if h < time.max() else math.nan
    brier_null = defined_or_nan(partial(cif_brier, y, y, null, h)) if h < time.max() else math.nan
    out[f"brier_{h:g}"] = brier
    out[f"brier_km_{h:g}"] = brier_null
    out[f"scaled_brier_{h:g}"] = 1.0 - brier / brier_null if brier_null > 0 else math.nan
    out[f"oe_{h:g}"] = defined_or_nan(partial(cif_observed_expected, y, f, h))
    out[f"slope_{h:g}"] = defined_or_nan(partial(cif_slope_at, y, f, h))
    out.update(_smooth(y, f, h) if (cause == 1).any() else _smooth_nan(h))
    return out


def _smooth_nan(h: float) -> dict[str, float]:
    return {f"ici_{h:g}": math.nan, f"e50_{h:g}": math.nan, f"e90_{h:g}": math.nan}


def competing_point_estimates(y: Any, p: FixedCif) -> dict[str, float]:
    """Every measure of the module's table on validation outcomes ``y`` (NaN where undefined)."""
    cause, time = np.asarray(y["cause"], int), np.asarray(y["time"], float)
    tau = max(p.horizons)
    out: dict[str, float] = {"harrell_c": defined_or_nan(partial(wolbers_c, time, cause, p.risk))}
    out["uno_c"] = defined_or_nan(partial(wolbers_c_ipcw, y, y, p.risk, tau))
    grid = np.asarray(p.grid)
    if grid[-1] < time.max():
        null = np.tile(_null_cif(y, grid), (len(time), 1))
        out["ibs"] = defined_or_nan(partial(cif_integrated_brier, y, y, p.cif_grid, grid))
        out["ibs_km"] = defined_or_nan(partial(cif_integrated_brier, y, y, null, grid))
    else:
        out["ibs"] = out["ibs_km"] = math.nan
    out["scaled_ibs"] = 1.0 - out["ibs"] / out["ibs_km"] if out["ibs_km"] > 0 else math.nan
    for j, h in enumerate(p.horizons):
        out.update(_horizon_measures(y, p, j, h))
    return out


def _calibration_curve(y: Any, f: np.ndarray, h: float) -> CalibrationCurve:
    """Groups (Aalen-Johansen per group, about 8 patients a group, 2 to 10 groups) and the Fine-Gray
    smoother on 40 points between the 5th and 95th percentiles of the predicted CIF (no band)."""
    groups = cif_calibration_groups(y, f, h, groups=int(np.clip(len(f) // 8, 2, 10)))
    lo, hi = np.percentile(f, [5, 95])
    grid = np.linspace(lo, hi, 40) if hi > lo else np.array([lo])
    nan = np.full(grid.size, math.nan)
    smooth = pd.DataFrame({"predicted": grid, "observed": nan, "observed_low": nan, "observed_high": nan})
    ici = e50 = e90 = math.nan
    if (np.asarray(y["cause"]) == 1).any():
        try:
            fit = smooth_cif_calibration(y, f, h)
            smooth["observed"] = fit.curve(grid)
            ici, e50, e90 = fit.ici, fit.e50, fit.e90
        except _CALIBRATION_ERRORS:
            pass
    return CalibrationCurve(h, groups, smooth, ici, e50, e90)


def competing_external_validation(
    model: Any, X: pd.DataFrame, y: Any, horizons: Sequence[float], *, n_boot: int = 200, seed: int = 0
) -> ExternalValidation:
    """Validate a fitted competing ``model`` (``features`` + ``estimator``, as a RiskModel) on ``X``, ``y``.

    ``y``: the competing target (cause 0/1/2), from the model's landmark; ``horizons`` in months
    after its time zero. The CIs resample the validation patients ``n_boot`` times (seeded).
    """
    if not is_competing(y):
        raise ValueError("competing_external_validation needs a competing-risks target (event, time, cause)")
    Z = model.features.transform(X)
    p = fixed_cif_predictions(model.estimator, Z, y, horizons)
    return validate_cif_predictions(y, p, n_boot=n_boot, seed=seed)


def validate_cif_predictions(y: Any, p: FixedCif, *, n_boot: int = 200, seed: int = 0) -> ExternalValidation:
    """:func:`competing_external_validation` of CIF predictions already made (``p``) for outcomes ``y``.

    A resample without an event of interest is skipped and counted (as the survival validation)."""
    event = np.asarray(y["cause"], int) == 1
    n = len(event)
    table, boots, failed = bootstrap_table(competing_point_estimates, y, p, event, n_boot=n_boot, seed=seed)
    calibration, decision = {}, {}
    for j, h in enumerate(p.horizons):
        calibration[h] = _calibration_curve(y, p.cif[:, j], h)
        decision[h] = net_benefit_competing(y, p.cif[:, j], h, THRESHOLDS)
    notes = [f"{failed} of {n_boot} bootstrap resamples had no event of interest and were skipped"] if failed else []
    return ExternalValidation(
        p.horizons, n, int(event.sum()), table, calibration, decision, n_boot, failed, p.grid, notes, boots
    )
