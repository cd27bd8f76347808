"""The descriptive survival statistics of a declared cohort, as tables: characteristics overall
and by centre, each endpoint's events, follow-up and Kaplan-Meier figures, and the univariate
Kaplan-Meier / log-rank table of every declared covariate.

Groups of a covariate (:class:`Grouping`): a binary, ordinal or categorical covariate by its
declared levels; a numeric one split in two at a cut-off given on the command line, else at its
declared ``threshold`` (``encoding: threshold``), else at its median over the patients with a
value. The rule used is written beside every row. A patient missing a covariate is left out of
that covariate's rows only (``missing`` says how many). A group with fewer than
:data:`SPARSE_EVENTS` events is marked sparse: its median and the log-rank χ² approximation rest
on very few events.

Follow-up is summarised by the reverse Kaplan-Meier median (censoring as the event; Schemper &
Smith, Control Clin Trials 1996;17:343-6). Every Kaplan-Meier figure is
:mod:`riskmodel.stats.kaplan_meier`'s (medians and their intervals as R's ``survfit``; rates with
log-log intervals), every log-rank test :func:`riskmodel.stats.logrank_chi2` (R's ``survdiff``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from riskmodel.cohort.declaration import CovariateDeclaration
from riskmodel.errors import UserInputError
from riskmodel.features.safe_harbor import AGE_CAP, is_age_covariate
from riskmodel.stats import km_at, km_median, km_summary, logrank_chi2

__all__ = [
    "SPARSE_EVENTS",
    "Grouping",
    "characteristics_declared",
    "endpoint_summary",
    "groupings",
    "level_labels",
    "univariate_declared",
]

SPARSE_EVENTS = 5  # fewer events in a group than this: its median and the χ² approximation are fragile


def level_names(c: CovariateDeclaration) -> list[str]:
    """A discrete covariate's levels in code order (an undeclared binary: no, yes)."""
    return c.code_levels or (["no", "yes"] if c.kind == "binary" else [])


def level_labels(c: CovariateDeclaration, values: pd.Series) -> pd.Series:
    """Each patient's level as text (NaN where missing), from the loader's codes.

    >>> from riskmodel.cohort.declaration import CovariateDeclaration as C
    >>> grade = C(name="grade", column="Grade", kind="ordinal", levels=["1", "2", "3"])
    >>> level_labels(grade, pd.Series([0.0, 2.0, float("nan")])).tolist()
    ['1', '3', nan]
    """
    if c.kind == "categorical":
        return values.astype(object).where(values.notna())
    names = level_names(c)
    return values.map(lambda v: names[int(v)] if pd.notna(v) else math.nan).astype(object)


def _fmt(value: float) -> str:
    """Three significant digits (whole numbers above 100 kept whole), never in exponent form.

    >>> _fmt(62.0), _fmt(3.6512), _fmt(1234.6), _fmt(0.012345), _fmt(0.0)
    ('62', '3.65', '1235', '0.0123', '0')
    """
    if not math.isfinite(value) or value == 0:
        return "0" if value == 0 else "–"
    decimals = min(max(0, 2 - math.floor(math.log10(abs(value)))), 6)
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _age_fmt(value: float) -> str:
    """An age as a shared table shows it: 90 or more is "90+" (HIPAA Safe Harbor)."""
    return "90+" if value >= AGE_CAP else _fmt(value)


def _describe(c: CovariateDeclaration, values: pd.Series) -> list[str]:
    """One column of the characteristics table: the cells of :func:`_statistics`' rows."""
    n = len(values)
    missing = int(values.isna().sum())
    share = f"{missing} ({100 * missing / n:.0f}%)" if n else "0"
    if c.kind == "numeric":
        v = values.dropna().to_numpy(float)
        if not v.size:
            return ["–", "–", share]
        q1, median, q3 = np.percentile(v, [25, 50, 75])
        show = _age_fmt if is_age_covariate(c) else _fmt
        return [f"{show(median)} ({show(q1)}-{show(q3)})", f"{show(v.min())}-{show(v.max())}", share]
    labels = level_labels(c, values)
    cells = []
    for level in level_names(c):
        k = int((labels == level).sum())
        cells.append(f"{k} ({100 * k / n:.0f}%)" if n else "0")
    return [*cells, share]


def _statistics(c: CovariateDeclaration) -> list[str]:
    if c.kind == "numeric":
        return ["median (IQR)", "range", "missing, n (%)"]
    return [f"{level}, n (%)" for level in level_names(c)] + ["missing, n (%)"]


def characteristics_declared(data: pd.DataFrame, covariates: Sequence[CovariateDeclaration]) -> pd.DataFrame:
    """Per covariate: numeric median (IQR), range and missing; discrete n (%) per level and missing;
    for all patients and, when the cohort has a centre column, for each centre (percentages of the
    column's patients, the missing row included)."""
    columns: dict[str, pd.DataFrame] = {f"all (n={len(data)})": data}
    if "centre" in data.columns:
        for centre, rows in data.groupby(data["centre"].fillna("(none)").astype(str), sort=True):
            columns[f"{centre} (n={len(rows)})"] = rows
    records: list[dict[str, Any]] = []
    for c in covariates:
        label = f"{c.name} ({c.unit})" if c.unit else c.name
        cells = {header: _describe(c, frame[c.name]) for header, frame in columns.items()}
        for i, statistic in enumerate(_statistics(c)):
            records.append({"covariate": label, "statistic": statistic, **{h: v[i] for h, v in cells.items()}})
    return pd.DataFrame(records)


def endpoint_summary(
    time: np.ndarray, event: np.ndarray, horizons: Sequence[float], competing: int | None = None
) -> pd.DataFrame:
    """Patients, events (and competing events), the reverse-KM median follow-up, the KM median and
    the KM rates at ``horizons``, each with its 95% interval."""
    nan = math.nan
    rows = [
        {"figure": "patients", "estimate": float(len(time)), "lower 95%": nan, "upper 95%": nan},
        {"figure": "events", "estimate": float(event.sum()), "lower 95%": nan, "upper 95%": nan},
    ]
    if competing is not None:
        rows.append({"figure": "competing events (censored here)", "estimate": float(competing)})
    follow = km_median(time, ~event)
    rows.append(_row("median follow-up, reverse KM (months)", follow))
    rows.append(_row("median survival, KM (months)", km_median(time, event)))
    for h in horizons:
        s, low, high = km_at(time, event, h)
        rows.append(_row(f"S({h:g}) %", (100 * s, 100 * low, 100 * high)))
    return pd.DataFrame(rows, columns=["figure", "estimate", "lower 95%", "upper 95%"])


def _row(figure: str, values: tuple[float, float, float]) -> dict[str, Any]:
    return {"figure": figure, "estimate": values[0], "lower 95%": values[1], "upper 95%": values[2]}


@dataclass(frozen=True)
class Grouping:
    """How one covariate's patients are put into groups for Kaplan-Meier and the log-rank test."""

    covariate: CovariateDeclaration
    how: str  # "declared levels", "median 62 years", "declared threshold 5 ng/mL", "--cutoff 70 years"
    cut: float | None = None

    @property
    def groups(self) -> list[str]:
        """The groups in order."""
        if self.cut is None:
            return level_names(self.covariate)
        unit = f" {self.covariate.unit}" if self.covariate.unit else ""
        return [f"< {self.cut:g}{unit}", f"≥ {self.cut:g}{unit}"]

    def labels(self, values: pd.Series) -> pd.Series:
        """Each patient's group (NaN where the covariate is missing)."""
        if self.cut is None:
            return level_labels(self.covariate, values)
        low, high = self.groups
        number = pd.to_numeric(values, errors="coerce")
        return pd.Series(np.where(number >= self.cut, high, low), index=values.index, dtype=object).where(
            number.notna()
        )


def groupings(
    data: pd.DataFrame, covariates: Sequence[CovariateDeclaration], cutoffs: Mapping[str, float] | None = None
) -> list[Grouping]:
    """Each covariate's grouping; ``cutoffs`` (numeric covariates only) override the declared
    threshold or the median (over every patient with a value)."""
    numeric = [c.name for c in covariates if c.kind == "numeric"]
    unknown = sorted(set(cutoffs or {}) - set(numeric))
    if unknown:
        raise UserInputError(
            f"--cutoff: {', '.join(unknown)} is not a numeric covariate of this report "
            f"(numeric: {', '.join(numeric) or 'none'})"
        )
    out = []
    for c in covariates:
        unit = f" {c.unit}" if c.unit else ""
        if c.kind != "numeric":
            out.append(Grouping(c, "declared levels"))
        elif cutoffs and c.name in cutoffs:
            out.append(Grouping(c, f"--cutoff {cutoffs[c.name]:g}{unit}", float(cutoffs[c.name])))
        elif c.encoding == "threshold" and c.threshold is not None:
            out.append(Grouping(c, f"declared threshold {c.threshold:g}{unit}", float(c.threshold)))
        else:
            median = float(pd.to_numeric(data[c.name], errors="coerce").median())
            out.append(Grouping(c, f"median {median:g}{unit}", median))
    return out


def univariate_declared(
    covariates: pd.DataFrame,
    time: np.ndarray,
    event: np.ndarray,
    grouping: Sequence[Grouping],
    horizons: Sequence[float],
) -> pd.DataFrame:
    """Per covariate and group: n, events, KM median and rates (%), the log-rank χ², df and p, the
    patients missing the covariate, and a note (a sparse or empty group; a covariate with one group)."""
    rows: list[dict[str, Any]] = []
    for g in grouping:
        rows += _covariate_rows(g, g.labels(covariates[g.covariate.name]).to_numpy(), time, event, horizons)
    return pd.DataFrame(rows)


def _covariate_rows(
    g: Grouping, labels: np.ndarray, time: np.ndarray, event: np.ndarray, horizons: Sequence[float]
) -> list[dict[str, Any]]:
    known = pd.notna(labels)
    present = [lvl for lvl in g.groups if (labels == lvl).any()]
    chi2, p = math.nan, math.nan
    if len(present) > 1:
        codes = np.array([present.index(v) for v in labels[known]])
        chi2 = logrank_chi2(time[known], event[known], codes, len(present))
        p = float(stats.chi2.sf(chi2, len(present) - 1))
    rows = []
    for level in g.groups:
        mask = labels == level
        n, d = int(mask.sum()), int(event[mask].sum())
        rates, median = (np.full(len(horizons), np.nan), math.nan)
        if n:
            rates, median = km_summary(time[mask], event[mask], horizons)
        note = "no patients" if n == 0 else (f"sparse: {d} event{'s' if d != 1 else ''}" if d < SPARSE_EVENTS else "")
        if len(present) < 2:
            note = "; ".join(filter(None, [note, "one group only: no test"]))
        rows.append(
            {
                "covariate": g.covariate.name,
                "groups by": g.how,
                "group": level,
                "n": n,
                "events": d,
                "median (months)": median,
                **{f"S({h:g}) %": 100 * r for h, r in zip(horizons, rates, strict=True)},
                "log-rank χ²": chi2,
                "df": len(present) - 1 if len(present) > 1 else math.nan,
                "p": p,
                "missing": int((~known).sum()),
                "note": note,
            }
        )
    return rows
