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


@app.command("ui")
@user_errors
def ui(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """Start the MLflow UI on the riskmodel tracking store (Ctrl-C to stop)."""
    from riskmodel.tracking import resolve_tracking_uri, run_ui

    typer.echo(f"MLflow UI on http://127.0.0.1:{port} for {resolve_tracking_uri(tracking_uri)}")
    raise typer.Exit(run_ui(tracking_uri, port))
