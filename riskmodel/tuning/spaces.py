"""Search spaces: each family's default space (from the model registry), the experiment's
``tune.space.<family>`` overrides, and how a trial draws from them."""

from __future__ import annotations

from typing import Any

from riskmodel.config import ExperimentConfig
from riskmodel.errors import UserInputError
from riskmodel.models.registry import SPECS, ParamSpace, spec

__all__ = ["DEFAULT_SPACES", "check_space", "search_space", "suggest"]

DEFAULT_SPACES: dict[str, dict[str, ParamSpace]] = {name: dict(s.space) for name, s in SPECS.items()}


def search_space(config: ExperimentConfig, family: str) -> dict[str, ParamSpace]:
    """The family's default space with the experiment's ``tune.space.<family>`` entries applied."""
    return {**spec(family).space, **config.tune.space.get(family, {})}


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
