"""``riskmodel serve`` and ``riskmodel calculator``: the calculators."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riskmodel.cli.common import app, user_errors


@app.command("serve")
@user_errors
def serve_command(
    model: Annotated[
        list[str],
        typer.Option(help="A model folder, runs:/<id>/model or models:/<name>/<v>. Repeat it (say LC and OS)."),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on. Only loopback addresses unless --allow-remote.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Listen on a non-loopback --host. The calculator has no authentication: put it behind your own.",
        ),
    ] = False,
    allow_extrapolation: Annotated[
        bool,
        typer.Option(
            "--allow-extrapolation",
            help="Give a risk group to a patient outside the development data (the status still says so).",
        ),
    ] = False,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI for runs:/ and models:/.")] = None,
) -> None:
    """A web calculator: a form from the models' inputs and a JSON API (POST /api/predict; docs at /docs).

    Every model folder is verified in full first (as `riskmodel models verify`); a tampered folder
    stops the start (exit 2). The answer per model: status (scored, outside the development data,
    refused by the landmark rule, error), curve and horizon probabilities with bands, risk group,
    SHAP contributions with clinical labels and the D90 what-if. No patient value is logged or kept.
    """
    from riskmodel.serving import serve

    serve(
        model,
        host=host,
        port=port,
        allow_remote=allow_remote,
        allow_extrapolation=allow_extrapolation,
        tracking_uri=tracking_uri,
        announce=lambda line: typer.echo(line, err=True),
    )


@app.command("calculator")
@user_errors
def calculator_command(
    model: Annotated[
        str, typer.Option(help="A Cox or Fine-Gray model: folder, runs:/<id>/model or models:/<name>/<v>.")
    ],
    out: Annotated[Path, typer.Option(help="The HTML file to write (one self-contained page, works offline).")],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI for runs:/ and models:/.")] = None,
) -> None:
    """Export a Cox or Fine-Gray model as one offline HTML calculator (coefficients, encoding, baseline, ranges inline).

    Its numbers equal the Python model's to 1e-9 (a Fine-Gray model: the CIF of the event of
    interest). The forest and boosting, and the cause-specific Cox competing model, cannot be
    written as one formula: use `riskmodel serve` for them.
    """
    from riskmodel.errors import require_writable
    from riskmodel.serving.calculator import write_calculator
    from riskmodel.tracking import load_model

    require_writable(out, option="--out")
    path = write_calculator(load_model(model, tracking_uri=tracking_uri), out)
    typer.echo(f"calculator in {path} (open it in a browser; it needs no network)", err=True)
