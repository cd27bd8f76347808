"""``riskmodel update``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riskmodel.cli.common import ModelOption, app, months_option, user_errors


@app.command("update")
@user_errors
def update_command(
    model: ModelOption,
    data: Annotated[
        Path, typer.Option(help="Labelled cohort of the new setting (.csv, .xlsx, .parquet), with outcomes.")
    ],
    method: Annotated[str, typer.Option(help="baseline, slope or refit (the updating ladder).")],
    out: Annotated[Path, typer.Option(help="Folder for the new model, update.json and update_performance.csv.")] = Path(
        "update"
    ),
    horizons: Annotated[
        str | None,
        typer.Option(help="Comma-separated months for O/E and the slopes. Default: the model's horizons."),
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples: the update redone in each (optimism).")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    register: Annotated[
        str | None,
        typer.Option(help="Register the new model under this name (default: the parent's, for a models:/ URI)."),
    ] = None,
    mapping: Annotated[Path | None, typer.Option(help="Column mapping YAML for the built-in contract.")] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (the model and the update run).")
    ] = None,
) -> None:
    """Update a saved model for a new setting where it is miscalibrated (van Houwelingen 2000).

    baseline: a new baseline hazard on the new patients, the risk score fixed. slope: the same
    plus a calibration slope on the risk score. refit: the same model, settings and features
    refitted on the new patients. A competing-risks (CIF) model: baseline shifts its cloglog CIF so
    the mean predicted CIF equals the Aalen-Johansen CIF at the reference horizon, slope fits a
    Fine-Gray intercept and slope on it, refit refits the cause-specific models. The new model
    keeps its lineage (parent, method, data digest) in its file and as MLflow tags under the
    "update" experiment. Parent and update are compared
    on the update data by bootstrap: the update redone in each resample, its optimism subtracted.

    Example: riskmodel update --model runs:/<run id>/model --data hospital_b.csv --method baseline
    """
    from riskmodel.workflow.update import update_model

    times = months_option(horizons)
    result = update_model(
        model,
        data,
        method=method,
        out=out,
        horizons=times,
        n_boot=n_boot,
        seed=seed,
        tracking_uri=tracking_uri,
        mapping=mapping,
        register=register,
    )
    for row, message in result.bad_rows.items():
        typer.echo(f"  row {row}: left out of the update: {message}", err=True)
    for r in result.performance.to_dict(orient="records"):
        if r["measure"] in ("harrell_c", "oe"):
            name = "Harrell C" if r["measure"] == "harrell_c" else f"O/E at {r['horizon']:g}"
            typer.echo(
                f"{name}: parent {r['parent']:.3g}, updated {r['updated_apparent']:.3g} "
                f"(optimism-corrected {r['updated_corrected']:.3g})",
                err=True,
            )
    where = result.registered_uri or result.model_uri or str(out / "model")
    typer.echo(
        f"{result.method} update of {model}: {result.n_patients} patients, {result.n_events} events "
        f"({len(result.bad_rows)} rows left out); new model {where}; run {result.run_id}",
        err=True,
    )
