"""``riskmodel config``: the experiment files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from riskmodel.cli.common import app, user_errors

if TYPE_CHECKING:
    from riskmodel.config import ExperimentConfig

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
def config_validate(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML to check.")],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Also check the experiment's cohort declaration against this data file: every column found, "
            "every value of its declared kind, levels, codes and ranges; the landmark and horizons; the sample size."
        ),
    ] = None,
) -> None:
    """Check an experiment file; print every problem with its key path, value and rule.

    With --data FILE the declaration is held against the data as `riskmodel train` would read it,
    without training: the patients and events per endpoint, the covariates left out (constant or
    all missing), the missing values and their handling, and Riley et al.'s minimum sample size.

    Exit codes: 0 valid; 2 a problem (each on one line).
    """
    from riskmodel.config import load_experiment

    config = load_experiment(experiment)
    typer.echo(f"{experiment}: valid ({', '.join(config.endpoints)}; {', '.join(config.models.enabled())})")
    if data is not None:
        _check_against_data(config, data)


def _check_against_data(config: ExperimentConfig, data: Path) -> None:
    """Load, prepare and size the cohort as ``train`` would; print what was found."""
    from riskmodel.cohort.declared import missing_data_table
    from riskmodel.errors import own_warnings_silenced
    from riskmodel.workflow.prepare import drop_uninformative, load_cohort, override, prepare_endpoints, sample_size

    config = override(config, data=data, endpoints=None, models=None)
    with own_warnings_silenced():
        cohort = load_cohort(config)
    for warning in cohort.warnings:
        typer.echo(str(warning))
    config, dropped = drop_uninformative(config, cohort)
    typer.echo(f"{data}: {cohort.summary()}")
    for rule in cohort.competing_rules:  # the competing-event rule and the patients it moved (counts)
        typer.echo(str(rule))
    for note in dropped:
        typer.echo(f"note: {note}")
    missing = missing_data_table(cohort)
    if len(missing) and missing["missing"].sum():
        for row in missing[missing["missing"] > 0].itertuples():
            typer.echo(f"missing: {row.covariate} {row.missing} ({row.percent:g}%), {row.policy}: {row.handling}")
    for endpoint, prepared in prepare_endpoints(config, cohort).items():
        for note in prepared.notes():
            typer.echo(f"note: {note}")
        typer.echo(f"{endpoint.upper()} sample size: {sample_size(config, prepared).summary()}")
    typer.echo(f"{data}: the data fit the experiment; `riskmodel train` can run")
