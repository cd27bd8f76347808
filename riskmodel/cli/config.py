"""``riskmodel config``: the experiment files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riskmodel.cli.common import app, user_errors

config_app = typer.Typer(help="Experiment configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of experiment YAML files."""
    import json

    from riskmodel.config import ExperimentConfig

    typer.echo(json.dumps(ExperimentConfig.model_json_schema(), indent=2))


@config_app.command("validate")
@user_errors
def config_validate(experiment: Annotated[Path, typer.Argument(help="Experiment YAML to check.")]) -> None:
    """Check an experiment file; print every problem with its key path, value and rule."""
    from riskmodel.config import load_experiment

    config = load_experiment(experiment)
    typer.echo(f"{experiment}: valid ({', '.join(config.endpoints)}; {', '.join(config.models.enabled())})")
