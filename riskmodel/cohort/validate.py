"""Check a table against the cohort contract, cell by cell and across columns.

Every problem is collected (never only the first); the caller decides whether to fail.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from riskmodel.cohort._arrow_cells import arrow_text, object_cells, visible_edges
from riskmodel.cohort._cells import FAST_FROM, Reporter, blank_mask, to_numeric
from riskmodel.cohort.contract import COLUMNS, ENDPOINTS, RESPONSE_CATEGORIES, Column
from riskmodel.errors import Severity

__all__ = ["normalise_category", "validate_frame", "visible_edges"]

_SYNONYMS: dict[str, dict[str, str]] = {
    "sex": {"male": "M", "m": "M", "man": "M", "female": "F", "f": "F", "woman": "F"},
    "pathological_grade": {
        "poorly differentiated": "low",
        "poor": "low",
        "poorly": "low",
        "moderately differentiated": "moderate",
        "moderately": "moderate",
        "well differentiated": "high",
        "well": "high",
        "highly differentiated": "high",
    },
    "response_3mo": {
        "complete response": "CR",
        "partial response": "PR",
        "stable disease": "SD",
        "progressive disease": "PD",
    },
}
_BOOL = {
    "yes": True,
    "y": True,
    "true": True,
    "1": True,
    "1.0": True,
    "no": False,
    "n": False,
    "false": False,
    "0": False,
    "0.0": False,
}
_GRADE_CODES = {"g1", "g2", "g3", "g4", "gx", "1", "2", "3"}


def normalise_category(col: Column, value: object) -> str | None:
    """Map a raw cell to the contract's spelling of a category, or ``None`` if unknown.

    >>> from riskmodel.cohort.contract import column
    >>> normalise_category(column("t_stage"), " t4A ")
    'T4a'
    >>> normalise_category(column("t_stage"), "2")
    'T2'
    >>> normalise_category(column("sex"), "Female")
    'F'
    >>> normalise_category(column("response_3mo"), "SD+PD") is None
    True
    """
    assert col.allowed is not None
    text = " ".join(str(value).strip().split())
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    lowered = text.lower()
    for allowed in col.allowed:
        if lowered == allowed.lower():
            return allowed
    if col.name in ("t_stage", "n_stage", "m_stage"):
        prefixed = col.name[0].upper() + lowered
        for allowed in col.allowed:
            if prefixed.lower() == allowed.lower():
                return allowed
    return _SYNONYMS.get(col.name, {}).get(lowered)


def validate_frame(
    frame: pd.DataFrame,
    rep: Reporter,
    *,
    require_outcomes: bool = True,
    required: Collection[str] | None = None,
) -> pd.DataFrame:
    """Return the contract columns of ``frame``, typed; every problem goes to ``rep``.

    ``required`` replaces the contract's list of required columns (scoring asks only for what a
    model reads); columns that are present are checked either way.

    Columns outside the contract are not returned. Numbers are float64 (int64 where a whole-number
    column has no gaps), categories are pandas ``Categorical`` with the contract's categories
    (response ordered PD < SD < PR < CR), yes/no columns are ``boolean``, events are int64.
    """
    if len(frame) == 0:
        rep.add("the table has no patient rows")
    out: dict[str, pd.Series] = {}
    for col in COLUMNS:
        needed = (
            (col.name in required)
            if required is not None
            else (col.required and (require_outcomes or col.role != "outcome"))
        )
        if col.name not in frame.columns:
            if needed:
                rep.add(
                    "required column is missing (no alias or derivation produced it; see data/README.md)",
                    column=col.name,
                )
            continue
        out[col.name] = _check_column(col, frame[col.name], rep, needed)
    typed = pd.DataFrame(out, index=frame.index, copy=False)  # each column is new: no second copy
    _check_rows(typed, rep, fitting=require_outcomes)
    return typed


def _check_column(col: Column, s: pd.Series, rep: Reporter, needed: bool) -> pd.Series:
    blank = blank_mask(s)
    if needed:
        rep.add_rows(blank, "required value is missing", col.name, s)
    if col.kind == "id":
        return _check_id(s, blank, rep)
    if col.kind == "category":
        return _check_category(col, s, blank, rep)
    if col.kind == "bool":
        codes, uniques = _distinct(s, blank)
        answers = [_BOOL.get(str(v).strip().lower()) for v in uniques]
        known = np.array([a is not None for a in answers] + [False])[codes]  # code -1 (blank): last
        truth = np.array([bool(a) for a in answers] + [False])[codes]
        rep.add_rows(pd.Series(~known & ~blank.to_numpy(), index=s.index), "must be yes or no", col.name, s)
        return pd.Series(pd.arrays.BooleanArray(truth, ~known), index=s.index)
    if col.kind == "event":
        rule = "must be 0 (censored) or 1 (event)"
        num = to_numeric(s, col.name, rep, rule)
        bad = num.notna() & (num != 0) & (num != 1)
        rep.add_rows(bad, rule, col.name, s)
        events = num.where(~bad)
        return events.astype("Int64" if events.isna().any() else "int64")
    num = to_numeric(s, col.name, rep)
    # A cell that breaks its own rule is blanked, so cross-column rules do not echo the same mistake.
    num = num.where(~_check_range(col, num, s, rep))
    if col.kind == "int":
        frac = num.notna() & (num != np.round(num))
        rep.add_rows(frac, "must be a whole number", col.name, s)
        num = num.where(~frac)
        if not num.isna().any():
            return num.astype("int64")
    return num


def _check_range(col: Column, num: pd.Series, raw: pd.Series, rep: Reporter) -> pd.Series:
    """Report hard-range errors and plausibility warnings; return the mask of hard errors.

    Compared as numpy arrays: a missing value (NaN) breaks no rule, as in pandas' comparisons."""
    unit = f" {col.unit}" if col.unit else ""
    v = num.to_numpy(dtype=float)
    bad = np.zeros(len(v), dtype=bool)

    def report(mask: np.ndarray, rule: str, severity: Severity = "error") -> None:
        if mask.any():
            rep.add_rows(pd.Series(mask, index=num.index), rule, col.name, raw, severity)

    if col.hard_min is not None:
        low = v <= col.hard_min if col.min_exclusive else v < col.hard_min
        word = "greater than" if col.min_exclusive else "at least"
        report(low, f"must be {word} {col.hard_min:g}{unit} (hard limit)")
        bad |= low
    if col.hard_max is not None:
        high = v > col.hard_max
        report(high, f"must be at most {col.hard_max:g}{unit} (hard limit)")
        bad |= high
    hard_ok = ~np.isnan(v) & ~bad
    if col.plausible:
        lo, hi = col.plausible
        outside = hard_ok & ~((v >= lo) & (v <= hi))
        report(outside, f"is outside the plausible range {lo:g}-{hi:g}{unit}; please check", "warning")
    if col.step:
        with np.errstate(invalid="ignore"):
            off = hard_ok & (np.abs(v / col.step - np.round(v / col.step)) > 1e-9)
        report(off, f"is not a multiple of {col.step:g}, as {col.name} usually is", "warning")
    return pd.Series(bad, index=num.index)


def _check_id(s: pd.Series, blank: pd.Series, rep: Reporter) -> pd.Series:
    fast = _distinct_text_ids(s, blank)
    if fast is not None:  # a long column of text IDs, none repeated: nothing to report
        return fast
    s = object_cells(s)
    ids = s.astype(str).str.strip().where(~blank)
    dup = ids.notna() & ids.duplicated(keep=False)
    if dup.any():
        first = ids[dup].groupby(ids[dup]).apply(lambda g: g.index[0])
        for row in ids.index[dup.to_numpy()]:
            if row != first[ids[row]]:
                rep.add(
                    f"duplicate patient_id (first seen on row {first[ids[row]]})",
                    row=row,
                    column="patient_id",
                    value=s[row],
                )
    return ids


def _distinct_text_ids(s: pd.Series, blank: pd.Series) -> pd.Series | None:
    """``_check_id``'s IDs (text without outer spaces, NaN where blank) of a column of Arrow text
    or a long column of text, when none is repeated; else ``None`` (the general path then finds
    and reports the repeats).

    An ID whose first and last characters are visible ASCII is its own ``str.strip()``, so Python
    strips only the others; Arrow counts the distinct IDs (hashed in C)."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    text = arrow_text(s)
    if text is None:
        if s.dtype != object or len(s) < FAST_FROM or pd.api.types.infer_dtype(s, skipna=True) != "string":
            return None  # Arrow would read bytes as text, where astype(str) writes b'...'
        try:
            text = pa.array(s.to_numpy(), type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # numbers or other objects among the cells
            return None
    kept = ~blank.to_numpy(dtype=bool)
    strip = np.flatnonzero(~visible_edges(text) & kept)
    ids = object_cells(s).where(~blank)
    if len(strip):
        ids.iloc[strip] = [v.strip() for v in ids.iloc[strip].tolist()]
        text = pa.array(ids.to_numpy(), type=pa.string(), from_pandas=True)
    if len(pc.unique(text.filter(pa.array(kept)))) != int(kept.sum()):  # no blank (nor null) is left
        return None
    return ids


def _check_category(col: Column, s: pd.Series, blank: pd.Series, rep: Reporter) -> pd.Series:
    assert col.allowed is not None
    ordered = col.name == "response_3mo"
    cats = list(reversed(RESPONSE_CATEGORIES)) if ordered else list(col.allowed)
    codes, uniques = _distinct(s, blank)
    place: dict[str | None, int] = {c: i for i, c in enumerate(cats)}
    canon_codes = np.array([place.get(normalise_category(col, v), -1) for v in uniques] + [-1], dtype=np.int64)
    cat_codes = canon_codes[codes]  # code -1 (blank) reads the last entry: missing
    unknown = pd.Series((cat_codes < 0) & ~blank.to_numpy(), index=s.index)
    rule = f"must be one of {', '.join(col.allowed)}"
    if col.name == "pathological_grade" and unknown.any():
        g_code = unknown & object_cells(s).astype(str).str.strip().str.lower().isin(_GRADE_CODES)
        rep.add_rows(
            g_code,
            rule + " (G-codes are not mapped: G1 is well differentiated; state the mapping in the mapping file)",
            col.name,
            s,
        )
        unknown &= ~g_code
    rep.add_rows(unknown, rule, col.name, s)
    return pd.Series(pd.Categorical.from_codes(cat_codes, categories=pd.Index(cats), ordered=ordered), index=s.index)


def _distinct(s: pd.Series, blank: pd.Series) -> tuple[np.ndarray, list[object]]:
    """Each cell's code among the column's distinct non-blank cells (-1 for a blank one), and
    those cells: one hashing pass, so a rule is decided once per distinct spelling."""
    text = arrow_text(s)
    if text is not None:  # Arrow's dictionary encoding: its own codes, in order of first appearance
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(text)
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp)
        codes[blank.to_numpy(dtype=bool)] = -1
        return codes, encoded.dictionary.to_pylist()
    codes, uniques = pd.factorize(s.where(~blank))
    return codes, list(uniques)


def _check_rows(t: pd.DataFrame, rep: Reporter, *, fitting: bool = True) -> None:
    def has(*cols: str) -> bool:
        return all(c in t.columns for c in cols)

    for ep in ENDPOINTS:
        time, event = f"{ep}_months", f"{ep}_event"
        if has(time, event):
            rep.add_rows(
                (t[event] == 1) & (t[time] == 0), f"an event ({event} = 1) cannot happen at time 0", time, t[time]
            )
            rep.add_rows(
                (t[event] == 0) & (t[time] == 0),
                "censored at time 0: this patient adds no follow-up",
                time,
                t[time],
                "warning",
            )
            # a warning about fitting: new patients being scored (one at a time, often) fit nothing
            if fitting and len(t) and t[event].notna().all() and (t[event] == 0).all():
                rep.add(
                    f"all patients are censored for {ep.upper()}: no model can be fitted on it",
                    column=event,
                    severity="warning",
                )
    if has("lc_months", "os_months"):
        rep.add_rows(
            t["lc_months"] > t["os_months"] + 1e-9,
            "lc_months is greater than os_months; local-control follow-up ends at death or last follow-up",
            "lc_months",
            t["lc_months"],
        )
    if has("d100_gy", "d90_gy"):
        rep.add_rows(
            t["d100_gy"] > t["d90_gy"] + 1e-9,
            "D100 cannot exceed D90 (the dose to all of the CTV is at most the dose to 90% of it)",
            "d100_gy",
            t["d100_gy"],
        )
    if has("d90_gy", "prescription_dose_gy"):
        ratio = t["d90_gy"] / t["prescription_dose_gy"]
        rep.add_rows(
            ~ratio.between(0.5, 2.0) & ratio.notna(),
            "D90 differs from the prescription by more than a factor 2; check the units (Gy, not cGy)",
            "d90_gy",
            t["d90_gy"],
            "warning",
        )
    if has("response_3mo", "os_months", "os_event"):
        has_resp = t["response_3mo"].notna()
        early = has_resp & (t["os_months"] < 3 - 1e-9)
        rep.add_rows(
            early & (t["os_event"] == 1),
            "response_3mo is recorded but the patient died before the 3-month CT",
            "response_3mo",
            t["response_3mo"].astype(object),
        )
        rep.add_rows(
            early & (t["os_event"] == 0),
            "response_3mo is recorded but follow-up ends before the 3-month CT",
            "response_3mo",
            t["response_3mo"].astype(object),
            "warning",
        )
