"""The one home of the model families: their names, estimators, settings and search spaces.

A new family is one :class:`FamilySpec` in :data:`SPECS` (and its module beside this one). Every
other part of riskmodel reads the families from here: the experiment config builds its
``models:`` section from :data:`SPECS`, the CLI lists their names, tuning takes their default
search spaces, and the contract tests run over every registered family.

Each family also names its competing-risk counterpart (``FamilySpec.competing``: the same survival
family fitted once per cause and combined into cumulative incidences,
:mod:`riskmodel.models.competing`). It takes the family's own settings, so an experiment's
``models: {cox: …, rsf: …, gbm: …}`` gives CIF models for a competing endpoint with no new key:
:func:`build_competing_estimator` builds it as :func:`build_estimator` builds the survival model.
A new family gives its cause-specific counterpart too, and the competing contract tests run over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from riskmodel.core.limits import limited
from riskmodel.core.strict import StrictModel
from riskmodel.errors import UserInputError
from riskmodel.models.base import SurvivalEstimator
from riskmodel.models.boosting import GradientBoostingSurvival
from riskmodel.models.competing import CauseSpecificCox, CompetingRiskEstimator
from riskmodel.models.competing_trees import CauseSpecificBoosting, CauseSpecificForest
from riskmodel.models.cox import CoxPH
from riskmodel.models.fine_gray import FineGray
from riskmodel.models.forest import SurvivalForest

__all__ = [
    "COMPETING_FAMILIES",
    "FAMILIES",
    "SPECS",
    "BoostingConfig",
    "CoxConfig",
    "FamilySpec",
    "FineGrayConfig",
    "ForestConfig",
    "ParamSpace",
    "build_competing_estimator",
    "build_estimator",
    "build_family",
    "family_names",
    "spec",
]


class ParamSpace(StrictModel):
    """One hyperparameter's search range: ``low``/``high`` (with ``log``, ``step``) or ``choices``."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    integer: bool = False
    choices: list[str | float | int | None] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> ParamSpace:
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices must not be empty")
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high (or give choices)")
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low:g}")
        return self


class CoxConfig(StrictModel):
    """Penalised Cox proportional hazards (Efron ties)."""

    penalty: float = Field(0.1, ge=0, description="Penalty on the mean log partial likelihood; 0 = unpenalised.")
    l1_ratio: float = Field(0.0, ge=0, le=1)


class ForestConfig(StrictModel):
    """Random survival forest (scikit-survival)."""

    n_estimators: Annotated[int, limited(5000)] = Field(200, ge=1)
    min_samples_leaf: int = Field(3, ge=1)
    max_features: Literal["sqrt", "log2"] | float | None = "sqrt"
    max_depth: Annotated[int, limited(100)] | None = Field(None, ge=1)
    time_grid: Literal["auto"] | Annotated[int, Field(ge=2), limited(10_000)] | None = Field(
        "auto",
        description="Event-time quantiles the trees see; auto = 100 above 1,000 patients or 100 distinct event "
        "times, exact below.",
    )
    max_samples: Literal["auto"] | Annotated[int, Field(ge=1)] | Annotated[float, Field(gt=0, le=1)] | None = Field(
        "auto", description="Patients per tree (count or fraction); auto = 30·√n above 1,000 patients."
    )
    max_bins: Literal["auto"] | Annotated[int, Field(ge=2), limited(65_536)] | None = Field(
        "auto", description="Quantile bins per continuous feature; auto = 128 above 1,000 patients."
    )


class BoostingConfig(StrictModel):
    """Boosted Cox model: xgboost (default) or scikit-survival."""

    backend: Literal["xgboost", "sksurv"] = "xgboost"
    n_estimators: Annotated[int, limited(10_000)] = Field(100, ge=1)
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_depth: Annotated[int, limited(20)] = Field(2, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    min_child_weight: float = Field(0.5, ge=0)
    reg_lambda: float = Field(1.0, ge=0)
    reg_alpha: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _used_by_the_backend(self) -> BoostingConfig:
        """Refuse when loading the experiment what ``fit`` would refuse after preparing the data."""
        ignored = GradientBoostingSurvival.ignored_params(self.model_dump())
        fields = type(self).model_fields
        changed = [name for name in ignored if name in fields and getattr(self, name) != fields[name].default]
        if changed:
            raise ValueError(f"{', '.join(changed)} {ignored[changed[0]]}")
        return self


class FineGrayConfig(StrictModel):
    """Fine-Gray subdistribution hazards, one unpenalised model per cause (competing endpoints only;
    off unless asked: ``models: {fine_gray: {}}`` or ``--models fine_gray``)."""


@dataclass(frozen=True)
class FamilySpec:
    """Everything riskmodel knows about one model family."""

    name: str
    label: str
    description: str  # the model specification, as the model report states it
    estimator: type[SurvivalEstimator]
    config: type[StrictModel]  # the experiment's models.<name> section
    space: dict[str, ParamSpace] = field(default_factory=dict)  # riskmodel tune's default search space
    seeded: bool = False  # the estimator takes random_state
    # Harrell's bootstrap under-corrects it: the trees memorise the ~63 % of patients each resample shares
    memorises_resamples: bool = False
    # the competing-risk counterpart: this family once per cause, combined into CIFs (same settings)
    competing: type[CompetingRiskEstimator] | None = None
    # a family of competing-risk models only (Fine-Gray): off by default, skipped on an endpoint
    # without competing events, left out of the survival contract tests (FAMILIES)
    competing_only: bool = False


SPECS: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        FamilySpec(
            "cox",
            "Cox proportional hazards",
            "Cox proportional hazards, penalised partial likelihood (Efron ties), Breslow baseline hazard",
            CoxPH,
            CoxConfig,
            {
                "penalty": ParamSpace(low=1e-3, high=10.0, log=True),
                "l1_ratio": ParamSpace(low=0.0, high=1.0),
            },
            competing=CauseSpecificCox,
        ),
        FamilySpec(
            "rsf",
            "random survival forest",
            "Random survival forest (scikit-survival), log-rank splits, Nelson-Aalen leaf estimates",
            SurvivalForest,
            ForestConfig,
            {
                "n_estimators": ParamSpace(low=100, high=500, step=50, integer=True),
                "min_samples_leaf": ParamSpace(low=1, high=20, integer=True),
                "max_features": ParamSpace(choices=["sqrt", 0.5, 1.0]),
                "max_depth": ParamSpace(choices=[None, 3, 5, 8]),
                "time_grid": ParamSpace(choices=["auto", 25, 50, 100]),
            },
            seeded=True,
            memorises_resamples=True,
            competing=CauseSpecificForest,
        ),
        FamilySpec(
            "gbm",
            "gradient boosting",
            "Gradient-boosted trees (xgboost, Cox partial-likelihood objective), Breslow baseline hazard",
            GradientBoostingSurvival,
            BoostingConfig,
            {
                "learning_rate": ParamSpace(low=0.01, high=0.3, log=True),
                "max_depth": ParamSpace(low=1, high=5, integer=True),
                "n_estimators": ParamSpace(low=50, high=500, step=50, integer=True),
                "subsample": ParamSpace(low=0.5, high=1.0),
                "min_child_weight": ParamSpace(low=0.1, high=10.0, log=True),
                "reg_lambda": ParamSpace(low=1e-3, high=10.0, log=True),
                "reg_alpha": ParamSpace(choices=[0.0, 0.01, 0.1, 1.0]),
            },
            seeded=True,
            memorises_resamples=True,
            competing=CauseSpecificBoosting,
        ),
        FamilySpec(
            "fine_gray",
            "Fine-Gray",
            "Fine-Gray proportional subdistribution hazards (unpenalised, as cmprsk::crr), one model per cause; "
            "the competing CIF capped so that CIF1 + CIF2 ≤ 1",
            FineGray,
            FineGrayConfig,
            competing=FineGray,
            competing_only=True,
        ),
    )
}

# The estimator of every registered family: the contract tests run over these.
FAMILIES: dict[str, type[SurvivalEstimator]] = {name: s.estimator for name, s in SPECS.items() if not s.competing_only}
# The competing-risk counterpart of every registered family that has one (the competing contract tests).
COMPETING_FAMILIES: dict[str, type[CompetingRiskEstimator]] = {
    name: s.competing for name, s in SPECS.items() if s.competing is not None
}


def family_names() -> str:
    """The registered family names, comma-separated (for messages and help texts)."""
    return ", ".join(SPECS)


def spec(name: str, *, option: str = "model family") -> FamilySpec:
    """The spec of family ``name``; a user error naming the choices when there is none."""
    try:
        return SPECS[name]
    except KeyError:
        raise UserInputError(f"{option}: unknown family {name!r}; choose from {family_names()}") from None


def build_estimator(family: str, params: dict[str, Any], seed: int) -> SurvivalEstimator:
    """The estimator of a family from its config section (seeded families get ``random_state``)."""
    s = spec(family)
    return s.estimator(**params, **({"random_state": seed} if s.seeded else {}))


def build_competing_estimator(family: str, params: dict[str, Any], seed: int) -> CompetingRiskEstimator:
    """The competing-risk counterpart of a family, from the family's own config section and seed."""
    s = spec(family)
    if s.competing is None:
        raise UserInputError(f"model family {family!r} has no competing-risks counterpart yet")
    return s.competing(**params, **({"random_state": seed} if s.seeded else {}))


def build_family(family: str, params: dict[str, Any], seed: int, *, competing: bool) -> SurvivalEstimator:
    """The estimator a workflow fits: the competing-risk counterpart for a competing endpoint, the
    survival family otherwise (a competing-only family has no survival form: a user error)."""
    if competing:
        return build_competing_estimator(family, params, seed)
    if spec(family).competing_only:
        raise UserInputError(f"model family {family!r} models competing risks only; this endpoint has none")
    return build_estimator(family, params, seed)
