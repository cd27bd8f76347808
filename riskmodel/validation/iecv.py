"""Internal-external cross-validation by centre: each held-out centre's estimates, and their pooling.

Each centre is held out in turn; the model developed on the other centres is validated on it with
the measures of :mod:`riskmodel.validation.external` (Royston, Parmar & Sylvester, *Stat Med*
2004;23:907-26; Steyerberg & Harrell, *J Clin Epidemiol* 2016;69:245-7). Three of them are then
pooled across centres by random-effects meta-analysis (Debray et al., *BMJ* 2017;356:i6460), on
the scales where they are nearer normal (:mod:`riskmodel.stats.meta`):

* Harrell's C, on the logit scale (its variance by the delta method from the SE of C);
* the calibration slope: on the linear predictor for a Cox model, else on log(−log Ŝ(h)) at the
  main horizon (:func:`riskmodel.validation.calibration.calibration_slope_at`), as it is;
* O/E at the main horizon (the Kaplan-Meier risk over the mean predicted risk), on the log scale.

**Standard errors** come from the bootstrap of the held-out centre's patients with the model fixed
(:func:`riskmodel.validation.external.validate_predictions`): the SD of the replicates of C, of the
slope and of log O/E (each on the scale it is pooled on, except C, whose SE the delta method takes
to the logit scale as metamisc and Debray et al. do). A centre's per-centre interval in the table
and forest plot is the Wald interval on the analysis scale, transformed back, so it is the interval
the meta-analysis weighs; the percentile bootstrap intervals of every measure stay in the
per-centre measures table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from riskmodel.errors import UserInputError
from riskmodel.stats.meta import Method, PooledMeasure, pool_c_index, pool_calibration_slope, pool_log_oe
from riskmodel.validation.external import ExternalValidation

__all__ = [
    "COMPETING_MEASURE_NAMES",
    "MEASURES",
    "centre_row",
    "forest_table",
    "pool_centres",
    "pooled_metrics",
    "pooled_table",
]

# the pooled measures: key → (the column of its estimate, of its SE on the analysis scale, its name)
MEASURES: dict[str, tuple[str, str, str]] = {
    "c": ("c", "c_se", "Harrell's C"),
    "slope": ("slope", "slope_se", "calibration slope"),
    "oe": ("oe", "log_oe_se", "O/E"),
}
# the pooled measures' names for a competing-risks (CIF) model (riskmodel.validation.external_competing)
COMPETING_MEASURE_NAMES: dict[str, str] = {
    "c": "Wolbers C",
    "slope": "calibration slope of the CIF (Fine-Gray on cloglog CIF)",
    "oe": "O/E of the CIF (Aalen-Johansen / mean predicted)",
}
_Z = float(stats.norm.ppf(0.975))


def _sd(values: Any) -> float:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(np.std(finite, ddof=1)) if finite.size >= 2 else math.nan


def centre_row(
    centre: str, validation: ExternalValidation, horizon: float, *, competing: bool = False
) -> dict[str, Any]:
    """One held-out centre's row: counts, C, slope and O/E at ``horizon`` with their bootstrap SEs,
    and the other measures at ``horizon`` (point estimates). ``competing``: the validation of a CIF
    model (Wolbers C; the slope and O/E of the CIF; the Aalen-Johansen null's Brier)."""
    est = validation.estimates()
    reps = validation.replicates
    h = f"{horizon:g}"
    linear = math.isfinite(est.get("slope", math.nan))
    slope_key = "slope" if linear else f"slope_{h}"
    oe_reps = reps[f"oe_{h}"].to_numpy(float) if f"oe_{h}" in reps else np.array([])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_oe = np.log(oe_reps[oe_reps > 0])
    row: dict[str, Any] = {
        "centre": centre,
        "patients": validation.n_patients,
        "events": validation.n_events,
        "horizon": float(horizon),
        "c": est["harrell_c"],
        "c_se": _sd(reps["harrell_c"]) if "harrell_c" in reps else math.nan,
        "slope": est[slope_key],
        "slope_se": _sd(reps[slope_key]) if slope_key in reps else math.nan,
        "slope_on": f"cloglog CIF({h}), Fine-Gray"
        if competing
        else "linear predictor"
        if linear
        else f"log(-log S({h}))",
        "oe": est[f"oe_{h}"],
        "log_oe_se": _sd(log_oe),
        "uno_c": est["uno_c"],
        f"td_auc_{h}": est.get(f"td_auc_{h}", math.nan),
        f"brier_{h}": est.get(f"brier_{h}", math.nan),
        f"scaled_brier_{h}": est.get(f"scaled_brier_{h}", math.nan),
        f"ici_{h}": est.get(f"ici_{h}", math.nan),
        "bootstrap_resamples": validation.n_boot - validation.failed_boot,
    }
    return row


def _check_poolable(table: pd.DataFrame) -> None:
    """Name the centre and measure that cannot be pooled (metafor would name only its position)."""
    for _, (value, se, name) in MEASURES.items():
        for centre, v, s in zip(table["centre"], table[value], table[se], strict=True):
            if not (math.isfinite(v) and math.isfinite(s) and s > 0):
                raise UserInputError(
                    f"centre {centre}: its {name} is {v:.4g} with a bootstrap SE of {s:.4g}; pooling needs a finite "
                    "estimate and a positive SE (too few events or patients in that centre, or too few resamples)"
                )
            if name == "O/E" and v <= 0:
                raise UserInputError(f"centre {centre}: its O/E is {v:.4g}; pooling on the log scale needs it positive")


def pool_centres(table: pd.DataFrame, method: Method = "REML") -> dict[str, PooledMeasure]:
    """C (logit), the calibration slope and O/E (log) pooled across the rows of ``table``
    (:func:`centre_row`'s), each with tau², I² and the 95 % prediction interval for a new centre."""
    _check_poolable(table)
    return {
        "c": pool_c_index(table["c"].to_numpy(float), table["c_se"].to_numpy(float), method=method),
        "slope": pool_calibration_slope(
            table["slope"].to_numpy(float), table["slope_se"].to_numpy(float), method=method
        ),
        "oe": pool_log_oe(table["oe"].to_numpy(float), table["log_oe_se"].to_numpy(float), method=method),
    }


def forest_table(table: pd.DataFrame, measure: str) -> pd.DataFrame:
    """The per-centre rows of ``measure`` for :func:`riskmodel.reporting.forest.meta_forest_plot`:
    the estimate and its Wald interval on the analysis scale, transformed back."""
    value, se_col, _ = MEASURES[measure]
    est, se = table[value].to_numpy(float), table[se_col].to_numpy(float)
    if measure == "c":
        logit, se_logit = np.log(est / (1 - est)), se / (est * (1 - est))
        lower, upper = 1 / (1 + np.exp(-(logit - _Z * se_logit))), 1 / (1 + np.exp(-(logit + _Z * se_logit)))
    elif measure == "oe":
        lower, upper = est * np.exp(-_Z * se), est * np.exp(_Z * se)
    else:
        lower, upper = est - _Z * se, est + _Z * se
    out = pd.DataFrame(
        {"estimate": est, "lower": lower, "upper": upper, "patients": table["patients"], "events": table["events"]}
    )
    out.index = pd.Index(table["centre"].astype(str), name="centre")
    return out


def pooled_table(pooled: Mapping[str, PooledMeasure]) -> pd.DataFrame:
    """One row per pooled measure: the estimate, 95 % CI and prediction interval on the measure's own
    scale; the analysis-scale estimate and SE; tau², I², Q and its p (aggregates only)."""
    rows = []
    for key, p in pooled.items():
        m = p.meta
        rows.append(
            {
                "measure": key,
                "name": p.measure,
                "scale": p.scale,
                "method": m.method,
                "centres": m.k,
                "estimate": p.estimate,
                "ci_low": p.lower,
                "ci_high": p.upper,
                "pi_low": p.pi_lower,
                "pi_high": p.pi_upper,
                "analysis_estimate": m.estimate,
                "analysis_se": m.se,
                "tau2": m.tau2,
                "i2": m.i2,
                "q": m.q,
                "q_p": m.q_p,
            }
        )
    return pd.DataFrame(rows)


def pooled_metrics(pooled: Mapping[str, PooledMeasure]) -> dict[str, float]:
    """MLflow metrics of the pooled measures: ``iecv_pooled_c``, ``iecv_c_ci_low``/``_high``,
    ``iecv_c_pi_low``/``_high``, ``iecv_tau2_c``, ``iecv_i2_c``, ``iecv_q_c`` (and so for slope, oe)."""
    out: dict[str, float] = {}
    for key, p in pooled.items():
        out.update(
            {
                f"iecv_pooled_{key}": p.estimate,
                f"iecv_{key}_ci_low": p.lower,
                f"iecv_{key}_ci_high": p.upper,
                f"iecv_{key}_pi_low": p.pi_lower,
                f"iecv_{key}_pi_high": p.pi_upper,
                f"iecv_tau2_{key}": p.meta.tau2,
                f"iecv_i2_{key}": p.meta.i2,
                f"iecv_q_{key}": p.meta.q,
            }
        )
    return out
