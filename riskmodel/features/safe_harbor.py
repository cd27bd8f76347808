"""What a model file, a patient page or a report may say about a training covariate's values.

A model file and a patient page travel further than the data (to other centres, into
publications), so the numbers they carry about the training patients are made safe to share:

* **Ages above 89 are "90+".** HIPAA Safe Harbor counts an age over 89 as an identifier. An age
  covariate's value of 90 or more is stored as ``"90+"`` in ``model.json`` and shown as "90+" on
  pages, in flags and in tables of characteristics. In memory the capped value is 90
  (:data:`AGE_CAP`), and a scored patient's age is capped the same way before it is compared
  with the range: a patient aged 95 scored against a model whose range ends at "90+" is inside
  it (both are "90+"), while one aged 95 against a range ending at 80 is above it, shown as 90+.
* **A stored range describes at least five patients**: from the 5th smallest to the 5th
  largest training value (:func:`shared_range`), never one patient's exact extreme. With fewer
  than 10 values the two would cross, so no range is stored and no range flag is raised.

Which covariates are ages (:func:`is_age`): the bundled study's ``age_years``; in a declared
cohort, a covariate declared ``phi: age``, or by default a numeric covariate whose unit is years
(``years``, ``year``, ``yrs``, ``yr``, ``y``) and whose name contains the word "age" (``age``,
``age_at_dx``, ``patient_age``, ``AgeAtDiagnosis``; not ``stage`` or ``dosage``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "AGE_CAP",
    "MIN_RANGE_VALUES",
    "RANGE_RANK",
    "RANGE_WORDING",
    "cap_age",
    "is_age",
    "is_age_covariate",
    "read_bound",
    "read_ranges",
    "shared_range",
    "shown_value",
    "stored_bound",
]

AGE_CAP = 90.0  # HIPAA Safe Harbor: ages over 89 are aggregated into one category, "90+"
RANGE_RANK = 5  # a stored range runs from the 5th smallest to the 5th largest value
MIN_RANGE_VALUES = 2 * RANGE_RANK  # below this, the 5th smallest and 5th largest cross: no range
RANGE_WORDING = "the middle of the training data (5th smallest to 5th largest value)"

_YEARS = {"years", "year", "yrs", "yr", "y"}
# "age" as a word of the name: at its start or after a non-letter (age, age_at_dx, patient_age),
# or capitalised inside a camel-case name (AgeAtDx, PatientAge); never inside stage or dosage
_AGE_WORD = re.compile(r"(?<![A-Za-z])(?:age|Age|AGE)(?![a-z])|(?<=[a-z])Age(?![a-z])")


def is_age(name: str, declaration: Any = None) -> bool:
    """Whether the covariate ``name`` is an age in years, to be capped at 90+.

    >>> is_age("age_years"), is_age("stage"), is_age("d90_gy")
    (True, False, False)
    """
    if declaration is None:
        return name == "age_years"
    c = next((c for c in declaration.covariates if c.name == name), None)
    return c is not None and is_age_covariate(c)


def is_age_covariate(c: Any) -> bool:
    """Whether a declared covariate is an age: ``phi: age``, or numeric in years named "age"."""
    if c.kind != "numeric":
        return False
    if getattr(c, "phi", None) == "age":
        return True
    return c.unit.strip().lower() in _YEARS and bool(_AGE_WORD.search(c.name))


def cap_age(value: float) -> float:
    """An age as it may be shared: 90 for any age of 90 or more (read "90+").

    >>> cap_age(97.0), cap_age(89.5)
    (90.0, 89.5)
    """
    return min(float(value), AGE_CAP) if not math.isnan(value) else value


def shared_range(values: Any, *, age: bool = False) -> tuple[float, float] | None:
    """The training range safe to store: (5th smallest, 5th largest), ages capped at 90.

    None when there are fewer than 10 values (the two would cross, or be one patient's value).

    >>> shared_range(range(1, 21))
    (5.0, 16.0)
    >>> shared_range([40, 50, 60, 70, 80, 91, 92, 93, 95, 97], age=True)
    (80.0, 90.0)
    >>> shared_range(range(9)) is None
    True
    """
    v = np.sort(pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(float))
    if v.size < MIN_RANGE_VALUES:
        return None
    lo, hi = float(v[RANGE_RANK - 1]), float(v[-RANGE_RANK])
    return (cap_age(lo), cap_age(hi)) if age else (lo, hi)


def shown_value(value: float, *, age: bool = False) -> str:
    """A number as a page or a flag shows it; an age of 90 or more is "90+".

    >>> shown_value(97, age=True), shown_value(97), shown_value(62.5, age=True)
    ('90+', '97', '62.5')
    """
    if age and not math.isnan(value) and value >= AGE_CAP:
        return "90+"
    return f"{float(value):g}"


def stored_bound(value: float, *, age: bool) -> float | str:
    """A range bound as ``model.json`` stores it: a number, or "90+" for a capped age."""
    return "90+" if age and value >= AGE_CAP else float(value)


def read_bound(value: Any) -> float:
    """A range bound read back from ``model.json``: "90+" is the cap."""
    if isinstance(value, str) and value.strip() == "90+":
        return AGE_CAP
    return float(value)


def read_ranges(stored: dict[str, Any], declaration: Any = None) -> dict[str, tuple[float, float]]:
    """The ranges of a ``model.json``; an age above 89 in a model saved before the cap is read as 90+."""
    out = {}
    for name, (lo, hi) in stored.items():
        low, high = read_bound(lo), read_bound(hi)
        out[name] = (cap_age(low), cap_age(high)) if is_age(name, declaration) else (low, high)
    return out
