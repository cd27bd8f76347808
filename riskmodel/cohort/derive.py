"""Clinical derivations: raw export fields to canonical columns.

Each derivation is a small pure function with a hand-computed doctest. :func:`derive_missing`
applies them to a table, filling only canonical columns that are absent, and reports every
impossible value as a :class:`~riskmodel.errors.Problem`.

Months are average Gregorian months: ``MONTH_DAYS = 365.25 / 12 = 30.4375`` days.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Literal, TypeVar

import numpy as np
import pandas as pd

from riskmodel.cohort._cells import Reporter, to_dates, to_numeric
from riskmodel.cohort.contract import M_STAGES, N_STAGES, T_STAGES

__all__ = [
    "DATE_COLUMNS",
    "I125_HALF_LIFE_DAYS",
    "MONTH_DAYS",
    "RAW_COLUMNS",
    "ResponseRule",
    "bed_fractionated",
    "bed_permanent_implant",
    "derive_missing",
    "ellipsoid_volume_cm3",
    "eqd2",
    "months_between",
    "parse_tnm",
    "recist_response",
    "volume_response",
]

MONTH_DAYS = 365.25 / 12
I125_HALF_LIFE_DAYS = 59.4
TUMOUR_REPAIR_HALF_TIME_H = 1.5

ResponseRule = Literal["recist", "volume"]
ArrayT = TypeVar("ArrayT", float, np.ndarray, pd.Series)

DATE_COLUMNS = (
    "ebrt_end_date",
    "recurrence_date",
    "implant_date",
    "local_progression_date",
    "death_date",
    "last_followup_date",
)
DIAMETER_COLUMNS = {
    "mm": ("diameter_1_mm", "diameter_2_mm", "diameter_3_mm"),
    "cm": ("diameter_1_cm", "diameter_2_cm", "diameter_3_cm"),
}
RESPONSE_INPUTS = {
    "recist": ("sld_baseline_mm", "sld_3mo_mm"),
    "volume": ("volume_baseline_cm3", "volume_3mo_cm3"),
}
RAW_COLUMNS = (
    *DATE_COLUMNS,
    "tnm",
    *DIAMETER_COLUMNS["mm"],
    *DIAMETER_COLUMNS["cm"],
    *RESPONSE_INPUTS["recist"],
    *RESPONSE_INPUTS["volume"],
)


# --------------------------------------------------------------------------- pure derivations
def months_between(start: date, end: date) -> float:
    """Months from ``start`` to ``end``, with a month of 30.4375 days (365.25 / 12).

    1 January to 1 April 2021 is 31 + 28 + 31 = 90 days, 90 / 30.4375 = 2.95688 months:

    >>> round(months_between(date(2021, 1, 1), date(2021, 4, 1)), 5)
    2.95688
    >>> round(months_between(date(2020, 1, 1), date(2021, 1, 1)), 4)  # 366 days: 366 / 30.4375
    12.0246
    """
    return (end - start).days / MONTH_DAYS


_STAGE_PREFIX = r"(?:[cpyra]{1,3})?"
_TNM = re.compile(
    rf"^\s*{_STAGE_PREFIX}T(?P<t>is|x|\d+[a-d]?)[\s,;/-]*"
    rf"{_STAGE_PREFIX}N(?P<n>x|\d+[a-d]?)[\s,;/-]*"
    rf"{_STAGE_PREFIX}M(?P<m>x|\d+[a-d]?)\s*$",
    re.IGNORECASE,
)


def parse_tnm(text: str) -> tuple[str, str, str]:
    """Split a TNM string into canonical (T, N, M) categories (AJCC 8th, oesophagus).

    Prefixes (c, p, yp, r) and spaces are ignored; sub-letters are kept where AJCC defines them.

    >>> parse_tnm("T2N1M0")
    ('T2', 'N1', 'M0')
    >>> parse_tnm("cT3 N2 M0")
    ('T3', 'N2', 'M0')
    >>> parse_tnm("T4aN0M1")
    ('T4a', 'N0', 'M1')
    >>> parse_tnm("ypTisN0M0")
    ('Tis', 'N0', 'M0')
    >>> parse_tnm("T5N0M0")
    Traceback (most recent call last):
    ...
    ValueError: unknown T category 'T5' (allowed: T0, Tis, T1, T1a, T1b, T2, T3, T4, T4a, T4b)
    """
    m = _TNM.match(text)
    if m is None:
        raise ValueError("not a TNM string of the form T2N1M0 or cT3 N2 M0")
    t = "Tis" if m["t"].lower() == "is" else "T" + m["t"].lower()
    n, mm = "N" + m["n"].lower(), "M" + m["m"].lower()
    for part, allowed in ((t, T_STAGES), (n, N_STAGES), (mm, M_STAGES)):
        if part not in allowed:
            hint = " (an unknown stage cannot be modelled)" if part[1:] == "x" else ""
            raise ValueError(f"unknown {part[0]} category {part!r}{hint} (allowed: {', '.join(allowed)})")
    return t, n, mm


def ellipsoid_volume_cm3(a_cm: ArrayT, b_cm: ArrayT, c_cm: ArrayT) -> ArrayT:
    """Ellipsoid volume π/6 · a · b · c from three orthogonal diameters in cm.

    Diameters 3, 2 and 1 cm give π/6 · 6 = π cm³:

    >>> round(ellipsoid_volume_cm3(3.0, 2.0, 1.0), 6)
    3.141593
    """
    volume: ArrayT = math.pi / 6 * a_cm * b_cm * c_cm
    return volume


_EPS = 1e-9  # relative slack so that a change of exactly -30 % or +20 % lands on the boundary


def recist_response(baseline_sld_mm: float, followup_sld_mm: float) -> str:
    """RECIST 1.1 category from the sum of longest diameters (SLD) at baseline and at 3 months.

    CR: the lesions disappear (SLD 0). PR: SLD falls by at least 30 %. PD: SLD rises by at least
    20 % *and* by at least 5 mm. SD: anything else. With only two scans the baseline is the nadir.
    Nodal short-axis rules need per-lesion data and are not applied to sums.

    >>> recist_response(50, 35)   # -30 % exactly
    'PR'
    >>> recist_response(50, 36)   # -28 %
    'SD'
    >>> recist_response(20, 24)   # +20 % but only +4 mm
    'SD'
    >>> recist_response(25, 30)   # +20 % and +5 mm exactly
    'PD'
    >>> recist_response(40, 0)
    'CR'
    """
    return _relative_response(baseline_sld_mm, followup_sld_mm, "baseline SLD", pd_min_increase=5.0)


def volume_response(baseline_cm3: float, followup_cm3: float) -> str:
    """The study's volume rule: CR gone, PR fall ≥ 30 %, PD rise ≥ 20 %, SD otherwise.

    >>> volume_response(20.0, 14.0)   # -30 % exactly
    'PR'
    >>> volume_response(20.0, 24.0)   # +20 % exactly; no absolute rule for volumes
    'PD'
    >>> volume_response(20.0, 23.9)
    'SD'
    >>> volume_response(20.0, 0.0)
    'CR'
    """
    return _relative_response(baseline_cm3, followup_cm3, "baseline volume", pd_min_increase=0.0)


def _relative_response(baseline: float, followup: float, what: str, *, pd_min_increase: float) -> str:
    """CR at 0; PD at +20 % (and at least ``pd_min_increase`` absolute); PR at -30 %; else SD."""
    if not baseline > 0:
        raise ValueError(f"{what} must be greater than 0 to compute a relative change")
    if followup == 0:
        return "CR"
    change = followup - baseline
    if change >= 0.2 * baseline * (1 - _EPS) and change >= pd_min_increase - _EPS:
        return "PD"
    if change <= -0.3 * baseline * (1 - _EPS):
        return "PR"
    return "SD"


def bed_permanent_implant(
    dose_gy: ArrayT,
    alpha_beta: float = 10.0,
    half_life_days: float = I125_HALF_LIFE_DAYS,
    repair_half_time_h: float = TUMOUR_REPAIR_HALF_TIME_H,
) -> ArrayT:
    """BED of a permanent implant (Dale), no repopulation: D · (1 + D·λ / ((μ + λ) · α/β)).

    λ = ln2 / half-life and μ = ln2 / repair half-time, both per hour. For I-125 and D90 = 110 Gy,
    λ = 4.8622e-4 /h, μ = 0.46210 /h, so BED₁₀ = 110 · (1 + 0.011562) = 111.27 Gy
    (study.md: ≈ 111.3 Gy); with α/β = 3, 110 · (1 + 0.038540) = 114.24 Gy:

    >>> round(bed_permanent_implant(110.0), 2)
    111.27
    >>> round(bed_permanent_implant(110.0, alpha_beta=3.0), 2)
    114.24
    """
    lam = math.log(2) / (half_life_days * 24.0)
    mu = math.log(2) / repair_half_time_h
    bed: ArrayT = dose_gy * (1 + dose_gy * lam / ((mu + lam) * alpha_beta))
    return bed


def bed_fractionated(total_dose_gy: ArrayT, fractions: ArrayT, alpha_beta: float = 10.0) -> ArrayT:
    """BED of fractionated EBRT: n · d · (1 + d / (α/β)), with d = total dose / n.

    60 Gy in 30 fractions of 2 Gy: 60 · (1 + 2/10) = 72 Gy; with α/β = 3, 60 · (5/3) = 100 Gy:

    >>> bed_fractionated(60.0, 30, 10.0)
    72.0
    >>> round(bed_fractionated(60.0, 30, 3.0), 6)
    100.0
    """
    bed: ArrayT = total_dose_gy * (1 + (total_dose_gy / fractions) / alpha_beta)
    return bed


def eqd2(bed_gy: ArrayT, alpha_beta: float = 10.0) -> ArrayT:
    """Equivalent dose in 2 Gy fractions: BED / (1 + 2 / (α/β)).

    >>> eqd2(72.0, 10.0)   # 60 Gy in 2 Gy fractions is, by definition, EQD2 60 Gy
    60.0
    """
    dose: ArrayT = bed_gy / (1 + 2.0 / alpha_beta)
    return dose


# --------------------------------------------------------------------------- table level
@dataclass
class _Derivation:
    frame: pd.DataFrame
    rep: Reporter
    derived: list[str]

    def has(self, *cols: str) -> bool:
        return all(c in self.frame.columns for c in cols)

    def missing(self, *cols: str) -> bool:
        return not any(c in self.frame.columns for c in cols)


def derive_missing(
    raw: pd.DataFrame,
    rep: Reporter,
    *,
    response_rule: ResponseRule | None = None,
    date_format: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Fill absent canonical columns from raw clinical fields; return the frame and what was derived.

    Canonical columns already present are never overwritten. Raw date columns are consumed
    here and do not travel further than the loader.
    """
    d = _Derivation(raw.copy(deep=False), rep, [])  # columns are added, never written into
    _derive_from_dates(d, date_format)
    _derive_tnm(d)
    _derive_volume(d)
    _derive_response(d, response_rule)
    return d.frame, d.derived


def _derive_from_dates(d: _Derivation, date_format: str | None) -> None:
    f = d.frame
    present = [c for c in DATE_COLUMNS if c in f.columns]
    if not present:
        return
    raw = {c: f[c] for c in present}
    dt = {c: to_dates(f[c], c, d.rep, date_format) for c in present}

    def after(later: str, earlier: str, rule: str) -> None:
        if later in dt and earlier in dt:
            bad = dt[later] < dt[earlier]
            d.rep.add_rows(bad, f"{rule} ({earlier} is later)", later, raw[later])

    after("recurrence_date", "ebrt_end_date", "recurrence is dated before the end of EBRT")
    after("implant_date", "recurrence_date", "the implant is dated before the recurrence")
    after("death_date", "implant_date", "death is dated before the implant")
    after("last_followup_date", "implant_date", "last follow-up is dated before the implant")
    after("local_progression_date", "implant_date", "local progression is dated before the implant")
    after("death_date", "local_progression_date", "local progression is dated after death")
    after("death_date", "last_followup_date", "last follow-up is dated after death")
    if {"local_progression_date", "last_followup_date"} <= dt.keys():
        alive = dt.get("death_date", pd.Series(pd.NaT, index=f.index)).isna()
        bad = alive & (dt["local_progression_date"] > dt["last_followup_date"])
        d.rep.add_rows(
            bad,
            "local progression is dated after the last follow-up of a living patient",
            "local_progression_date",
            raw["local_progression_date"],
        )

    if d.missing("recurrence_interval_months") and {"ebrt_end_date", "recurrence_date"} <= dt.keys():
        f["recurrence_interval_months"] = _months(dt["ebrt_end_date"], dt["recurrence_date"])
        d.derived.append("recurrence_interval_months")

    if "implant_date" not in dt:
        return
    implant = dt["implant_date"]
    nat = pd.Series(pd.NaT, index=f.index, dtype="datetime64[ns]")
    death = dt.get("death_date", nat)
    last = dt.get("last_followup_date", nat)
    progression = dt.get("local_progression_date", nat)
    end_of_follow_up = death.fillna(last)
    wants_os = d.missing("os_months", "os_event")
    wants_lc = d.missing("lc_months", "lc_event")
    if (wants_os or wants_lc) and ({"death_date", "last_followup_date"} & dt.keys()):
        no_end = end_of_follow_up.isna() & implant.notna()
        d.rep.add_rows(
            no_end,
            "needs a death_date or a last_followup_date to time follow-up",
            "last_followup_date",
            pd.Series("", index=f.index),
        )
        d.rep.add_rows(
            implant.isna(), "implant_date is required to time the outcomes", "implant_date", raw["implant_date"]
        )
        if wants_os:
            f["os_event"] = death.notna().astype(int)
            f["os_months"] = _months(implant, end_of_follow_up)
            d.derived += ["os_months", "os_event"]
        if wants_lc:
            # Death ends local-control follow-up; the patient is censored for LC at death.
            f["lc_event"] = progression.notna().astype(int)
            f["lc_months"] = _months(implant, progression.fillna(end_of_follow_up))
            d.derived += ["lc_months", "lc_event"]


def _months(start: pd.Series, end: pd.Series) -> pd.Series:
    return (end - start).dt.days / MONTH_DAYS


def _derive_tnm(d: _Derivation) -> None:
    if "tnm" not in d.frame.columns:
        return
    f = d.frame
    targets = [c for c in ("t_stage", "n_stage", "m_stage") if c not in f.columns]
    parsed: dict[str, list[object]] = {c: [] for c in targets}
    for row, text in f["tnm"].items():
        parts: tuple[object, object, object] = (None, None, None)
        if isinstance(text, str) and text.strip():
            try:
                parts = parse_tnm(text)
            except ValueError as exc:
                d.rep.add(str(exc), row=row, column="tnm", value=text)
        elif targets:
            d.rep.add("required value is missing", row=row, column="tnm", value="")
        for c in targets:
            parsed[c].append(parts[("t_stage", "n_stage", "m_stage").index(c)])
    for c in targets:
        f[c] = pd.Series(parsed[c], index=f.index, dtype=object)
        d.derived.append(c)


def _derive_volume(d: _Derivation) -> None:
    f = d.frame
    if d.missing("lesion_volume_cm3"):
        if d.has("volume_baseline_cm3"):
            f["lesion_volume_cm3"] = f["volume_baseline_cm3"]
            d.derived.append("lesion_volume_cm3")
        else:
            for unit, cols in DIAMETER_COLUMNS.items():
                if d.has(*cols):
                    diam = [to_numeric(f[c], c, d.rep) for c in cols]
                    for c, s in zip(cols, diam, strict=True):
                        d.rep.add_rows(s <= 0, "a diameter must be greater than 0", c, f[c])
                    scale = 0.1 if unit == "mm" else 1.0
                    f["lesion_volume_cm3"] = ellipsoid_volume_cm3(*(s * scale for s in diam))
                    d.derived.append("lesion_volume_cm3")
                    break


def _derive_response(d: _Derivation, rule: ResponseRule | None) -> None:
    f = d.frame
    recist_ok = d.has(*RESPONSE_INPUTS["recist"])
    volume_ok = d.has("volume_3mo_cm3") and (d.has("volume_baseline_cm3") or d.has("lesion_volume_cm3"))
    if d.has("response_3mo") or not (recist_ok or volume_ok or rule):
        return
    if rule is None:
        if recist_ok and volume_ok:
            d.rep.add(
                "both RECIST diameters and volumes are present: choose response_rule "
                "'recist' or 'volume' (mapping file or --response-rule)",
                column="response_3mo",
            )
            return
        rule = "recist" if recist_ok else "volume"
    if (rule == "recist" and not recist_ok) or (rule == "volume" and not volume_ok):
        need = " and ".join(RESPONSE_INPUTS[rule])
        d.rep.add(f"response_rule '{rule}' needs the columns {need}", column="response_3mo")
        return
    base_col, follow_col = RESPONSE_INPUTS[rule]
    if rule == "volume" and not d.has(base_col):
        base_col = "lesion_volume_cm3"
    base = to_numeric(f[base_col], base_col, d.rep)
    follow = to_numeric(f[follow_col], follow_col, d.rep)
    d.rep.add_rows(base <= 0, "baseline measurement must be greater than 0", base_col, f[base_col])
    d.rep.add_rows(follow < 0, "a measurement cannot be negative", follow_col, f[follow_col])
    classify = recist_response if rule == "recist" else volume_response
    ok = (base > 0) & (follow >= 0)
    f["response_3mo"] = [classify(b, v) if good else None for b, v, good in zip(base, follow, ok, strict=True)]
    d.derived.append("response_3mo")
