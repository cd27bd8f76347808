"""Model features of a declared cohort: each covariate as the experiment declares it.

Two steps, so that multiple imputation can sit between them:

* :class:`DeclaredInputs`: one column per numeric, binary or ordinal covariate (its value, on
  the log scale when its encoding is log; 0/1 or the level code; NaN where missing and declared
  ``indicator`` or ``impute``), and for a
  categorical covariate one 0/1 column per level seen in training other than the reference
  (every level of three or more with ``all_levels``, for the tree families) (plus
  ``<name>_missing`` under ``indicator`` when a training row lacks it);
* :class:`DeclaredEncoding`: each numeric covariate's encoding (linear; log, already taken; a restricted cubic
  spline with knots at Harrell's quantiles of the training values; a threshold flag), and under
  ``indicator`` a constant fill (the training median) with a ``<name>_missing`` flag (only when
  a training row lacks the value: an all-zero flag would be a constant column).

:class:`DeclaredFeatures` is both in one transformer, for models without imputation. All three
are plain scikit-learn estimators whose parameters are JSON data (the declaration as a dict), so
they clone, tune and save like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from riskmodel.cohort.declaration import SPLINE_KNOTS, CohortDeclaration, CovariateDeclaration
from riskmodel.errors import FeatureError, Problem
from riskmodel.stats.splines import restricted_cubic_spline

__all__ = ["DeclaredEncoding", "DeclaredFeatures", "DeclaredInputs", "declaration_of"]

_MAX_LISTED = 10


def declaration_of(value: CohortDeclaration | dict[str, Any]) -> CohortDeclaration:
    """The declaration from its dict form (as stored in an estimator's parameters)."""
    return value if isinstance(value, CohortDeclaration) else CohortDeclaration.model_validate(value, strict=False)


def _chosen(decl: CohortDeclaration, covariates: Sequence[str] | None) -> list[CovariateDeclaration]:
    if covariates is None:
        return list(decl.covariates)
    unknown = sorted(set(covariates) - {c.name for c in decl.covariates})
    if unknown:
        raise FeatureError(f"covariates {', '.join(unknown)} are not declared in the cohort")
    return [c for c in decl.covariates if c.name in set(covariates)]


class DeclaredInputs(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Declared covariates as numbers: values, 0/1, level codes, and one-hot categorical levels.

    Parameters
    ----------
    declaration
        The cohort declaration (:class:`~riskmodel.cohort.declaration.CohortDeclaration` as a dict).
    covariates
        The declared covariates to use (default: all of them), by name.
    all_levels
        A categorical of three or more levels gets a column for its reference level too (tree
        families; a linear predictor would have collinear columns).
    """

    def __init__(
        self,
        declaration: dict[str, Any] | None = None,
        covariates: Sequence[str] | None = None,
        all_levels: bool = False,
    ) -> None:
        self.declaration = declaration
        self.covariates = covariates
        self.all_levels = all_levels

    def fit(self, X: pd.DataFrame, y: Any = None) -> DeclaredInputs:
        """Learn the categorical levels seen in training. Returns ``self``."""
        if self.declaration is None:
            raise FeatureError("DeclaredInputs needs the cohort declaration")
        decl = declaration_of(self.declaration)
        chosen = _chosen(decl, self.covariates)
        self._check_frame(X, chosen)
        self.levels_: dict[str, list[str]] = {}
        self.reference_: dict[str, str] = {}
        self.flagged_: list[str] = []  # categorical indicator covariates missing in training
        # categorical covariates declared impute: one column of level codes (NaN where missing), so
        # the imputation can draw a level; DeclaredEncoding makes the one-hot columns afterwards
        self.coded_: list[str] = [c.name for c in chosen if c.kind == "categorical" and c.missing == "impute"]
        for c in chosen:
            if c.kind == "categorical":
                if c.missing == "indicator" and X[c.name].isna().any():
                    self.flagged_.append(c.name)
                counts = X[c.name].dropna().astype(str).value_counts()
                reference = _reference(c, counts)
                self.reference_[c.name] = reference
                keep = [lvl for lvl in c.code_levels if lvl in counts.index]
                # two levels are one column for a tree too: the second would repeat the first
                every = self.all_levels and len(keep) > 2
                self.levels_[c.name] = keep if every else [lvl for lvl in keep if lvl != reference]
        self.feature_names_in_ = np.asarray([c.name for c in chosen], dtype=object)
        self.n_features_in_ = len(chosen)
        self.feature_names_out_ = np.asarray(self._names(chosen), dtype=object)
        return self

    def _names(self, chosen: list[CovariateDeclaration]) -> list[str]:
        names: list[str] = []
        for c in chosen:
            if c.name in self.coded_:
                names.append(c.name)
            elif c.kind == "categorical":
                names += [f"{c.name}_{lvl}" for lvl in self.levels_[c.name]]
                if c.name in self.flagged_:
                    names.append(f"{c.name}_missing")
            else:
                names.append(c.name)
        return names

    def _check_frame(self, X: Any, chosen: list[CovariateDeclaration]) -> None:
        if not isinstance(X, pd.DataFrame):
            raise FeatureError("declared features need the declared cohort table (a pandas DataFrame)")
        missing = [c.name for c in chosen if c.name not in X.columns]
        if missing:
            raise FeatureError(f"the cohort lacks the declared covariates {', '.join(missing)}")

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The input matrix (float64; NaN where a value is missing and may be)."""
        check_is_fitted(self, "feature_names_out_")
        chosen = _chosen(declaration_of(self.declaration), self.covariates)  # type: ignore[arg-type]
        self._check_frame(X, chosen)
        parts: list[np.ndarray] = []
        for c in chosen:
            values = X[c.name]
            if c.kind == "categorical":
                text = values.astype(object)
                unseen = text.notna() & ~text.astype(str).isin(self._seen(c))
                if unseen.any():
                    _fail(X, c.name, unseen, f"was not seen in training (seen: {', '.join(self._seen(c))})")
                if c.missing == "refuse" or c.missing == "complete_case":
                    _refuse_missing(X, c.name, text.isna())
                if c.name in self.coded_:
                    codes = {lvl: float(i) for i, lvl in enumerate(c.code_levels)}
                    parts.append(pd.to_numeric(text.astype(str).map(codes).where(text.notna())).to_numpy(dtype=float))
                    continue
                parts += [(text == lvl).to_numpy(dtype=float) for lvl in self.levels_[c.name]]
                if c.name in self.flagged_:
                    parts.append(text.isna().to_numpy(dtype=float))
            else:
                number = pd.to_numeric(values, errors="coerce")
                if c.missing in ("refuse", "complete_case"):
                    _refuse_missing(X, c.name, number.isna())
                if c.encoding == "log":  # on the log scale from here on: imputation draws there too
                    number = np.log(number.where(number > 0))
                parts.append(number.to_numpy(dtype=float))
        return np.column_stack(parts) if parts else np.empty((len(X), 0))

    def input_columns(self) -> list[str]:
        """The cohort columns (declared covariate names) read."""
        check_is_fitted(self, "feature_names_out_")
        return [str(n) for n in self.feature_names_in_]

    def to_state(self) -> dict[str, Any]:
        """The fitted step as JSON data (for a model folder)."""
        check_is_fitted(self, "feature_names_out_")
        return {
            "kind": "declared_inputs",
            "params": self.get_params(),
            "levels": self.levels_,
            "reference": self.reference_,
            "flagged": self.flagged_,
            "coded": self.coded_,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DeclaredInputs:
        """The fitted step from :meth:`to_state`'s data."""
        step = cls(**state["params"])
        step.levels_ = {k: [str(v) for v in values] for k, values in state["levels"].items()}
        step.reference_ = {str(k): str(v) for k, v in state["reference"].items()}
        step.flagged_ = [str(n) for n in state["flagged"]]
        step.coded_ = [str(n) for n in state["coded"]]
        chosen = _chosen(declaration_of(step.declaration), step.covariates)  # type: ignore[arg-type]
        step.feature_names_in_ = np.asarray([c.name for c in chosen], dtype=object)
        step.n_features_in_ = len(chosen)
        step.feature_names_out_ = np.asarray(step._names(chosen), dtype=object)
        return step

    def _seen(self, c: CovariateDeclaration) -> list[str]:
        return list(dict.fromkeys([self.reference_[c.name], *self.levels_[c.name]]))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns, in order."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()


def _reference(c: CovariateDeclaration, counts: pd.Series) -> str:
    """The reference level: the declared one when the training rows have it, else the most common
    training level (ties: the first declared), so the one-hot columns never sum to one (a Cox
    model has no intercept to absorb them)."""
    if c.reference is not None and counts.get(c.reference, 0) > 0:
        return c.reference
    if counts.empty:
        return c.reference or c.code_levels[0]
    top = counts.max()
    return next(lvl for lvl in c.code_levels if counts.get(lvl, 0) == top)


def _coded_levels(c: CovariateDeclaration, observed: np.ndarray, all_levels: bool = False) -> list[int]:
    """The codes of a coded categorical covariate that get a one-hot column: those in the training
    rows but the reference (declared if present, else the most common; see :func:`_reference`);
    with ``all_levels`` and three or more levels seen, the reference too (as :class:`DeclaredInputs`)."""
    counts = pd.Series([c.code_levels[int(k)] for k in observed]).value_counts()
    keep = [k for k in range(len(c.code_levels)) if c.code_levels[k] in counts.index]
    if all_levels and len(keep) > 2:
        return keep
    reference = c.code_levels.index(_reference(c, counts))
    return [k for k in keep if k != reference]


def _refuse_missing(X: pd.DataFrame, name: str, missing: pd.Series) -> None:
    if missing.any():
        _fail(X, name, missing, "is missing, and its declared policy does not allow a missing value")


def _fail(X: pd.DataFrame, col: str, bad: pd.Series, rule: str) -> None:
    rows = list(X.index[bad.to_numpy()])
    lines = [str(Problem(rule, row=r, column=col, value=X.at[r, col])) for r in rows[:_MAX_LISTED]]
    if len(rows) > _MAX_LISTED:
        lines.append(f"... and {len(rows) - _MAX_LISTED} more rows in column {col}")
    raise FeatureError("\n".join(lines))


class DeclaredEncoding(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Each covariate's declared encoding, on the output of :class:`DeclaredInputs`.

    Learns, from the training rows: the spline knots (Harrell's quantiles), and under ``indicator``
    the fill value (the training median; an ordinal or binary covariate's median code). One-hot
    columns of categorical covariates pass through; a categorical covariate that arrives as level
    codes (declared impute) becomes one-hot here, against its reference (the declared one when the
    training rows have it, else the most common). (Only numeric covariates have non-linear
    encodings: the declaration refuses the others.)
    """

    def __init__(
        self,
        declaration: dict[str, Any] | None = None,
        input_names: Sequence[str] | None = None,
        allow_missing: bool = False,
        all_levels: bool = False,
    ) -> None:
        self.declaration = declaration
        self.input_names = input_names
        self.allow_missing = allow_missing
        self.all_levels = all_levels

    def fit(self, X: Any, y: Any = None) -> DeclaredEncoding:
        """Learn knots and fill values. Returns ``self``."""
        if self.declaration is None:
            raise FeatureError("DeclaredEncoding needs the cohort declaration")
        decl = declaration_of(self.declaration)
        names = self.input_names if self.input_names is not None else _column_names(X)
        self.input_names_ = [str(n) for n in names]
        Z = np.asarray(X, dtype=float)
        self.knots_: dict[str, list[float]] = {}
        self.fill_: dict[str, float] = {}
        self.flagged_: list[str] = []  # indicator covariates missing in training: they get a flag column
        self.categories_: dict[str, list[int]] = {}  # coded categorical: the codes given a column
        for j, name in enumerate(self.input_names_):
            c = _covariate_of(decl, name)
            if c is None:
                continue
            observed = Z[~np.isnan(Z[:, j]), j]
            if c.kind == "categorical":
                self.categories_[name] = _coded_levels(c, observed, self.all_levels)
                continue
            if c.missing == "indicator":
                self.fill_[name] = float(np.median(observed)) if observed.size else 0.0
                if observed.size < Z.shape[0]:
                    self.flagged_.append(name)
            if c.encoding == "spline":
                knots = np.unique(np.quantile(observed, SPLINE_KNOTS[c.knots])) if observed.size else np.empty(0)
                if knots.size < 3:
                    raise FeatureError(
                        f"{name}: a spline with {c.knots} knots needs at least 3 distinct values at the knot "
                        f"quantiles; the training data have {np.unique(observed).size} distinct values"
                    )
                self.knots_[name] = [float(k) for k in knots]
        self.n_features_in_ = Z.shape[1]
        self.feature_names_out_ = np.asarray(self._names(decl), dtype=object)
        return self

    def _names(self, decl: CohortDeclaration) -> list[str]:
        names: list[str] = []
        for name in self.input_names_:
            c = _covariate_of(decl, name)
            if c is None:
                names.append(name)
                continue
            if c.kind == "categorical":
                names += [f"{name}_{c.code_levels[k]}" for k in self.categories_[name]]
                continue
            if c.encoding == "log":
                names.append(f"log_{name}")
            elif c.encoding == "spline":
                names += [name, *(f"{name}_rcs{i}" for i in range(1, len(self.knots_[name]) - 1))]
            elif c.encoding == "threshold":
                names.append(f"{name}_ge_{c.threshold:g}")
            else:
                names.append(name)
            if name in self.flagged_:
                names.append(f"{name}_missing")
        return names

    def to_state(self) -> dict[str, Any]:
        """The fitted step as JSON data (for a model folder)."""
        check_is_fitted(self, "feature_names_out_")
        return {
            "kind": "declared_encoding",
            "params": self.get_params(),
            "input_names": self.input_names_,
            "knots": self.knots_,
            "fill": self.fill_,
            "flagged": self.flagged_,
            "categories": self.categories_,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DeclaredEncoding:
        """The fitted step from :meth:`to_state`'s data."""
        step = cls(**state["params"])
        step.input_names_ = [str(n) for n in state["input_names"]]
        step.knots_ = {k: [float(v) for v in values] for k, values in state["knots"].items()}
        step.fill_ = {k: float(v) for k, v in state["fill"].items()}
        step.flagged_ = [str(n) for n in state["flagged"]]
        step.categories_ = {str(k): [int(v) for v in codes] for k, codes in state["categories"].items()}
        step.n_features_in_ = len(step.input_names_)
        step.feature_names_out_ = np.asarray(step._names(declaration_of(step.declaration)), dtype=object)  # type: ignore[arg-type]
        return step

    def transform(self, X: Any) -> np.ndarray:
        """The encoded design matrix (float64)."""
        check_is_fitted(self, "feature_names_out_")
        decl = declaration_of(self.declaration)  # type: ignore[arg-type]
        Z = np.asarray(X, dtype=float)
        parts: list[np.ndarray] = []
        for j, name in enumerate(self.input_names_):
            x = Z[:, j]
            c = _covariate_of(decl, name)
            if c is None:
                parts.append(x)
                continue
            missing = np.isnan(x)
            if c.missing == "indicator":
                x = np.where(missing, self.fill_[name], x)
            elif missing.any() and not (self.allow_missing and c.missing == "impute"):
                raise FeatureError(
                    f"{name}: {int(missing.sum())} missing value(s) reached the model; declare missing: indicator "
                    "or impute (imputation runs before this step)"
                )
            if c.kind == "categorical":  # level codes: one-hot, NaN in every column where missing
                parts += [np.where(missing, np.nan, (x == k).astype(float)) for k in self.categories_[name]]
                continue
            if c.encoding == "spline":
                parts += list(restricted_cubic_spline(x, np.asarray(self.knots_[name])).T)
            elif c.encoding == "threshold":
                flag = (x >= float(c.threshold)).astype(float)  # type: ignore[arg-type]
                parts.append(np.where(np.isnan(x), np.nan, flag))  # NaN only where it stays missing
            else:
                parts.append(x)
            if name in self.flagged_:
                parts.append(missing.astype(float))
        return np.column_stack(parts) if parts else np.empty((len(Z), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns, in order."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()


def _column_names(X: Any) -> list[str]:
    if not isinstance(X, pd.DataFrame):
        raise FeatureError("DeclaredEncoding needs its input names, or a DataFrame of DeclaredInputs' output")
    return [str(c) for c in X.columns]


def _covariate_of(decl: CohortDeclaration, input_name: str) -> CovariateDeclaration | None:
    """The numeric, binary or ordinal covariate an input column is (None for one-hot columns)."""
    return next((c for c in decl.covariates if c.name == input_name), None)


class DeclaredFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """The declared covariates, each encoded as declared: :class:`DeclaredInputs` then
    :class:`DeclaredEncoding`, in one transformer (models without imputation).

    Parameters
    ----------
    declaration
        The cohort declaration as a dict.
    covariates
        The declared covariates to use (default: all), by name.
    allow_missing
        NaN passes through (families that handle missing values).
    all_levels
        A column for every categorical level, the reference too (:class:`DeclaredInputs`).
    """

    def __init__(
        self,
        declaration: dict[str, Any] | None = None,
        covariates: Sequence[str] | None = None,
        allow_missing: bool = False,
        all_levels: bool = False,
    ) -> None:
        self.declaration = declaration
        self.covariates = covariates
        self.allow_missing = allow_missing
        self.all_levels = all_levels

    def fit(self, X: pd.DataFrame, y: Any = None) -> DeclaredFeatures:
        """Fit both steps. Returns ``self``."""
        self.inputs_ = DeclaredInputs(self.declaration, self.covariates, self.all_levels).fit(X)
        names = [str(n) for n in self.inputs_.get_feature_names_out()]
        encoding = DeclaredEncoding(self.declaration, names, self.allow_missing, self.all_levels)
        self.encoding_ = encoding.fit(self.inputs_.transform(X))
        self.feature_names_in_ = self.inputs_.feature_names_in_
        self.n_features_in_ = self.inputs_.n_features_in_
        self.feature_names_out_ = self.encoding_.get_feature_names_out()
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """The encoded design matrix."""
        check_is_fitted(self, "encoding_")
        return np.asarray(self.encoding_.transform(self.inputs_.transform(X)))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns, in order."""
        check_is_fitted(self, "feature_names_out_")
        return np.asarray(self.feature_names_out_).copy()

    def input_columns(self) -> list[str]:
        """The cohort columns (declared covariate names) read."""
        check_is_fitted(self, "inputs_")
        return [str(n) for n in self.inputs_.feature_names_in_]

    def to_state(self) -> dict[str, Any]:
        """The fitted transformer as JSON data (for a model folder)."""
        check_is_fitted(self, "encoding_")
        return {"kind": "declared", "inputs": self.inputs_.to_state(), "encoding": self.encoding_.to_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DeclaredFeatures:
        """The fitted transformer from :meth:`to_state`'s data."""
        inputs = DeclaredInputs.from_state(state["inputs"])
        encoding = DeclaredEncoding.from_state(state["encoding"])
        features = cls(inputs.declaration, inputs.covariates, encoding.allow_missing, inputs.all_levels)
        features.inputs_ = inputs
        features.encoding_ = encoding
        features.feature_names_in_ = inputs.feature_names_in_
        features.n_features_in_ = inputs.n_features_in_
        features.feature_names_out_ = features.encoding_.get_feature_names_out()
        return features
