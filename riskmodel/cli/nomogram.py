"""``riskmodel nomogram``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from riskmodel.cli.common import HorizonsOption, ModelOption, TrackingUriOption, app, months_option, user_errors
from riskmodel.errors import require_writable


@app.command("nomogram")
@user_errors
def nomogram_command(
    model: ModelOption,
    horizons: HorizonsOption = None,
    out: Annotated[
        Path, typer.Option(help="The figure: .svg, .png or .pdf; the points table goes beside it as <name>_points.csv.")
    ] = Path("nomogram.svg"),
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Draw a Cox or Fine-Gray model's nomogram (the rms layout) and write its points table.

    A 0-100 points axis; one axis per predictor in clinical units (a spline drawn as its
    non-linear point scale, a log-transformed input on its own scale); total points; the linear
    predictor; one survival-probability axis per horizon (a Fine-Gray model: one axis per horizon
    of the event of interest's cumulative incidence; the competing event's is not drawn). Points
    are scaled as rms::nomogram scales them; axes cover the training ranges only. Forest and
    boosting models, and cause-specific Cox competing-risks models, have no nomogram (their
    predictions are not sums of per-predictor points): use riskmodel score.

    Example: riskmodel nomogram --model runs:/<LC run>/model --horizons 6,12 --out lc_nomogram.pdf
    """
    from riskmodel.reporting.nomogram import check_nomogram_model
    from riskmodel.reporting.nomogram_plot import write_nomogram
    from riskmodel.tracking import load_model

    times = months_option(horizons)
    require_writable(out, option="--out")
    risk_model = load_model(model, tracking_uri=tracking_uri)
    form = check_nomogram_model(risk_model)
    figure, table = write_nomogram(risk_model, out, times)
    kind = "Cox" if form.outcome == "survival" else "Fine-Gray"
    typer.echo(
        f"nomogram of the {risk_model.endpoint.upper()} {kind} model in {figure}; points table in {table}", err=True
    )
