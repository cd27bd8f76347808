"""A file of patients scored as one table: :meth:`RiskModel.score`'s records, built column by column.

``score_frame`` gives, for every row of a patients table, what ``riskmodel score --out FILE.csv``
writes from the score records (one column per horizon, the flags joined by "; "), and the same
statuses: refused by the landmark rule, error (a row that cannot be read), outside the development
data, extrapolated, or scored. It is the unit a streamed file is scored in
(:mod:`riskmodel.scoring.stream`): validation, features, predictions, flags and statuses are whole
arrays; only the rows that carry a message (refused, error, flagged) are formatted one by one.
Its columns are fixed (:func:`score_columns`), so every chunk of one file has the same ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort.validate import visible_edges
from riskmodel.core.pseudonyms import pseudonyms
from riskmodel.errors import Problem
from riskmodel.models.base import check_horizons
from riskmodel.models.cif import cif_matrix, risk_horizon
from riskmodel.scoring.flags import EXTRAPOLATED, OUTSIDE, missing_flags, outside_flags
from riskmodel.scoring.landmark import landmark_refusals

__all__ = ["identities", "is_text", "problem_text", "risk_groups", "score_chunk", "score_columns", "score_frame"]

# the text columns of a score table (the rest are numbers: row, risk score, probabilities)
TEXT = ("patient_id", "pseudonym", "endpoint", "family", "status", "reason", "error", "time_origin", "risk_group")


def is_text(column: str) -> bool:
    """Whether a score table's column holds text (else numbers: row, risk score, probabilities)."""
    return column in TEXT or column.startswith("label_") or column == "flags"


def score_columns(model: Any, times: list[float]) -> list[str]:
    """The columns of ``model``'s score table at ``times``, in order."""
    keys = [f"{t:g}" for t in times]
    if model.competing:
        curves = [f"{name}_{k}" for name in ("cif", "cif_competing", "event_free") for k in keys]
        curves += ["risk_horizon_months", "label_cif", "label_cif_competing", "label_event_free"]
    else:
        curves = [f"S_{k}" for k in keys]
    return [*TEXT[:4], "row", *TEXT[4:], "risk_score", *curves, "flags"]


def identities(df: pd.DataFrame, id_column: str) -> tuple[list[str | None], list[str | None]]:
    """Each row's own ID as text (None when blank) and its pseudonym, as ``RiskModel.score`` gives them."""
    if id_column not in df.columns:
        return [None] * len(df), [None] * len(df)
    fast = _text_identities(df[id_column])
    if fast is not None:
        return fast
    raw = df[id_column].to_numpy(dtype=object)
    ids: list[str | None] = [
        None if v is None or (isinstance(v, float) and math.isnan(v)) or not str(v).strip() else str(v) for v in raw
    ]
    present = [v for v in ids if v is not None]
    names = iter(pseudonyms(present))
    return ids, [None if v is None else next(names) for v in ids]


def _text_identities(s: pd.Series) -> tuple[list[str | None], list[str | None]] | None:
    """:func:`identities` of a long column of text (cells None or NaN where missing), Python's
    ``str.strip()`` run only on the IDs whose first or last character is not visible ASCII (the
    others are their own stripped text); ``None`` for any other column."""
    raw = s.to_numpy(dtype=object)
    if s.dtype != object or len(s) < 1000 or pd.api.types.infer_dtype(raw, skipna=True) != "string":
        return None  # Arrow would read bytes as text, where str() writes b'...'
    import pyarrow as pa  # type: ignore[import-untyped]

    try:
        text = pa.array(raw, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # numbers or other objects among the cells
        return None
    present = ~np.asarray(text.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if not all(v is None or (isinstance(v, float) and math.isnan(v)) for v in raw[~present].tolist()):
        return None  # another missing marker (pd.NA...): the general path writes it as text
    keys = raw.copy()
    for i in np.flatnonzero(present & ~visible_edges(text)).tolist():
        keys[i] = raw[i].strip()
        present[i] = bool(keys[i])
    ids = raw.copy()
    ids[~present] = None
    names = np.full(len(raw), None, dtype=object)
    names[present] = pseudonyms(keys[present].tolist())
    return ids.tolist(), names.tolist()


def problem_text(problems: Iterable[Problem]) -> str:
    """A row's problems as one record's ``error``: column, value and rule, without "error: "."""
    return "; ".join(str(Problem(p.rule, column=p.column, value=p.value)).removeprefix("error: ") for p in problems)


def score_frame(
    model: Any, df: pd.DataFrame, times: Iterable[float] | None = None, *, allow_extrapolation: bool = False
) -> pd.DataFrame:
    """Score ``df`` (raw cells, indexed by row number) with ``model``: one row per patient, in row
    order, with the columns of :func:`score_columns`, and the statuses, reasons, errors and flags
    of :meth:`RiskModel.score` (a row that cannot be read is an ``error`` row, not an exception)."""
    return score_chunk(model, df, times, allow_extrapolation=allow_extrapolation)[0]


def score_chunk(
    model: Any,
    df: pd.DataFrame,
    times: Iterable[float] | None = None,
    *,
    allow_extrapolation: bool = False,
    earlier: Callable[[pd.DataFrame], Mapping[Any, list[Problem]]] | None = None,
    who: tuple[list[str | None], list[str | None]] | None = None,
) -> tuple[pd.DataFrame, dict[Any, list[Problem]]]:
    """:func:`score_frame` of one chunk of a file, and the problems of its error rows (by row).

    ``earlier`` is asked, with the rows validation reads (those the landmark rule did not refuse),
    for problems found outside this chunk (a patient ID seen in an earlier chunk of the file);
    they join the rows' own, first, as validation of the whole file would list them. ``who`` is
    :func:`identities` of ``df`` when already computed (one hash a patient however many models
    score the chunk).
    """
    t = [float(x) for x in check_horizons(model.horizons if times is None else times, model.max_time)]
    columns = score_columns(model, t)
    num = {c: np.full(len(df), np.nan) for c in columns if not is_text(c)}
    text = {c: np.full(len(df), None, dtype=object) for c in columns if is_text(c)}
    text["patient_id"][:], text["pseudonym"][:] = identities(df, model.id_column) if who is None else who
    text["endpoint"][:], text["family"][:] = model.endpoint, model.family
    position = pd.Series(np.arange(len(df)), index=df.index)
    refused = landmark_refusals(model, df)
    if refused:
        at = position[list(refused)].to_numpy()
        text["status"][at], text["reason"][at] = "refused", list(refused.values())
    rest = df.drop(index=list(refused)) if refused else df
    data, bad = model.split_valid(rest) if len(rest) else (rest, {})
    extra = dict(earlier(rest)) if earlier is not None and len(rest) else {}
    problems = {row: [*extra.get(row, []), *bad.get(row, [])] for row in {*bad, *extra}}
    if extra:
        data = data.drop(index=[row for row in extra if row in data.index])
    errors = {row: problem_text(found) for row, found in problems.items()}
    if len(data):
        data, Z, unseen = model.encode(data)
        errors.update(unseen)
    if errors:
        at = position[list(errors)].to_numpy()
        text["status"][at], text["error"][at] = "error", list(errors.values())
    flags = np.full(len(df), "", dtype=object)
    if len(data):
        at = np.arange(len(df)) if data.index.equals(df.index) else position[data.index].to_numpy()
        _fill_scored(model, num, text, flags, at, data, Z, t, allow_extrapolation)
    table = {**num, **text, "row": df.index.to_numpy(copy=True), "flags": flags}
    return pd.DataFrame({c: table[c] for c in columns}, copy=False), problems  # its own fresh arrays: no copy


def _fill_scored(
    model: Any,
    num: dict[str, np.ndarray],
    text: dict[str, np.ndarray],
    flags: np.ndarray,
    at: np.ndarray,
    data: pd.DataFrame,
    Z: Any,
    t: list[float],
    allow_extrapolation: bool,
) -> None:
    """The scored rows (positions ``at``): predictions, status, risk group and flags."""
    keys = [f"{h:g}" for h in t]
    if model.competing:
        risk = np.asarray(model.estimator.predict_risk(Z), dtype=float)
        cif = cif_matrix(model.estimator, Z, t)
        curves = (cif[0], cif[1], 1.0 - cif[0] - cif[1])  # event, competing event, neither
        for name, values in zip(("cif", "cif_competing", "event_free"), curves, strict=True):
            for j, k in enumerate(keys):
                num[f"{name}_{k}"][at] = values[:, j]
        num["risk_horizon_months"][at] = risk_horizon(model.estimator)
        for key, words in model.event_labels.as_dict().items():
            text[f"label_{key}"][at] = words
    else:
        risk, surv = model.estimator.predict_risk_and_survival(Z, t)  # one pass for both
        for j, k in enumerate(keys):
            num[f"S_{k}"][at] = surv[:, j]
    num["risk_score"][at] = risk
    outside = outside_flags(model, data)
    is_out = data.index.isin(list(outside))
    status = np.full(len(at), "scored", dtype=object)
    status[is_out] = EXTRAPOLATED if allow_extrapolation else OUTSIDE
    text["status"][at] = status
    groups = risk_groups(model.risk_cutoffs, risk)
    groups[is_out & (not allow_extrapolation)] = None
    text["risk_group"][at] = groups
    text["time_origin"][at] = model.time_origin
    reasons = text["reason"]
    for i in np.flatnonzero(is_out & (not allow_extrapolation)).tolist():
        reasons[at[i]] = "no risk group: " + "; ".join(outside[data.index[i]])
    imputed = missing_flags(model, data, Z)
    unstable = model.horizon_flags(t)
    common = "; ".join(unstable)
    flags[at] = common
    flagged = list(set(outside) | set(imputed))
    for k, row in zip(at[data.index.get_indexer(pd.Index(flagged))].tolist(), flagged, strict=True):
        flags[k] = "; ".join([*outside.get(row, []), *imputed.get(row, []), *unstable])


def risk_groups(cutoffs: list[float], risk: np.ndarray) -> np.ndarray:
    """``RiskModel.risk_group`` of every score at once."""
    k = np.searchsorted(np.asarray(cutoffs, dtype=float), risk, side="right")
    if len(cutoffs) == 2:
        names = np.array(["low", "intermediate", "high"], dtype=object)
    else:
        names = np.array([f"group {i + 1} of {len(cutoffs) + 1}" for i in range(len(cutoffs) + 1)], dtype=object)
    return names[k]
