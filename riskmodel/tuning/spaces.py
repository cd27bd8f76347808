"""Search spaces: each family's default space (from the model registry), the experiment's
``tune.space.<family>`` overrides, and how a trial draws from them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from riskmodel.config import ExperimentConfig
from riskmodel.errors import UserInputError
from riskmodel.models.registry import SPECS, ParamSpace, spec

__all__ = ["DEFAULT_SPACES", "check_space", "default_space", "fixed_params", "search_space", "suggest"]

DEFAULT_SPACES: dict[str, dict[str, ParamSpace]] = {name: dict(s.space) for name, s in SPECS.items()}


def fixed_params(config: ExperimentConfig, family: str) -> dict[str, Any]:
    """The family's settings in the experiment (its defaults when the family is switched off)."""
    return (config.models.enabled().get(family) or spec(family).config()).model_dump()


def default_space(family: str, fixed: Mapping[str, Any]) -> dict[str, ParamSpace]:
    """The family's default space without the parameters ``fixed`` leaves unused (e.g. xgboost's
    under ``backend: sksurv``): searching them would only repeat one model."""
    s = spec(family)
    ignored = s.estimator.ignored_params(fixed)
    return {name: space for name, space in s.space.items() if name not in ignored}


def search_space(config: ExperimentConfig, family: str) -> dict[str, ParamSpace]:
    """The family's default space with the experiment's ``tune.space.<family>`` entries applied.

    An entry the family's settings leave unused is refused (a user error naming it).
    """
    fixed = fixed_params(config, family)
    chosen = config.tune.space.get(family, {})
    ignored = spec(family).estimator.ignored_params(fixed)
    refused = [name for name in chosen if name in ignored]
    if refused:
        raise UserInputError(f"tune.space.{family}: {', '.join(refused)} {ignored[refused[0]]}; remove it")
    return {**default_space(family, fixed), **chosen}


def check_space(space: dict[str, ParamSpace], fixed: dict[str, Any], family: str) -> None:
    """Refuse a searched name that is not a parameter of the family."""
    unknown = sorted(set(space) - set(fixed))
    if unknown:
        raise UserInputError(f"tune.space.{family}: {', '.join(unknown)} is not a {family} parameter")


def suggest(trial: Any, name: str, space: ParamSpace) -> Any:
    """Draw parameter ``name`` for an Optuna trial from its range or choices."""
    if space.choices is not None:
        return trial.suggest_categorical(name, space.choices)
    assert space.low is not None
    assert space.high is not None
    if space.integer:
        step = int(space.step or 1)
        return trial.suggest_int(name, int(space.low), int(space.high), step=step, log=space.log and step == 1)
    return trial.suggest_float(name, space.low, space.high, step=space.step, log=space.log and space.step is None)
