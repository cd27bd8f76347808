"""Experiment configuration: pydantic models (strict, frozen, extra="forbid") for YAML files.

``riskmodel config schema`` prints the JSON Schema; ``load_experiment`` reads and checks a file
and reports every problem with its key path, value and rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from riskmodel.cohort import Cohort
from riskmodel.cohort.contract import COMPETING_ENDPOINTS
from riskmodel.cohort.declaration import CohortDeclaration
from riskmodel.cohort.endpoints import ENDPOINTS, RESPONSE_LANDMARK_MONTHS, check_guarantee_time
from riskmodel.core.limits import SEED_MAX, check_limit, limited
from riskmodel.core.strict import StrictModel
from riskmodel.core.yamlio import read_yaml_mapping, validation_lines
from riskmodel.errors import UserInputError
from riskmodel.features import FEATURE_BLOCKS, resolve_blocks
from riskmodel.metrics import MIN_AT_RISK
from riskmodel.models.registry import SPECS, BoostingConfig, CoxConfig, ForestConfig, ParamSpace, family_names

__all__ = [
    "BoostingConfig",
    "CoxConfig",
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "FeaturesConfig",
    "ForestConfig",
    "ImputationConfig",
    "ModelsConfig",
    "ParamSpace",
    "TuneConfig",
    "competing_endpoints",
    "default_experiment_path",
    "load_experiment",
]


MAX_SPLITS = 20  # cross-validation folds (safety limits: see riskmodel.core.limits)
MAX_REPEATS = 100
MAX_LIST = 20  # horizons, risk-group cut-offs


class DataConfig(StrictModel):
    """Where the cohort comes from."""

    path: str | None = Field(None, description="Cohort file (CSV, Excel, Parquet); null = the bundled cohort.")
    mapping: str | None = Field(None, description="Column mapping YAML file (see data/mapping.example.yaml).")
    response_rule: Literal["recist", "volume"] | None = None


class FeaturesConfig(StrictModel):
    """The model features: the bundled study's feature blocks, or a declared cohort's covariates."""

    set: str | list[str] = Field(
        "study", description="The bundled study: a named feature set or a list of feature blocks."
    )
    covariates: list[str] | None = Field(
        None, description="A declared cohort: the covariates the models use, by name (default: every one)."
    )
    response_coding: Literal["binary", "ordinal"] = "binary"
    stage_coding: Literal["ordinal", "onehot"] = "ordinal"
    d90_threshold_gy: float = Field(110.0, gt=0)
    alpha_beta: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _known_blocks(self) -> FeaturesConfig:
        resolve_blocks(self.set)  # raises with the list of known sets and blocks
        return self


class _Models(StrictModel):
    """The model families to train; set one to null to leave it out."""

    def enabled(self) -> dict[str, BaseModel]:
        """The families that are switched on, by name."""
        return {name: cfg for name in SPECS if (cfg := getattr(self, name)) is not None}


# One optional section per registered family (riskmodel.models.registry), each defaulting to the
# family's own defaults: a new family needs no change here.
if TYPE_CHECKING:
    ModelsConfig = _Models
else:
    ModelsConfig = create_model(
        "ModelsConfig",
        __base__=_Models,
        __doc__=_Models.__doc__,
        # a competing-only family (Fine-Gray) is off unless asked
        **{name: (s.config | None, None if s.competing_only else s.config()) for name, s in SPECS.items()},
    )


class EvaluationConfig(StrictModel):
    """Repeated K-fold cross-validation, stratified on the event indicator; ``train`` sizes it to the data
    (``plan: auto``, :mod:`riskmodel.workflow.plan`)."""

    n_splits: Annotated[int, limited(MAX_SPLITS)] = Field(
        3, ge=2, description="Folds; 3 keeps a few events in each test fold at n=36."
    )
    n_repeats: Annotated[int, limited(MAX_REPEATS)] = Field(
        10, ge=1, description="Repeats; metrics are mean and SD over all folds."
    )
    bootstrap: Annotated[int, limited(2000)] = Field(
        200, ge=0, description="Bootstrap resamples for Harrell's optimism correction of the whole pipeline; 0 = off."
    )
    plan: Literal["auto", "fixed"] = Field(
        "auto",
        description="auto: riskmodel train sizes the scheme to each endpoint's events (riskmodel.workflow.plan: "
        "repeated CV and the bootstrap for few events, one K-fold, then a held-out split in the thousands; no "
        "optimism bootstrap for tree ensembles); a key set here always wins. fixed: these values as written.",
    )
    holdout: float | None = Field(
        None, ge=0.05, le=0.5, description="A held-out fraction: one stratified split replaces cross-validation."
    )
    min_at_risk: int = Field(
        MIN_AT_RISK,
        ge=1,
        description="A horizon with fewer patients still followed shows no metric, calibration or decision curve, "
        "and predictions there are flagged.",
    )
    by: Literal["centre"] | None = Field(
        None,
        description="centre: internal-external cross-validation by the declared centre column (riskmodel train "
        "--by centre): each centre held out in turn, the measures pooled by random-effects meta-analysis.",
    )

    @property
    def fits_per_model(self) -> int:
        """Pipeline fits per (endpoint, family): every CV fold, every resample, and the final fit."""
        return self.n_splits * self.n_repeats + self.bootstrap + 1


class ImputationConfig(StrictModel):
    """Multiple imputation of the covariates declared ``missing: impute``."""

    n_imputations: int = Field(10, ge=1, le=100, description="m, the completed copies (and fitted models).")
    n_iter: int = Field(10, ge=1, le=100, description="Chained-equations cycles per imputation.")
    native: bool = Field(
        True,
        description="Families that handle missing values themselves (the forest, xgboost boosting) get them as "
        "they are; false imputes for every family.",
    )


class TuneConfig(StrictModel):
    """``riskmodel tune``: the objective, its cross-validation, and the search spaces.

    ``space.<family>`` replaces that family's default space (riskmodel.models.registry) for the
    parameters it names; parameters not named keep the experiment's fixed value.
    """

    metric: Literal["uno_c", "ibs", "td_auc"] = Field("uno_c", description="Objective on held-out folds.")
    horizon: float | None = Field(None, gt=0, description="Months, for td_auc (default: the first horizon).")
    n_splits: Annotated[int, limited(MAX_SPLITS)] = Field(3, ge=2)
    n_repeats: Annotated[int, limited(MAX_REPEATS)] = Field(
        2, ge=1, description="Repeated stratified CV; the same splits for every trial."
    )
    pruner: Literal["median", "none"] = "median"
    space: dict[str, dict[str, ParamSpace]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_families(self) -> TuneConfig:
        unknown = sorted(set(self.space) - set(SPECS))
        if unknown:
            raise ValueError(f"unknown model family {', '.join(unknown)}; choose from {family_names()}")
        for family, params in self.space.items():
            for param, space in params.items():
                _check_space_values(family, param, space)
        return self


def _check_space_values(family: str, param: str, space: ParamSpace) -> None:
    """A search range's ends and choices must be values the family's settings accept (its
    limits too): ``high: 1e12`` trees would otherwise pass here and hang a trial."""
    config = SPECS[family].config
    if param not in config.model_fields:
        return  # the tuning space code names unknown parameters
    values = [space.low, space.high] if space.choices is None else list(space.choices)
    for given in values:
        value = int(given) if isinstance(given, float) and given.is_integer() and abs(given) < 2**63 else given
        try:
            config.model_validate({param: value}, strict=False)
        except ValidationError as exc:
            rule = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ValueError(f"tune.space.{family}.{param}: {given!r} is refused by models.{family} ({rule})") from None


class ExperimentConfig(StrictModel):
    """One experiment: data, endpoints, features, landmark, models, evaluation, horizons, seed."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data: DataConfig = DataConfig()
    cohort: CohortDeclaration | None = Field(
        None,
        description="The data file's identifiers, covariates and endpoints (a mapping; or in the YAML file, the "
        "name of a shipped declaration such as 'brachytherapy', or a path to a YAML file holding one); "
        "null = the bundled study's contract and feature blocks.",
    )
    endpoints: list[str] = Field(
        list(ENDPOINTS), min_length=1, description="The endpoints to model (default: every declared one)."
    )
    features: FeaturesConfig = FeaturesConfig()
    imputation: ImputationConfig = ImputationConfig()
    landmark_months: float = Field(
        0.0,
        ge=0,
        description="Time zero in months after the implant. Default: 3 when the features include the 3-month "
        "response (guarantee-time bias), else 0. An explicit value below 3 with response is refused.",
    )
    competing_risks: bool = Field(
        True,
        description="Endpoints that declare competing events are modelled as competing risks (cumulative "
        "incidence); false: competing events are censored, the cause-specific view.",
    )
    models: ModelsConfig = ModelsConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    horizons: list[float] = Field([6.0, 12.0, 24.0], min_length=1, description="Months after time zero.")
    tune: TuneConfig = TuneConfig()
    risk_group_cutoffs: list[float] | None = Field(
        None, description="Risk-score cut-offs for risk groups; null = tertiles of the training risk."
    )
    seed: int = Field(2013, ge=0, le=SEED_MAX, description="Random seed (0 to 2**32 - 1).")

    @model_validator(mode="before")
    @classmethod
    def _declared_defaults(cls, data: Any) -> Any:
        """With a declared cohort: every declared endpoint, and a landmark at the latest measurement."""
        if not isinstance(data, dict) or not isinstance(data.get("cohort"), dict):
            return data
        cohort = data["cohort"]
        out = dict(data)
        endpoints = cohort.get("endpoints")
        if "endpoints" not in out and isinstance(endpoints, list):
            out["endpoints"] = [e.get("name") for e in endpoints if isinstance(e, dict)]
        covariates = [c for c in cohort.get("covariates") or [] if isinstance(c, dict)]
        features = out.get("features") if isinstance(out.get("features"), dict) else {}
        chosen = features.get("covariates") if isinstance(features, dict) else None
        if out.get("landmark_months") is None:
            times = [
                c.get("measured_at_months", 0) or 0 for c in covariates if chosen is None or c.get("name") in chosen
            ]
            out["landmark_months"] = float(max([0, *[t for t in times if isinstance(t, int | float)]]))
        return out

    @model_validator(mode="before")
    @classmethod
    def _default_landmark(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("landmark_months") is not None or data.get("cohort") is not None:
            return data  # a declared cohort's landmark comes from its covariates (_declared_defaults)
        features = data.get("features") or {}
        feature_set = features.get("set", "study") if isinstance(features, dict) else getattr(features, "set", "study")
        try:
            blocks = resolve_blocks(feature_set)
        except UserInputError:
            return data  # the features validator reports it
        return {**data, "landmark_months": RESPONSE_LANDMARK_MONTHS if "response" in blocks else 0.0}

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        if len(set(self.endpoints)) != len(self.endpoints):
            raise ValueError("endpoints must not repeat")
        if any(h <= 0 for h in self.horizons) or sorted(set(self.horizons)) != list(self.horizons):
            raise ValueError("horizons must be positive, increasing and distinct")
        for key, values in (("horizons", self.horizons), ("risk_group_cutoffs", self.risk_group_cutoffs or [])):
            rule = check_limit(len(values), MAX_LIST)
            if rule:
                raise ValueError(f"{key}: {len(values):,} values; the count {rule}")
        if not self.models.enabled():
            raise ValueError("at least one model family must be enabled")
        if self.risk_group_cutoffs is not None and sorted(self.risk_group_cutoffs) != self.risk_group_cutoffs:
            raise ValueError("risk_group_cutoffs must be increasing")
        if self.cohort is not None:
            self._check_declared(self.cohort)
            return self
        unknown = sorted(set(self.endpoints) - set(ENDPOINTS))
        if unknown:
            raise ValueError(
                f"endpoints: {', '.join(unknown)} is not an endpoint of the bundled study ({', '.join(ENDPOINTS)}); "
                "declare your cohort's endpoints under cohort.endpoints"
            )
        if self.features.covariates is not None:
            raise ValueError("features.covariates selects declared covariates; declare the cohort under cohort:")
        columns = {c for b in resolve_blocks(self.features.set) for c in FEATURE_BLOCKS[b]}
        check_guarantee_time(columns, self.landmark_months)
        return self

    def _check_declared(self, cohort: CohortDeclaration) -> None:
        unknown = sorted(set(self.endpoints) - set(cohort.endpoint_names))
        if unknown:
            raise ValueError(
                f"endpoints: {', '.join(unknown)} is not declared under cohort.endpoints "
                f"({', '.join(cohort.endpoint_names)})"
            )
        if self.features.set != "study":
            raise ValueError(
                "features.set chooses the bundled study's feature blocks; with a declared cohort, choose "
                "features.covariates (or leave it out to use every declared covariate)"
            )
        names = [c.name for c in cohort.covariates]
        unknown = sorted(set(self.features.covariates or []) - set(names))
        if unknown:
            raise ValueError(
                f"features.covariates: {', '.join(unknown)} is not declared (declared: {', '.join(names)})"
            )
        for i, c in enumerate(cohort.covariates):
            used = self.features.covariates is None or c.name in self.features.covariates
            if used and c.measured_at_months > self.landmark_months:
                raise ValueError(
                    f"cohort.covariates[{i}].measured_at_months: {c.name} is measured at {c.measured_at_months:g} "
                    f"months, after the landmark of {self.landmark_months:g} months. A value measured after time "
                    "zero is known only for patients still event-free then (guarantee-time bias): raise "
                    "landmark_months, or leave the covariate out"
                )

    @property
    def covariates(self) -> list[str]:
        """A declared cohort's covariates the models use (empty for the bundled study)."""
        if self.cohort is None:
            return []
        return [
            c.name
            for c in self.cohort.covariates
            if self.features.covariates is None or c.name in self.features.covariates
        ]

    @property
    def competing_endpoints(self) -> list[str]:
        """The experiment's endpoints modelled as competing risks: those declaring competing events
        (the bundled study's LC, with death), none when ``competing_risks`` is false."""
        return [ep for ep in self.endpoints if self.competing_risks and ep in competing_endpoints(self.cohort)]

    @property
    def uses_response(self) -> bool:
        """Whether a post-implant measurement (3-month response) is a feature."""
        return self.landmark_months >= RESPONSE_LANDMARK_MONTHS and "response" in resolve_blocks(self.features.set)


def competing_endpoints(source: CohortDeclaration | Cohort | None) -> list[str]:
    """The endpoints of a declaration (or a cohort's; None: the bundled contract) that declare
    competing events, by codes of their own or a competing endpoint (read-only).

    >>> competing_endpoints(None)
    ['lc']
    """
    declaration = source.declaration if isinstance(source, Cohort) else source
    if declaration is None:
        return [ep for ep in ENDPOINTS if ep in COMPETING_ENDPOINTS]
    return [e.name for e in declaration.endpoints if e.has_competing]


def default_experiment_path() -> Path:
    """``experiments/default.yaml`` here, else the copy installed with riskmodel, else the checkout's."""
    local = Path("experiments/default.yaml")
    if local.exists():
        return local
    package = Path(__file__).resolve().parent
    for candidate in (package / "_experiments" / "default.yaml", package.parent / "experiments" / "default.yaml"):
        if candidate.exists():
            return candidate
    raise UserInputError("no experiments/default.yaml here and none installed; give an experiment file")


def load_experiment(path: str | Path, **overrides: Any) -> ExperimentConfig:
    """Read an experiment YAML; ``overrides`` replace top-level keys. Every problem is reported."""
    p = Path(path)
    raw = read_yaml_mapping(p, "experiment", "name, data, models, ...", UserInputError)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(raw.get("cohort"), str):
        raw["cohort"] = _named_declaration(raw["cohort"], p)
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserInputError("\n".join(validation_lines(p, exc))) from None
    return _resolve_paths(config, p.parent)


def _named_declaration(name: str, experiment: Path) -> dict[str, Any]:
    """``cohort: NAME``: a declaration shipped with riskmodel (``brachytherapy``), or a YAML file of
    one (its path relative to the experiment), so one declaration serves many experiments."""
    from riskmodel.cohort.builtin import BUILTIN_DECLARATIONS, builtin_declaration

    if name in BUILTIN_DECLARATIONS:
        return builtin_declaration(name).model_dump(mode="json")
    path = Path(name) if Path(name).is_absolute() else experiment.parent / name
    if not path.exists():
        raise UserInputError(
            f"{experiment}: cohort: {name!r} is neither a declaration shipped with riskmodel "
            f"({', '.join(BUILTIN_DECLARATIONS)}) nor a YAML file next to the experiment"
        )
    declared = read_yaml_mapping(path, "cohort declaration", "id, covariates, endpoints", UserInputError)
    inner = declared.get("cohort", declared)
    if not isinstance(inner, dict):
        raise UserInputError(f"{path}: cohort: must be a mapping with id, covariates and endpoints")
    return inner


def _resolve_paths(config: ExperimentConfig, base: Path) -> ExperimentConfig:
    """Data paths in a config are relative to the config file; check that they exist."""
    data = config.data
    updates: dict[str, str] = {}
    for key in ("path", "mapping"):
        value = getattr(data, key)
        if value is None:
            continue
        candidate = Path(value)
        if not candidate.is_absolute() and not candidate.exists() and (base / candidate).exists():
            candidate = base / candidate
        if not candidate.exists():
            raise UserInputError(f"data.{key}: file not found: {value}")
        updates[key] = str(candidate)
    return config.model_copy(update={"data": data.model_copy(update=updates)}) if updates else config
