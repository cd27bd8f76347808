"""Model features from a validated cohort, as a scikit-learn transformer.

:class:`ClinicalFeatures` is a plain estimator: its constructor stores parameters, ``fit`` checks
them and learns category levels, so ``clone``, ``Pipeline``, cross-validation and tuning work
unchanged. Features are chosen by *blocks* (``"d90"``, ``"stage"``...) or by a named set.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from riskmodel.cohort.contract import M_STAGES, N_STAGES, T_STAGES, column
from riskmodel.cohort.derive import bed_fractionated, bed_permanent_implant, eqd2
from riskmodel.cohort.endpoints import check_guarantee_time
from riskmodel.cohort.validate import normalise_category
from riskmodel.errors import FeatureError, Problem, RiskModelWarning, UserInputError

__all__ = ["FEATURE_BLOCKS", "FEATURE_SETS", "ClinicalFeatures", "resolve_blocks"]

# block -> the cohort columns it reads
FEATURE_BLOCKS: dict[str, tuple[str, ...]] = {
    "d90": ("d90_gy",),
    "d90_high": ("d90_gy",),
    "response": ("response_3mo",),
    "interval": ("recurrence_interval_months",),
    "stage": ("t_stage", "n_stage", "m_stage"),
    "volume": ("lesion_volume_cm3",),
    "log_volume": ("lesion_volume_cm3",),
    "age": ("age_years",),
    "kps": ("kps",),
    "grade": ("pathological_grade",),
    "prior_dose": ("prior_ebrt_dose_gy",),
    "activity": ("seed_activity_mci",),
    "chemo": ("post_implant_chemo",),
    "bed": ("d90_gy", "prior_ebrt_dose_gy", "prior_ebrt_fractions"),
    "eqd2": ("d90_gy", "prior_ebrt_dose_gy", "prior_ebrt_fractions"),
}
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    # the factors the study found: dose, response, interval, stage, volume
    "study": ("d90", "response", "interval", "stage", "log_volume"),
    # the planning model: nothing measured after the implant plan
    "preimplant": ("d90", "interval", "stage", "log_volume"),
    # the paper's multivariable model: D90 >= 110 Gy and CR+PR
    "published": ("d90_high", "response"),
    "full": (
        "d90",
        "response",
        "interval",
        "stage",
        "log_volume",
        "age",
        "kps",
        "grade",
        "prior_dose",
        "activity",
        "chemo",
    ),
}
_ORDINAL_STAGE = {
    "t_stage": {"T0": 0, "Tis": 0, "T1": 1, "T1a": 1, "T1b": 1, "T2": 2, "T3": 3, "T4": 4, "T4a": 4, "T4b": 4},
    "n_stage": {n: i for i, n in enumerate(N_STAGES)},
    "m_stage": {m: i for i, m in enumerate(M_STAGES)},
}
_ORDINAL_RESPONSE = {"PD": 0, "SD": 1, "PR": 2, "CR": 3}
_STAGE_LEVELS = {"t_stage": T_STAGES, "n_stage": N_STAGES, "m_stage": M_STAGES}
_MAX_LISTED = 10


def resolve_blocks(feature_set: str | Sequence[str]) -> tuple[str, ...]:
    """Expand a named set, or check a list of block names.

    >>> resolve_blocks("published")
    ('d90_high', 'response')
    >>> resolve_blocks(["d90", "kps"])
    ('d90', 'kps')
    """
    if isinstance(feature_set, str):
        if feature_set in FEATURE_SETS:
            return FEATURE_SETS[feature_set]
        if feature_set not in FEATURE_BLOCKS:
            raise UserInputError(
                f"unknown feature set {feature_set!r}; named sets: {', '.join(FEATURE_SETS)}; "
                f"or give a list of blocks from: {', '.join(FEATURE_BLOCKS)}"
            )
        return (feature_set,)
    blocks = tuple(feature_set)
    unknown = [b for b in blocks if b not in FEATURE_BLOCKS]
    if unknown or not blocks or len(set(blocks)) != len(blocks):
        raise UserInputError(
            f"feature blocks must be distinct names from: {', '.join(FEATURE_BLOCKS)} "
            f"(unknown: {', '.join(unknown) or 'none'})"
        )
    return blocks


class ClinicalFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Turn canonical cohort columns into numeric model features.

    Parameters
    ----------
    feature_set
        A named set from ``FEATURE_SETS`` (``"study"``, ``"preimplant"``, ``"published"``,
        ``"full"``) or a list of blocks from ``FEATURE_BLOCKS``.
    response_coding
        ``"binary"``: 1 for CR+PR, 0 for SD+PD (the study's grouping). ``"ordinal"``: PD 0, SD 1,
        PR 2, CR 3.
    stage_coding
        ``"ordinal"``: T 0-4, N 0-3, M 0/1. ``"onehot"``: one column per level seen at fit, with
        the lowest level as reference.
    d90_threshold_gy
        Threshold of the ``d90_high`` flag (the study's 110 Gy).
    alpha_beta
        α/β in Gy for the ``bed`` and ``eqd2`` blocks.
    landmark_months
        The landmark the data were built with. Response needs at least 3 months; see
        :func:`riskmodel.cohort.endpoints.check_guarantee_time`.
    """

    def __init__(
        self,
        feature_set: str | Sequence[str] = "study",
        *,
        response_coding: Literal["binary", "ordinal"] = "binary",
        stage_coding: Literal["ordinal", "onehot"] = "ordinal",
        d90_threshold_gy: float = 110.0,
        alpha_beta: float = 10.0,
        landmark_months: float | None = None,
    ) -> None:
        self.feature_set = feature_set
        self.response_coding = response_coding
        self.stage_coding = stage_coding
        self.d90_threshold_gy = d90_threshold_gy
        self.alpha_beta = alpha_beta
        self.landmark_months = landmark_months

    # ------------------------------------------------------------------ sklearn API
    def fit(self, X: pd.DataFrame, y: Any = None) -> ClinicalFeatures:
        """Check parameters and input columns; learn stage levels. Returns ``self``."""
        blocks = resolve_blocks(self.feature_set)
        if self.response_coding not in ("binary", "ordinal"):
            raise UserInputError(f"response_coding must be 'binary' or 'ordinal', got {self.response_coding!r}")
        if self.stage_coding not in ("ordinal", "onehot"):
            raise UserInputError(f"stage_coding must be 'ordinal' or 'onehot', got {self.stage_coding!r}")
        for name in ("d90_threshold_gy", "alpha_beta"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UserInputError(f"{name} must be a positive number, got {value!r}")
        used = self.input_columns(blocks)
        check_guarantee_time(used, self.landmark_months)
        self._check_frame(X, used)
        self.blocks_ = blocks
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(X.columns)
        self.stage_levels_: dict[str, list[str]] = {}
        if "stage" in blocks:
            for col in _STAGE_LEVELS:
                seen = set(self._categories(X, col))
                self.stage_levels_[col] = [lvl for lvl in _STAGE_LEVELS[col] if lvl in seen]
        self.feature_names_out_ = np.asarray(self._names(), dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Return the feature matrix (float64), one row per patient."""
        check_is_fitted(self, "feature_names_out_")
        used = self.input_columns()
        self._check_frame(X, used)
        parts: list[np.ndarray] = []
        for block in self.blocks_:
            parts.extend(self._block(block, X))
        return np.column_stack(parts).astype(float, copy=False) if parts else np.empty((len(X), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns, in order."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()

    # ------------------------------------------------------------------ internals
    def input_columns(self, blocks: Sequence[str] | None = None) -> list[str]:
        """The cohort columns read by ``blocks`` (default: the fitted ones), sorted."""
        chosen = self.blocks_ if blocks is None else blocks
        return sorted({c for b in chosen for c in FEATURE_BLOCKS[b]})

    def _check_frame(self, X: Any, used: Sequence[str]) -> None:
        if not isinstance(X, pd.DataFrame):
            raise FeatureError(
                "ClinicalFeatures needs a pandas DataFrame with canonical cohort columns "
                "(for example riskmodel.cohort.load(...).data)"
            )
        missing = [c for c in used if c not in X.columns]
        if missing:
            hint = (
                "; without response, use the planning features (experiments/preimplant.yaml)"
                if ("response_3mo" in missing)
                else ""
            )
            raise FeatureError(
                f"the cohort lacks the columns {', '.join(missing)} needed by feature blocks "
                f"{', '.join(self._blocks_reading(missing))}{hint}"
            )

    def _blocks_reading(self, cols: Sequence[str]) -> list[str]:
        return [b for b in resolve_blocks(self.feature_set) if set(FEATURE_BLOCKS[b]) & set(cols)]

    def _ab(self) -> str:
        return f"ab{self.alpha_beta:g}"

    def _names(self) -> list[str]:
        names: list[str] = []
        for block in self.blocks_:
            if block == "stage":
                if self.stage_coding == "ordinal":
                    names += ["t_stage_ordinal", "n_stage_ordinal", "m1"]
                else:
                    for col, levels in self.stage_levels_.items():
                        names += [f"{col}_{lvl}" for lvl in levels[1:]]
            elif block == "response":
                names.append("response_cr_pr" if self.response_coding == "binary" else "response_ordinal")
            elif block in ("bed", "eqd2"):
                names += [f"{block}_{part}_gy_{self._ab()}" for part in ("implant", "ebrt", "cumulative")]
            else:
                names.append(
                    {
                        "d90": "d90_gy",
                        "d90_high": f"d90_ge_{self.d90_threshold_gy:g}gy",
                        "interval": "recurrence_interval_months",
                        "volume": "lesion_volume_cm3",
                        "log_volume": "log_lesion_volume_cm3",
                        "age": "age_years",
                        "kps": "kps",
                        "grade": "grade_moderate_or_high",
                        "prior_dose": "prior_ebrt_dose_gy",
                        "activity": "seed_activity_mci",
                        "chemo": "post_implant_chemo",
                    }[block]
                )
        return names

    def _number(self, X: pd.DataFrame, col: str) -> np.ndarray:
        column = X[col]
        if column.dtype.kind in "fiu":  # numbers already (a validated cohort's): no conversion to make
            numbers = column.to_numpy(dtype=float)
            if not np.isnan(numbers).any():
                return numbers
        values = pd.to_numeric(column, errors="coerce")
        bad = values.isna()
        if bad.any():
            self._fail(X, col, bad, "needs a number here (missing or not numeric); features are never imputed silently")
        return values.to_numpy(dtype=float)

    def _categories(self, X: pd.DataFrame, col: str) -> pd.Series:
        codes, levels = self._category_codes(X, col)
        return pd.Series(levels[codes], index=X.index, name=col, dtype=object)

    def _by_level(self, X: pd.DataFrame, col: str, value: Callable[[Any], float]) -> np.ndarray:
        """``value`` of each row's canonical level of ``col`` as a float, decided once per level
        and taken by code (no column of level names built)."""
        codes, levels = self._category_codes(X, col)
        by_level = np.array([value(v) for v in levels], dtype=float)
        return np.asarray(by_level[codes], dtype=float)

    def _category_codes(self, X: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
        """Each row's code into the column's canonical levels (normalised once per distinct
        spelling); raises on a missing or unknown value."""
        spec = column(col)
        values = X[col]
        uniques: Any
        if isinstance(values.dtype, pd.CategoricalDtype):  # a loaded cohort's: its codes are the codes
            codes, uniques = values.cat.codes.to_numpy(dtype=np.intp), list(values.cat.categories)
        else:
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
        levels = np.array([normalise_category(spec, v) for v in uniques] + [None], dtype=object)
        bad = np.array([v is None for v in levels])[codes]  # code -1 (missing): last
        if bad.any():
            assert spec.allowed is not None
            self._fail(X, col, pd.Series(bad, index=X.index), f"must be one of {', '.join(spec.allowed)}")
        return codes, levels

    def _fail(self, X: pd.DataFrame, col: str, bad: pd.Series, rule: str) -> None:
        rows = list(X.index[bad.to_numpy()])
        lines = [str(Problem(rule, row=r, column=col, value=X.at[r, col])) for r in rows[:_MAX_LISTED]]
        if len(rows) > _MAX_LISTED:
            lines.append(f"... and {len(rows) - _MAX_LISTED} more rows in column {col}")
        raise FeatureError("\n".join(lines))

    def _block(self, block: str, X: pd.DataFrame) -> list[np.ndarray]:
        if block == "d90":
            return [self._number(X, "d90_gy")]
        if block == "d90_high":
            return [(self._number(X, "d90_gy") >= self.d90_threshold_gy).astype(float)]
        if block == "response":
            if self.response_coding == "binary":
                return [self._by_level(X, "response_3mo", lambda v: v in ("CR", "PR"))]
            return [self._by_level(X, "response_3mo", lambda v: _ORDINAL_RESPONSE.get(v, np.nan))]
        if block == "stage":
            return self._stage(X)
        if block in ("volume", "log_volume"):
            vol = self._number(X, "lesion_volume_cm3")
            return [vol if block == "volume" else np.log(vol)]
        if block == "grade":
            return [self._by_level(X, "pathological_grade", lambda v: v in ("moderate", "high"))]
        if block == "chemo":
            return [self._yes_no(X, "post_implant_chemo")]
        if block in ("bed", "eqd2"):
            implant = bed_permanent_implant(self._number(X, "d90_gy"), self.alpha_beta)
            ebrt = bed_fractionated(
                self._number(X, "prior_ebrt_dose_gy"), self._number(X, "prior_ebrt_fractions"), self.alpha_beta
            )
            parts = [implant, ebrt, implant + ebrt]
            return parts if block == "bed" else [eqd2(p, self.alpha_beta) for p in parts]
        col = FEATURE_BLOCKS[block][0]
        return [self._number(X, col)]

    def _yes_no(self, X: pd.DataFrame, col: str) -> np.ndarray:
        s = X[col]
        mapped = s.map({True: 1.0, False: 0.0})
        bad = mapped.isna()
        if bad.any():
            self._fail(X, col, bad, "must be yes/no (true/false) here; features are never imputed silently")
        return mapped.to_numpy(dtype=float)

    def _stage(self, X: pd.DataFrame) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for col, levels in self.stage_levels_.items():
            at, canon = self._category_codes(X, col)  # each distinct level decided once, rows by code
            if self.stage_coding == "onehot":
                unseen = pd.Series(np.array([v not in levels for v in canon])[at], index=X.index)
                if unseen.any():
                    self._fail(
                        X,
                        col,
                        unseen,
                        f"was not seen when the features were fitted "
                        f"(seen: {', '.join(levels)}); one-hot coding cannot represent it",
                    )
                out += [np.array([v == lvl for v in canon], dtype=float)[at] for lvl in levels[1:]]
            else:
                codes = np.array([_ORDINAL_STAGE[col].get(v, np.nan) for v in canon], dtype=float)[at]
                seen_codes = [_ORDINAL_STAGE[col][lvl] for lvl in levels]
                outside = (codes < min(seen_codes)) | (codes > max(seen_codes))
                if outside.any():
                    warnings.warn(
                        f"{int(outside.sum())} patients have a {col} outside the levels seen at fit "
                        f"({', '.join(levels)}); the model extrapolates for them",
                        RiskModelWarning,
                        stacklevel=3,
                    )
                out.append(codes)
        return out
