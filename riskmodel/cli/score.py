"""``riskmodel score``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from riskmodel.cli.common import app, user_errors
from riskmodel.errors import require_writable


@app.command("score")
@user_errors
def score_command(
    model: Annotated[
        list[str],
        typer.Option(
            help="runs:/<run_id>/model, models:/<name>/<version>, or a model folder. Repeat it to score with "
            "several models (say an LC and an OS model): one result per patient and model."
        ),
    ],
    patients: Annotated[Path, typer.Option(help="Patients to score: .csv, .xlsx or .parquet (no outcomes needed).")],
    horizons: Annotated[
        str | None,
        typer.Option(help="Comma-separated months after the model's time zero. Default: the model's horizons."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write results to FILE.json or FILE.csv.")] = None,
    mapping: Annotated[Path | None, typer.Option(help="Column mapping YAML for the patients file.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI for runs:/ and models:/.")] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Also write one HTML page per patient into this folder: curves with uncertainty bands, SHAP "
            "waterfalls, inputs against the training ranges, and a D90 what-if curve. Pseudonymous IDs only."
        ),
    ] = None,
) -> None:
    """Score new patients with saved models: risk score, risk group, S(t) at each horizon, flags.

    Each patient is validated with the cohort contract (outcome columns not required). A bad row is
    reported with its row number and does not stop the other patients from being scored. Exit code
    is 0 if every patient was scored, 1 if some rows could not be, 2 for a user error.

    Example: riskmodel score --model runs:/<LC run>/model --model runs:/<OS run>/model
    --patients new.csv --report reports/
    """
    from riskmodel.errors import UserInputError
    from riskmodel.scoring import read_patients, write_scores
    from riskmodel.tracking import load_model

    if out is not None:
        require_writable(out, option="--out")

    times = None
    if horizons is not None:
        try:
            times = [float(h) for h in horizons.split(",") if h.strip()]
        except ValueError:
            raise typer.BadParameter(f"not a list of numbers: {horizons!r}", param_hint="--horizons") from None
    if report is not None:
        require_writable(report, folder=True, option="--report")
    risk_models = [load_model(m, tracking_uri=tracking_uri) for m in model]
    declared = {m.declaration is not None for m in risk_models}
    if len(declared) > 1:
        raise UserInputError("score models of declared cohorts and of the built-in contract in separate commands")
    table = read_patients(patients, mapping=mapping, declared=declared.pop())
    records: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for risk_model in risk_models:
        these = risk_model.score(table, times)
        records.extend(these)
        bad.extend(r for r in these if "error" in r)
        scored = len(these) - sum("error" in r for r in these)
        typer.echo(
            f"{scored} of {len(these)} patients scored ({risk_model.endpoint.upper()}, {risk_model.family}, "
            f"time zero: {risk_model.time_origin})",
            err=True,
        )
    text = write_scores(records, out)
    if out is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"results in {out}", err=True)
    for r in bad:
        which = f" by the {r['endpoint'].upper()} {r['family']} model" if len(risk_models) > 1 else ""
        typer.echo(f"  row {r['row']}: not scored{which}: {r['error']}", err=True)
    if report is not None:
        from riskmodel.reporting import write_patient_reports

        pages = write_patient_reports(risk_models, table, report)
        typer.echo(f"{len(pages)} patient report(s) in {report}/ (index.html lists them)", err=True)
    if bad:
        raise typer.Exit(1)
