"""Case-mix and transportability: how the validation patients differ from the development patients.

Debray et al. (J Clin Epidemiol 2015;68:279-89) read an external validation in the light of how
related the two samples are:

* **standardised differences** of every input, against the development aggregates a model file
  keeps (:mod:`riskmodel.features.summaries`): for a numeric input (m_v − m_d)/√((s_d² + s_v²)/2),
  for each level of another input (p_v − p_d)/√((p_d(1 − p_d) + p_v(1 − p_v))/2) (Austin, Stat
  Med 2009;28:3083-107). |d| > 0.1 is the usual mark of a meaningful difference;
* **the share of patients outside the training ranges** (a numeric input beyond the middle of
  the training data, or a category unseen in training);
* **a membership model**: a logistic regression of "validation, not development" on the model's
  inputs (as its features encode them); its C near 0.5 means the case-mix is alike (a test of
  reproducibility), near 1 that the samples differ (a test of transportability). This needs the
  development patients, so it is computed only when they are given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.features.safe_harbor import cap_age
from riskmodel.features.summaries import level_key

__all__ = ["SMD_MARK", "membership_c", "outside_ranges", "standardised_differences"]

SMD_MARK = 0.1  # an absolute standardised difference above this is usually called meaningful


def _smd(diff: float, pooled_var: float) -> float:
    return diff / math.sqrt(pooled_var) if pooled_var > 0 else (0.0 if diff == 0 else math.inf)


def standardised_differences(
    X: pd.DataFrame, summaries: Mapping[str, Mapping[str, Any]], age: Callable[[str], bool] = lambda _: False
) -> pd.DataFrame:
    """One row per numeric input and per level of every other input that has a development summary.

    Columns: ``input``, ``level`` ("" for a numeric input), ``development`` and ``validation``
    (means, or shares), ``smd`` (the standardised difference, validation minus development).
    """
    rows: list[dict[str, Any]] = []
    for name, s in summaries.items():
        if name not in X.columns:
            continue
        values = X[name].dropna()
        if s.get("mean") is not None:
            v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(float)
            if age(name):
                v = np.array([cap_age(x) for x in v])
            m_v = float(v.mean()) if v.size else math.nan
            sd_v = float(v.std(ddof=1)) if v.size > 1 else math.nan
            d = _smd(m_v - s["mean"], (s["sd"] ** 2 + sd_v**2) / 2) if v.size > 1 else math.nan
            rows.append({"input": name, "level": "", "development": s["mean"], "validation": m_v, "smd": d})
            continue
        keys = values.map(level_key)
        shares_dev = dict(s.get("shares") or {})
        for level in sorted(set(shares_dev) | set(keys.unique())):
            p_d = float(shares_dev.get(level, 0.0))
            p_v = float((keys == level).mean()) if len(keys) else math.nan
            if p_d == 0 and p_v == 0:  # a declared level nobody has, in either sample
                continue
            d = _smd(p_v - p_d, (p_d * (1 - p_d) + p_v * (1 - p_v)) / 2)
            rows.append({"input": name, "level": level, "development": p_d, "validation": p_v, "smd": d})
    return pd.DataFrame(rows, columns=["input", "level", "development", "validation", "smd"])


def outside_ranges(
    X: pd.DataFrame,
    ranges: Mapping[str, tuple[float, float]],
    categories: Mapping[str, list[str]],
    age: Callable[[str], bool] = lambda _: False,
) -> tuple[float, pd.DataFrame]:
    """(share of patients with any input outside the training data, counts per input).

    A numeric input is outside below or above its stored range (an age capped at 90 first); a
    categorical one when its level was not seen in training. Missing values are not outside.
    """
    outside = np.zeros(len(X), dtype=bool)
    rows = []
    for name, (lo, hi) in ranges.items():
        if name not in X.columns:
            continue
        v = pd.to_numeric(X[name], errors="coerce").to_numpy(float)
        if age(name):
            v = np.minimum(v, 90.0)
        below, above = v < lo, v > hi
        outside |= below | above
        rows.append({"input": name, "below": int(below.sum()), "above": int(above.sum()), "unseen level": 0})
    for name, levels in categories.items():
        if name not in X.columns:
            continue
        known = {level_key(x) for x in levels}
        col = X[name]
        unseen = (col.notna() & ~col.map(level_key).isin(known)).to_numpy(bool)
        outside |= unseen
        rows.append({"input": name, "below": 0, "above": 0, "unseen level": int(unseen.sum())})
    share = float(outside.mean()) if len(X) else math.nan
    return share, pd.DataFrame(rows, columns=["input", "below", "above", "unseen level"])


def membership_c(Z_development: Any, Z_validation: Any) -> float:
    """The apparent C (AUC) of a logistic membership model of validation against development rows.

    The columns are standardised on the pooled rows; a missing value takes its column's pooled
    mean. A weak ridge (C = 100) keeps the fit finite when the samples separate completely.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    a, b = np.asarray(Z_development, dtype=float), np.asarray(Z_validation, dtype=float)
    Z = np.vstack([a, b])
    member = np.r_[np.zeros(len(a)), np.ones(len(b))]
    mean = np.nanmean(Z, axis=0)
    Z = np.where(np.isnan(Z), mean, Z)
    sd = Z.std(axis=0)
    Z = (Z - Z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    fit = LogisticRegression(C=100.0, max_iter=5000).fit(Z, member)
    return float(roc_auc_score(member, fit.decision_function(Z)))
