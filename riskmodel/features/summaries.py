"""Aggregate summaries of the training inputs that a model file may keep, for case-mix checks.

An external validation compares its patients with the development patients (TRIPOD+AI item 20c;
Debray et al., J Clin Epidemiol 2015;68:279-89). A model file must not hold the development
patients, so it keeps, per input, only aggregates of at least :data:`MIN_RANGE_VALUES` patients:

* a numeric input: its mean and standard deviation (an age capped at 90 first, as its range);
* any other input (binary, ordinal, categorical): the share of each level.

These are the figures of a published "Table 1", shareable as such.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.features.safe_harbor import AGE_CAP, MIN_RANGE_VALUES

__all__ = ["input_summaries", "level_key"]


def level_key(value: Any) -> str:
    """A level as a summary stores it (``True`` → "True", 2.0 → "2")."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def input_summaries(
    X: pd.DataFrame, names: Iterable[str], kind: Callable[[str], str], age: Callable[[str], bool]
) -> dict[str, dict[str, Any]]:
    """Per input: ``n`` (values observed), and ``mean`` and ``sd`` (numeric) or ``shares`` (by level).

    ``kind(name)`` is the input's kind ("numeric" or another); ``age(name)`` whether it is an age.
    An input with fewer than :data:`MIN_RANGE_VALUES` observed values has no summary.

    >>> X = pd.DataFrame({"d": [float(v) for v in range(1, 11)], "m": [True] * 7 + [False] * 3})
    >>> s = input_summaries(X, ["d", "m"], lambda n: "numeric" if n == "d" else "binary", lambda n: False)
    >>> s["d"]["mean"], round(s["d"]["sd"], 4), s["m"]["shares"]
    (5.5, 3.0277, {'False': 0.3, 'True': 0.7})
    """
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        values = X[name].dropna()
        if len(values) < MIN_RANGE_VALUES:
            continue
        if kind(name) == "numeric":
            v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(float)
            if v.size < MIN_RANGE_VALUES:
                continue
            if age(name):
                v = np.minimum(v, AGE_CAP)
            out[name] = {"n": int(v.size), "mean": float(v.mean()), "sd": float(v.std(ddof=1))}
        else:
            counts = values.map(level_key).value_counts()
            shares = {str(k): float(c) / len(values) for k, c in sorted(counts.items())}
            out[name] = {"n": len(values), "shares": shares}
    return out
