"""Clinical utility: decision curves for survival predictions (net benefit by a horizon)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from riskmodel.stats import kaplan_meier, step_values

__all__ = ["net_benefit"]


def net_benefit(y: Any, risk_by_horizon: Any, horizon: float, thresholds: Any) -> pd.DataFrame:
    """Decision curve for survival (Vickers et al. 2008): net benefit of treating when risk ≥ p.

    Columns: ``threshold``, ``model``, ``treat_all``, ``treat_none`` (0). Among those treated, the
    share with an event by the horizon is 1 − their Kaplan-Meier S(t), so censoring is handled
    by KM. NB = TP/n − FP/n · p/(1 − p).
    """
    time = np.asarray(y["time"], float)
    event = np.asarray(y["event"], bool)
    risk = np.asarray(risk_by_horizon, dtype=float)
    n = len(time)

    def km_risk(mask: np.ndarray) -> float:
        if not mask.any():
            return 0.0
        t, s = kaplan_meier(time[mask], event[mask])
        return float(1 - step_values(t, s, np.array([horizon]), before=1.0)[0])

    overall = km_risk(np.ones(n, dtype=bool))
    rows = []
    for p in np.asarray(thresholds, dtype=float):
        treated = risk >= p
        share = treated.mean()
        event_rate = km_risk(treated)
        odds = p / (1 - p)
        rows.append(
            {
                "threshold": p,
                "model": share * event_rate - share * (1 - event_rate) * odds,
                "treat_all": overall - (1 - overall) * odds,
                "treat_none": 0.0,
            }
        )
    return pd.DataFrame(rows)
