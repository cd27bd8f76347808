"""``riskmodel models`` and ``riskmodel ui``: the tracking store."""

from __future__ import annotations

from typing import Annotated

import typer

from riskmodel.cli.common import app, user_errors

models_app = typer.Typer(help="Trained models in the tracking store.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
@user_errors
def models_list(
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """List trained runs: run ID, experiment, endpoint, family, status and headline metrics."""
    from riskmodel.tracking import list_runs

    runs = list_runs(tracking_uri)
    if runs.empty:
        typer.echo("no trained models yet: run `riskmodel train`")
        return
    typer.echo(runs.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@models_app.command("verify")
@user_errors
def models_verify(
    uri: Annotated[
        str, typer.Argument(help="A model folder (MLflow's or riskmodel's), runs:/<id>/model or models:/<name>/<v>.")
    ],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI for runs:/ and models:/.")] = None,
) -> None:
    """Check every file of a model folder against what riskmodel writes, without running any of it.

    Run it before `mlflow.pyfunc.load_model` or `mlflow models serve`, which execute code from the
    folder. Exit 0 when it passes; exit 2 with one line per problem otherwise.
    """
    from riskmodel.tracking import verify_model

    verified = verify_model(uri, tracking_uri=tracking_uri)
    for line in verified.checked:
        typer.echo(f"ok  {line}")
    typer.echo(f"{uri}: passed; the {verified.model.endpoint.upper()} {verified.model.family} model is safe to load")


@app.command("ui")
@user_errors
def ui(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI (the better place for one holding a "
            "password: a command line is visible to every user of the machine), else sqlite:///mlruns/mlflow.db."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on. Only loopback addresses unless --allow-remote.")
    ] = "127.0.0.1",
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Listen on a non-loopback --host. MLflow's UI has no authentication: anyone who reaches it can "
            "read, change and delete every run.",
        ),
    ] = False,
) -> None:
    """Start the MLflow UI on the riskmodel tracking store (Ctrl-C or SIGTERM stops it and all its processes)."""
    from riskmodel.tracking import run_ui

    raise typer.Exit(
        run_ui(tracking_uri, port, host, allow_remote=allow_remote, announce=lambda line: typer.echo(line, err=True))
    )
