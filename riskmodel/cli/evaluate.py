"""``riskmodel evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riskmodel.cli.common import HorizonsOption, app, months_option, user_errors


@app.command("evaluate")
@user_errors
def evaluate_command(
    model: Annotated[
        list[str],
        typer.Option(help="runs:/<run_id>/model, models:/<name>/<version>, or a model folder (repeatable)."),
    ],
    data: Annotated[
        Path, typer.Option(help="Labelled cohort the models never saw (.csv, .xlsx, .parquet), with outcomes.")
    ],
    horizons: HorizonsOption = None,
    out: Annotated[
        Path, typer.Option(help="Folder for validation_report.html, metrics.json and the CSV tables.")
    ] = Path("evaluation"),
    development_data: Annotated[
        Path | None,
        typer.Option(
            help="The development patients (never kept in a model file), for the membership model's C "
            "(Debray et al. 2015). Without it that measure is left out, and the report says why."
        ),
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of the validation patients for the CIs.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    mapping: Annotated[Path | None, typer.Option(help="Column mapping YAML for the built-in contract.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (models and the evaluate run).")] = None,
) -> None:
    """Validate saved models on a labelled cohort they never saw (external validation).

    Each model reads the cohort through its own declaration, outcomes required, from its own
    landmark and time zero (a competing-risks model: its cause, from the endpoint's competing event,
    and every measure of the CIF: Wolbers C, AUC and IPCW Brier of the CIF against the
    Aalen-Johansen null, O/E, slope and ICI of the CIF, competing decision curves). For each
    model and horizon: Harrell and Uno C, time-dependent AUC;
    Brier, IBS and their scaled versions against the Kaplan-Meier null; O/E, calibration slope,
    ICI/E50/E90 and calibration plots; decision curves; case-mix against the training aggregates
    kept in the model file. 95% CIs by bootstrap of the patients (the model fixed). A row that
    cannot be read is reported by row and left out. Tracked as an MLflow run under the
    "evaluate" experiment, linked to the model's development run.

    Example: riskmodel evaluate --model runs:/<run id>/model --data other_hospital.csv --out eval/
    """
    from riskmodel.workflow.evaluate import evaluate_models

    times = months_option(horizons)
    evaluated = evaluate_models(
        model,
        data,
        horizons=times,
        out=out,
        development_data=development_data,
        n_boot=n_boot,
        seed=seed,
        tracking_uri=tracking_uri,
        mapping=mapping,
    )
    for e in evaluated:
        for row, message in e.bad_row_messages.items():
            typer.echo(f"  row {row}: left out of the {e.title} evaluation: {message}", err=True)
        est = e.validation.estimates()
        oe = ", ".join(f"O/E at {h:g} = {est[f'oe_{h:g}']:.3g}" for h in e.validation.horizons)
        events, c = f"{e.validation.n_events} events", "Harrell C"
        if e.competing is not None:  # a CIF model: its events of interest and competing events, Wolbers' C
            words = e.competing
            events = f"{e.validation.n_events} {words.event} events, {e.n_competing} competing ({words.competing})"
            c, oe = "Wolbers C", f"O/E of the CIF: {oe.replace('O/E at ', 'at ')}"
        typer.echo(
            f"{e.title}: {e.validation.n_patients} patients, {events} "
            f"({e.bad_rows} rows left out); {c} = {est['harrell_c']:.3f}, {oe}; run {e.run_id}",
            err=True,
        )
    typer.echo(f"report in {out / 'validation_report.html'}", err=True)
