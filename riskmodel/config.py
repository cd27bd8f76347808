"""Experiment configuration: pydantic models (strict, frozen, extra="forbid") for YAML files.

``riskmodel config schema`` prints the JSON Schema; ``load_experiment`` reads and checks a file
and reports every problem with its key path, value and rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from riskmodel._yaml import read_yaml_mapping, validation_lines
from riskmodel.cohort.endpoints import RESPONSE_LANDMARK_MONTHS, check_guarantee_time
from riskmodel.errors import UserInputError
from riskmodel.features import FEATURE_BLOCKS, resolve_blocks

__all__ = [
    "BoostingConfig",
    "CoxConfig",
    "DataConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "FeaturesConfig",
    "ForestConfig",
    "ModelsConfig",
    "ParamSpace",
    "TuneConfig",
    "default_experiment_path",
    "load_experiment",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(_Strict):
    """Where the cohort comes from."""

    path: str | None = Field(None, description="Cohort file (CSV, Excel, Parquet); null = the bundled cohort.")
    mapping: str | None = Field(None, description="Column mapping YAML file (see data/mapping.example.yaml).")
    response_rule: Literal["recist", "volume"] | None = None


class FeaturesConfig(_Strict):
    """Arguments of riskmodel.features.ClinicalFeatures."""

    set: str | list[str] = Field("study", description="A named feature set or a list of feature blocks.")
    response_coding: Literal["binary", "ordinal"] = "binary"
    stage_coding: Literal["ordinal", "onehot"] = "ordinal"
    d90_threshold_gy: float = Field(110.0, gt=0)
    alpha_beta: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _known_blocks(self) -> FeaturesConfig:
        resolve_blocks(self.set)  # raises with the list of known sets and blocks
        return self


class CoxConfig(_Strict):
    """Penalised Cox proportional hazards (Efron ties)."""

    penalty: float = Field(0.1, ge=0, description="Penalty on the mean log partial likelihood; 0 = unpenalised.")
    l1_ratio: float = Field(0.0, ge=0, le=1)


class ForestConfig(_Strict):
    """Random survival forest (scikit-survival)."""

    n_estimators: int = Field(200, ge=1)
    min_samples_leaf: int = Field(3, ge=1)
    max_features: Literal["sqrt", "log2"] | float | None = "sqrt"
    max_depth: int | None = Field(None, ge=1)
    time_grid: Literal["auto"] | Annotated[int, Field(ge=2)] | None = Field(
        "auto", description="Event-time quantiles the trees see; auto = 100 above 1,000 patients, exact below."
    )
    max_samples: Literal["auto"] | Annotated[int, Field(ge=1)] | Annotated[float, Field(gt=0, le=1)] | None = Field(
        "auto", description="Patients per tree (count or fraction); auto = 30·√n above 1,000 patients."
    )
    max_bins: Literal["auto"] | Annotated[int, Field(ge=2)] | None = Field(
        "auto", description="Quantile bins per continuous feature; auto = 128 above 1,000 patients."
    )


class BoostingConfig(_Strict):
    """Boosted Cox model: xgboost (default) or scikit-survival."""

    backend: Literal["xgboost", "sksurv"] = "xgboost"
    n_estimators: int = Field(100, ge=1)
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_depth: int = Field(2, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    min_child_weight: float = Field(0.5, ge=0)
    reg_lambda: float = Field(1.0, ge=0)
    reg_alpha: float = Field(0.0, ge=0)


class ModelsConfig(_Strict):
    """The model families to train; set one to null to leave it out."""

    cox: CoxConfig | None = CoxConfig()
    rsf: ForestConfig | None = ForestConfig()
    gbm: BoostingConfig | None = BoostingConfig()

    def enabled(self) -> dict[str, BaseModel]:
        """The families that are switched on, by name."""
        return {name: cfg for name in ("cox", "rsf", "gbm") if (cfg := getattr(self, name)) is not None}


class EvaluationConfig(_Strict):
    """Repeated K-fold cross-validation, stratified on the event indicator."""

    n_splits: int = Field(3, ge=2, description="Folds; 3 keeps a few events in each test fold at n=36.")
    n_repeats: int = Field(10, ge=1, description="Repeats; metrics are mean and SD over repeats.")
    bootstrap: int = Field(
        200, ge=0, description="Bootstrap resamples for Harrell's optimism correction of the whole pipeline; 0 = off."
    )


class ParamSpace(_Strict):
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


class TuneConfig(_Strict):
    """``riskmodel tune``: the objective, its cross-validation, and the search spaces.

    ``space.<family>`` replaces that family's default space (riskmodel.tune.DEFAULT_SPACES) for the
    parameters it names; parameters not named keep the experiment's fixed value.
    """

    metric: Literal["uno_c", "ibs", "td_auc"] = Field("uno_c", description="Objective on held-out folds.")
    horizon: float | None = Field(None, gt=0, description="Months, for td_auc (default: the first horizon).")
    n_splits: int = Field(3, ge=2)
    n_repeats: int = Field(2, ge=1, description="Repeated stratified CV; the same splits for every trial.")
    pruner: Literal["median", "none"] = "median"
    space: dict[Literal["cox", "rsf", "gbm"], dict[str, ParamSpace]] = Field(default_factory=dict)


class ExperimentConfig(_Strict):
    """One experiment: data, endpoints, features, landmark, models, evaluation, horizons, seed."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data: DataConfig = DataConfig()
    endpoints: list[Literal["lc", "os"]] = Field(["lc", "os"], min_length=1)
    features: FeaturesConfig = FeaturesConfig()
    landmark_months: float = Field(
        0.0,
        ge=0,
        description="Time zero in months after the implant. Default: 3 when the features include the 3-month "
        "response (guarantee-time bias), else 0. An explicit value below 3 with response is refused.",
    )
    models: ModelsConfig = ModelsConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    horizons: list[float] = Field([6.0, 12.0, 24.0], min_length=1, description="Months after time zero.")
    tune: TuneConfig = TuneConfig()
    risk_group_cutoffs: list[float] | None = Field(
        None, description="Risk-score cut-offs for risk groups; null = tertiles of the training risk."
    )
    seed: int = 2013

    @model_validator(mode="before")
    @classmethod
    def _default_landmark(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("landmark_months") is not None:
            return data
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
        if not self.models.enabled():
            raise ValueError("at least one model family must be enabled")
        if self.risk_group_cutoffs is not None and sorted(self.risk_group_cutoffs) != self.risk_group_cutoffs:
            raise ValueError("risk_group_cutoffs must be increasing")
        columns = {c for b in resolve_blocks(self.features.set) for c in FEATURE_BLOCKS[b]}
        check_guarantee_time(columns, self.landmark_months)
        return self

    @property
    def uses_response(self) -> bool:
        """Whether a post-implant measurement (3-month response) is a feature."""
        return self.landmark_months >= RESPONSE_LANDMARK_MONTHS and "response" in resolve_blocks(self.features.set)


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
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserInputError("\n".join(validation_lines(p, exc))) from None
    return _resolve_paths(config, p.parent)


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
