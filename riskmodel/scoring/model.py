"""A trained model as users meet it: risk, risk group, S(t) and flags per patient; for a
competing-risk model, both CIFs and the event-free probability (:mod:`riskmodel.scoring.competing`).

Patients are validated with the cohort contract (outcomes not required); a bad row is reported by
row and does not stop the other patients from being scored. A model is saved as a pickle-free
folder (:mod:`riskmodel.scoring.files`); :func:`riskmodel.tracking.load_model` also reads one
from the MLflow store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.cohort import from_frame
from riskmodel.cohort.contract import column
from riskmodel.cohort.declaration import CohortDeclaration
from riskmodel.cohort.declared import from_frame_declared
from riskmodel.errors import (
    CohortValidationError,
    FeatureError,
    ModelFileError,
    Problem,
    RiskModelError,
    UserInputError,
)
from riskmodel.explain import explain, what_if
from riskmodel.features import ClinicalFeatures
from riskmodel.features.safe_harbor import cap_age, is_age, read_ranges, shared_range, shown_value, stored_bound
from riskmodel.features.summaries import input_summaries
from riskmodel.models import SurvivalEstimator
from riskmodel.models.base import check_horizons
from riskmodel.models.cif import is_competing_model
from riskmodel.scoring.competing import CompetingLabels, competing_curves, competing_frame, event_labels
from riskmodel.scoring.development import development_note, development_record
from riskmodel.scoring.files import read_model_dir, write_model_dir
from riskmodel.scoring.flags import EXTRAPOLATED, OUTSIDE, missing_flags, outside_flags
from riskmodel.scoring.frame import identities, problem_text, risk_groups
from riskmodel.scoring.landmark import landmark_refusals
from riskmodel.stats.samplesize import SampleSize

__all__ = ["RISK_GROUPS_3", "RiskModel"]

RISK_GROUPS_3 = ("low", "intermediate", "high")


@dataclass
class RiskModel:
    """A fitted feature pipeline and survival model for one endpoint, with what scoring needs."""

    endpoint: str
    family: str
    experiment: str
    landmark_months: float
    horizons: list[float]
    features: ClinicalFeatures
    estimator: SurvivalEstimator
    # per numeric input, the 5th smallest and 5th largest training value, ages capped at 90 ("90+");
    # an input trained on fewer than 10 values has none (see riskmodel.features.safe_harbor)
    numeric_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    risk_cutoffs: list[float] = field(default_factory=list)
    # Cox only: HR, 95% CI and Wald p of the *unpenalised* fit on the same design (the classical table)
    hazard_ratios: pd.DataFrame | None = None
    # the training mean of each model feature: the reference patient of interventional explanations
    feature_means: list[float] = field(default_factory=list)
    # the time up to which at least min_at_risk training patients were followed; a prediction beyond
    # it is flagged (None for a model saved before riskmodel recorded it)
    reliable_until: float | None = None
    min_at_risk: int | None = None
    # the cohort declaration the model was trained on (None: the built-in brachytherapy contract)
    declaration: CohortDeclaration | None = None
    # per input, aggregates of the training values (mean and SD, or level shares) for case-mix checks;
    # empty for a model saved before riskmodel kept them (see riskmodel.features.summaries)
    input_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    # an updated model's parent, method and data digest (riskmodel update); None for a trained one
    lineage: dict[str, Any] | None = None
    # the development cohort's size and Riley et al.'s verdict: {n_patients, n_events, minimum_n,
    # exploratory}; None for a model saved before riskmodel kept it (see development_note)
    development: dict[str, Any] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_training(
        cls,
        *,
        endpoint: str,
        family: str,
        experiment: str,
        landmark_months: float,
        horizons: Sequence[float],
        features: Any,
        estimator: SurvivalEstimator,
        X: pd.DataFrame,
        risk_cutoffs: Sequence[float] | None = None,
        reliable_until: float | None = None,
        min_at_risk: int | None = None,
        declaration: CohortDeclaration | None = None,
        size: SampleSize | None = None,
    ) -> RiskModel:
        """Record the training ranges and risk cut-offs (tertiles unless given) of fitted parts, and
        with ``size`` (Riley et al.'s assessment of the development cohort) whether it is exploratory.

        A range is the 5th smallest to the 5th largest value, an age capped at 90+
        (:func:`riskmodel.features.safe_harbor.shared_range`): never one patient's exact value.
        """
        used = features.input_columns()
        ranges, cats = {}, {}
        for name in used:
            kind = _kind(declaration, name)
            if kind == "numeric":
                shared = shared_range(X[name], age=is_age(name, declaration))
                if shared is not None:
                    ranges[name] = shared
            elif kind == "categorical":
                cats[name] = sorted(str(v) for v in pd.unique(X[name].dropna()))
        design = features.transform(X)
        risk = estimator.predict_risk(design)
        cutoffs = (
            list(risk_cutoffs) if risk_cutoffs is not None else [float(q) for q in np.quantile(risk, [1 / 3, 2 / 3])]
        )
        return cls(
            endpoint,
            family,
            experiment,
            float(landmark_months),
            [float(h) for h in horizons],
            features,
            estimator,
            ranges,
            cats,
            cutoffs,
            feature_means=[float(v) for v in np.nanmean(np.asarray(design, dtype=float), axis=0)],
            reliable_until=reliable_until,
            min_at_risk=min_at_risk,
            declaration=declaration,
            input_summaries=input_summaries(X, used, lambda n: _kind(declaration, n), lambda n: is_age(n, declaration)),
            development=None if size is None else development_record(size),
        )

    @property
    def exploratory(self) -> bool:
        """Below Riley et al.'s minimum sample size, or of unknown development size (an older file)."""
        return self.development is None or bool(self.development["exploratory"])

    def development_note(self) -> str:
        """How far the predictions can be trusted, from the development cohort (:func:`development_note`)."""
        return development_note(self.development)

    @property
    def id_column(self) -> str:
        """The patient-identifier column of the files this model scores."""
        return self.declaration.id if self.declaration is not None else "patient_id"

    def unstable_horizons(self, times: Iterable[float]) -> list[float]:
        """The ``times`` beyond which fewer than ``min_at_risk`` training patients were followed."""
        if self.reliable_until is None:
            return []
        return [float(t) for t in times if t > self.reliable_until]

    def horizon_flags(self, times: Iterable[float]) -> list[str]:
        """One flag per unstable horizon, for every scored patient."""
        what = "CIF" if self.competing else "S"
        return [
            f"{what}({t:g}): fewer than {self.min_at_risk} training patients were followed to {t:g} months "
            f"(to {self.reliable_until:.3g} months at most); this prediction is unstable"
            for t in self.unstable_horizons(times)
        ]

    @property
    def time_origin(self) -> str:
        """What time zero is for this model's horizons."""
        origin = self.declaration.time_origin if self.declaration is not None else "implant"
        return f"{self.landmark_months:g}-month landmark (after {origin})" if self.landmark_months else origin

    @property
    def competing(self) -> bool:
        """Whether this is a competing-risk model (CIFs of the event and the competing event)."""
        return is_competing_model(self.estimator)

    @property
    def event_labels(self) -> CompetingLabels:
        """A competing model's events in words (e.g. local failure; death without local failure)."""
        return event_labels(self.endpoint, self.declaration)

    @property
    def max_time(self) -> float:
        """The longest follow-up seen in training (months after time zero)."""
        return float(self.estimator.max_time_)

    # ------------------------------------------------------------------ prediction
    @property
    def input_columns(self) -> list[str]:
        """The cohort columns this model reads (the only ones scoring requires, with patient_id)."""
        return list(self.features.input_columns())

    def validate_patients(self, df: pd.DataFrame, *, with_id: bool = False) -> pd.DataFrame:
        """``df`` checked against the cohort contract for the columns this model reads (raises)."""
        if self.declaration is not None:
            return from_frame_declared(
                df,
                self.declaration,
                source="patients",
                require_outcomes=False,
                covariates=self.input_columns,
                require_id=with_id,
            ).data
        required = [*self.input_columns, *(["patient_id"] if with_id else [])]
        return from_frame(df, source="patients", require_outcomes=False, required=required).data

    def predict_risk(self, df: pd.DataFrame) -> np.ndarray:
        """Risk scores (higher = worse) for validated patients; raises on any invalid row."""
        return self.estimator.predict_risk(self.features.transform(self.validate_patients(df)))

    def predict_survival(self, df: pd.DataFrame, times: Iterable[float] | None = None) -> pd.DataFrame:
        """S(t) at ``times`` (default: the model's horizons), months after :attr:`time_origin`."""
        data = self.validate_patients(df)
        return self.estimator.predict_survival(self.features.transform(data), self.horizons if times is None else times)

    def predict_frame(self, df: pd.DataFrame, times: Iterable[float] | None = None) -> pd.DataFrame:
        """``risk_score`` and ``S_<h>`` columns, one row per patient (the MLflow pyfunc output).

        A competing model: ``risk_score`` (CIF of the event at its risk horizon), ``cif_<h>``,
        ``cif_competing_<h>`` and ``event_free_<h>`` (:func:`riskmodel.scoring.competing.competing_frame`).
        """
        data = self.validate_patients(df)
        Z = self.features.transform(data)
        if self.competing:
            at = [float(v) for v in check_horizons(self.horizons if times is None else times, self.max_time)]
            return competing_frame(self.estimator, Z, at)
        surv = self.estimator.predict_survival(Z, self.horizons if times is None else times)
        out = pd.DataFrame({"risk_score": self.estimator.predict_risk(Z)}, index=data.index)
        for t in surv.columns:
            out[f"S_{t:g}"] = surv[t].to_numpy()
        return out.reset_index(drop=True)

    def explain(self, df: pd.DataFrame, *, output: Any = "risk", background: pd.DataFrame | None = None) -> Any:
        """SHAP values of these patients (a ``shap.Explanation``); see :func:`riskmodel.explain.explain`."""
        return explain(self, df, output=output, background=background)

    def what_if(
        self,
        df: pd.DataFrame,
        feature: str = "d90_gy",
        values: Iterable[float] | None = None,
        times: Iterable[float] | None = None,
    ) -> pd.DataFrame:
        """Predictions as one input sweeps ``values`` (default: 21 values over its stored training
        range), all else fixed; values outside that range are marked ``extrapolated``, and a Cox
        model's sweep carries a 95% band. A model association, not a causal dose-response. See
        :func:`riskmodel.explain.what_if`.
        """
        if values is None:
            if feature not in self.numeric_ranges:
                raise UserInputError(f"what-if: no training range is stored for {feature!r}; give the values")
            values = np.linspace(*self.numeric_ranges[feature], 21)
        return what_if(self, df, feature, list(values), None if times is None else list(times))

    def risk_group(self, risk: float) -> str:
        """The risk group of a score, from the training cut-offs."""
        k = int(np.searchsorted(self.risk_cutoffs, risk, side="right"))
        return RISK_GROUPS_3[k] if len(self.risk_cutoffs) == 2 else f"group {k + 1} of {len(self.risk_cutoffs) + 1}"

    def score(
        self, df: pd.DataFrame, times: Iterable[float] | None = None, *, allow_extrapolation: bool = False
    ) -> list[dict[str, Any]]:
        """One record per patient, with its ``status``:

        * ``scored``: risk, risk group, S(t) and flags; a competing model gives ``cif``,
          ``cif_competing`` and ``event_free`` (by horizon) in place of ``survival``, its
          ``risk_horizon_months`` (the risk score is the CIF of the event there) and the ``events`` in words;
        * ``outside the development data`` (an input beyond the training range, or a category unseen
          in training): risk and S(t), marked, and **no risk group** unless ``allow_extrapolation``
          (then the group is given and the status reads ``extrapolated: ...``);
        * ``refused``: not at risk after the landmark (:func:`riskmodel.scoring.landmark.landmark_refusals`),
          with the ``reason``; no probabilities, no risk group;
        * ``error``: a row that cannot be read, with the ``error``.

        A horizon with fewer than ``min_at_risk`` training patients followed is flagged on every
        prediction.
        """
        t = [float(x) for x in check_horizons(self.horizons if times is None else times, self.max_time)]
        records: dict[Any, dict[str, Any]] = {}
        who = self._identities(df)
        refused = landmark_refusals(self, df)
        for row, reason in refused.items():
            records[row] = {**who[row], "status": "refused", "reason": reason, "risk_group": None}
        rest = df.drop(index=list(refused))
        data, bad = self.split_valid(rest) if len(rest) else (rest, {})  # every row refused: nothing to read
        for row, problems in bad.items():
            records[row] = self._error_record(who[row], problem_text(problems))
        if len(data):
            data, Z, unseen = self.encode(data)
            for row, message in unseen.items():
                records[row] = self._error_record(who[row], message)
        if len(data):
            risk = self.estimator.predict_risk(Z)
            curves = self._curves(Z, t)
            outside = outside_flags(self, data)
            imputed = missing_flags(self, data, Z)
            unstable = self.horizon_flags(t)
            groups = risk_groups(self.risk_cutoffs, np.asarray(risk, dtype=float))
            for i, row in enumerate(data.index):
                status = "scored" if row not in outside else (EXTRAPOLATED if allow_extrapolation else OUTSIDE)
                group = groups[i] if status != OUTSIDE else None
                records[row] = {
                    **who[row],
                    "status": status,
                    **({"reason": "no risk group: " + "; ".join(outside[row])} if status == OUTSIDE else {}),
                    "time_origin": self.time_origin,
                    "risk_score": float(risk[i]),
                    "risk_group": group,
                    **curves[i],
                    "flags": [*outside.get(row, []), *imputed.get(row, []), *unstable],
                }
        return [records[row] for row in sorted(records, key=_sort_key)]

    # ------------------------------------------------------------------ helpers
    def _curves(self, Z: np.ndarray, t: list[float]) -> list[dict[str, Any]]:
        """Each patient's probabilities at ``t``: ``survival``, or a competing model's CIFs."""
        if self.competing:
            return competing_curves(self.estimator, Z, t, self.event_labels)
        surv = self.estimator.predict_survival(Z, t).to_numpy()
        return [{"survival": {f"{h:g}": float(s) for h, s in zip(t, row, strict=True)}} for row in surv]

    def split_valid(self, df: pd.DataFrame) -> tuple[pd.DataFrame, dict[Any, list[Problem]]]:
        """The valid patients (validated), and each invalid row's problems by row."""
        try:
            return self.validate_patients(df, with_id=True), {}
        except CohortValidationError as exc:
            rowless = [p for p in exc.problems if p.row is None]
            if rowless:
                raise UserInputError("cannot score any patient:\n" + "\n".join(map(str, rowless))) from None
            bad: dict[Any, list[Problem]] = {}
            for p in exc.problems:
                bad.setdefault(p.row, []).append(p)
            good = df.loc[[r for r in df.index if r not in bad]]
            if len(good) == 0:
                return good.iloc[:0], bad
            return self.validate_patients(good, with_id=True), bad

    def encode(self, data: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, dict[Any, str]]:
        """The feature matrix in one pass; rows the fitted features cannot encode (a one-hot level
        unseen in training) are isolated one by one only when that pass fails."""
        try:
            return data, self.features.transform(data), {}
        except FeatureError:
            pass
        unseen: dict[Any, str] = {}
        for row in data.index:
            try:
                self.features.transform(data.loc[[row]])
            except FeatureError as exc:
                unseen[row] = str(exc).split(": ", 1)[-1]
        kept = data.drop(index=list(unseen))
        Z = self.features.transform(kept) if len(kept) else np.empty((0, len(self.features.get_feature_names_out())))
        return kept, Z, unseen

    def is_age(self, name: str) -> bool:
        """Whether input ``name`` is an age, shared as 90+ above 89 (HIPAA Safe Harbor)."""
        return is_age(name, self.declaration)

    def range_position(self, name: str, value: float) -> str:
        """ "below", "above" or "" for ``value`` against the stored range of input ``name``.

        An age is capped at 90 before the comparison, as its range was: a patient aged 95 is
        inside a range that ends at 90+, and above one that ends at 85.
        """
        if name not in self.numeric_ranges or value != value:
            return ""
        lo, hi = self.numeric_ranges[name]
        v = cap_age(value) if self.is_age(name) else value
        return "below" if v < lo else ("above" if v > hi else "")

    def shown_range(self, name: str) -> str:
        """The stored range of input ``name`` as a page shows it ("40-90+")."""
        lo, hi = self.numeric_ranges[name]
        age = self.is_age(name)
        return f"{shown_value(lo, age=age)}-{shown_value(hi, age=age)}"

    def _identities(self, df: pd.DataFrame) -> dict[Any, dict[str, Any]]:
        """Per row: the patient's own ID (the score output is the user's local file), its pseudonym (the
        only identifier on a patient page, so pages can be joined back), the row, endpoint and family.
        The pseudonyms are computed together (the salt read once)."""
        ids, names = identities(df, self.id_column)
        return {
            row: {
                "patient_id": pid,
                "pseudonym": name,
                "row": _plain(row),
                "endpoint": self.endpoint,
                "family": self.family,
            }
            for row, pid, name in zip(df.index, ids, names, strict=True)
        }

    @staticmethod
    def _error_record(identity: dict[str, Any], message: str) -> dict[str, Any]:
        return {**identity, "status": "error", "error": message}

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> Path:
        """Write a pickle-free model directory (see :mod:`riskmodel.scoring.files`)."""
        meta = {
            "endpoint": self.endpoint,
            "family": self.family,
            "experiment": self.experiment,
            "landmark_months": self.landmark_months,
            "horizons": self.horizons,
            "numeric_ranges": {
                name: [stored_bound(b, age=self.is_age(name)) for b in bounds]
                for name, bounds in self.numeric_ranges.items()
            },
            "categories": self.categories,
            "risk_cutoffs": self.risk_cutoffs,
            "feature_means": self.feature_means,
            "declaration": None if self.declaration is None else self.declaration.model_dump(mode="json"),
            "reliable_until": self.reliable_until,
            "min_at_risk": self.min_at_risk,
            "input_summaries": self.input_summaries,
            "lineage": self.lineage,
            "development": self.development,
            "hazard_ratios": None
            if self.hazard_ratios is None
            else {
                "table": self.hazard_ratios.reset_index().to_dict(orient="list"),
                "note": self.hazard_ratios.attrs.get("note", ""),
                "method": self.hazard_ratios.attrs.get("method", ""),
            },
        }
        return write_model_dir(Path(folder), meta=meta, features=self.features, estimator=self.estimator)

    @classmethod
    def load(cls, folder: str | Path) -> RiskModel:
        """Read a model directory after verifying its manifest."""
        meta, features, estimator = read_model_dir(folder)
        try:
            return cls._from_files(meta, features, estimator)
        except RiskModelError:
            raise
        except Exception as exc:  # model.json passed its schema, yet a value cannot be used (a declaration)
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            raise ModelFileError(f"{folder}: malformed model.json ({type(exc).__name__}: {first})") from None

    @classmethod
    def _from_files(cls, meta: dict[str, Any], features: Any, estimator: SurvivalEstimator) -> RiskModel:
        declaration = (
            None
            if meta.get("declaration") is None
            else CohortDeclaration.model_validate(meta["declaration"], strict=False)
        )
        table = None
        if meta.get("hazard_ratios"):
            table = pd.DataFrame(meta["hazard_ratios"]["table"]).set_index("feature")
            table.attrs["note"] = meta["hazard_ratios"]["note"]
            table.attrs["method"] = meta["hazard_ratios"].get("method", "")
        return cls(
            meta["endpoint"],
            meta["family"],
            meta["experiment"],
            float(meta["landmark_months"]),
            [float(h) for h in meta["horizons"]],
            features,
            estimator,
            read_ranges(meta["numeric_ranges"], declaration),
            {k: list(v) for k, v in meta["categories"].items()},
            [float(c) for c in meta["risk_cutoffs"]],
            table,
            [float(v) for v in meta.get("feature_means", [])],
            None if meta.get("reliable_until") is None else float(meta["reliable_until"]),
            None if meta.get("min_at_risk") is None else int(meta["min_at_risk"]),
            declaration,
            dict(meta.get("input_summaries") or {}),
            None if meta.get("lineage") is None else dict(meta["lineage"]),
            None if meta.get("development") is None else dict(meta["development"]),
        )


def _kind(declaration: CohortDeclaration | None, name: str) -> str:
    """A model input's kind: numeric, binary, ordinal or categorical."""
    if declaration is not None:
        return declaration.covariate(name).kind
    return "numeric" if column(name).kind in ("float", "int") else "categorical"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _sort_key(row: Any) -> tuple[int, str]:
    return (0, f"{row:012d}") if isinstance(row, (int, np.integer)) else (1, str(row))
