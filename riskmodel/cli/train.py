"""``riskmodel train``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from riskmodel.cli.cluster import cluster_option
from riskmodel.cli.common import app, csv_option, stop_if_terminated, user_errors
from riskmodel.core.files import atomic_write_text
from riskmodel.errors import require_writable

if TYPE_CHECKING:
    import pandas as pd

    from riskmodel.config import ExperimentConfig
    from riskmodel.core.workers import WarmWorkers
    from riskmodel.workflow.train import RunResult, TrainResult


@app.command("train")
@user_errors
@cluster_option
def train_command(
    experiment: Annotated[
        Path | None,
        typer.Argument(
            help="Experiment YAML. Default: experiments/default.yaml (all families, both endpoints, "
            "3-month landmark) on the bundled cohort."
        ),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Cohort file replacing the experiment's data.")] = None,
    endpoints: Annotated[str | None, typer.Option(help="Comma-separated subset of the experiment's endpoints.")] = None,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated subset of the experiment's model families.")
    ] = None,
    summary_json: Annotated[
        Path | None,
        typer.Option(help="Write {parent_run_id, runs: [{endpoint, family, run_id, model_uri, metrics}]} here."),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db."),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Refuse (exit 2) a cohort below Riley et al.'s minimum sample size instead of warning."
        ),
    ] = False,
    by: Annotated[
        str | None,
        typer.Option(
            help="centre: internal-external cross-validation by the declared centre column (each centre held out "
            "in turn; C, slope and O/E pooled by random-effects meta-analysis). Also evaluation.by in the experiment."
        ),
    ] = None,
) -> None:
    """Train every model family for every endpoint, cross-validate, bootstrap-validate, and track each run.

    Before any fit it prints the evaluation plan to stderr (each model's CV scheme and bootstrap,
    sized to the endpoint's events unless the experiment's evaluation: section says otherwise; the
    number of fits; an estimated duration), then progress (plain lines when stderr is not a terminal).

    Prints the cohort's sample-size assessment (Riley et al. 2019), a table of cross-validated
    metrics (mean ± SD over folds) beside the bootstrap optimism-corrected Harrell C and calibration
    slope (with 95% intervals), and the run IDs. Compare runs with `riskmodel ui`; score new patients
    with `riskmodel score --model runs:/<run_id>/model`.
    """
    import json

    from riskmodel.config import default_experiment_path, load_experiment

    if summary_json is not None:
        require_writable(summary_json, option="--summary-json")  # before training, not after
    path = experiment or default_experiment_path()
    config = load_experiment(path)
    if by is not None or config.evaluation.by is not None:
        from riskmodel.cli.by_centre import train_by_centre

        return train_by_centre(
            config,
            by,
            data,
            csv_option(endpoints, "--endpoints"),
            csv_option(models, "--models"),
            tracking_uri,
            summary_json,
        )
    kwargs: dict[str, Any] = {
        "data": data,
        "endpoints": csv_option(endpoints, "--endpoints"),
        "models": csv_option(models, "--models"),
        "tracking_uri": tracking_uri,
        "strict": strict,
    }
    result = train_with_progress(config, kwargs)
    print_result(result)
    typer.echo(f"\nparent run {result.parent_run_id} in {result.tracking_uri}; models:")
    for run in result.runs:
        typer.echo(f"  {run.endpoint.upper()} {run.family:<4} {run.model_uri}")
    typer.echo("score with: riskmodel score --model <model URI> --patients FILE   (compare runs: riskmodel ui)")
    if summary_json:
        atomic_write_text(summary_json, json.dumps(result.summary(), indent=2, allow_nan=False))
        typer.echo(f"summary written to {summary_json}")


def warm_workers(config: ExperimentConfig, kwargs: dict[str, Any]) -> WarmWorkers | None:
    """The worker processes a small cohort's models will be developed on, started now, so that their
    imports run while this process loads (:mod:`riskmodel.core.workers`); None on a Dask cluster,
    on one core, or for a single model. ``train`` ends them if it develops the models otherwise."""
    import os

    from riskmodel.core.parallel import current_cluster
    from riskmodel.core.workers import WarmWorkers

    endpoints = kwargs.get("endpoints") or config.endpoints
    families = kwargs.get("models") or list(config.models.enabled())
    n = min(os.cpu_count() or 1, len(endpoints) * len(families))
    if current_cluster() is not None or n < 2:
        return None
    return WarmWorkers(n, "riskmodel.workflow.families")


def train_with_progress(config: ExperimentConfig, kwargs: dict[str, Any]) -> TrainResult:
    """``train`` with its plan and progress on stderr: a bar on a terminal, plain lines otherwise."""
    import sys

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    kwargs = {**kwargs, "workers": warm_workers(config, kwargs)}  # starting before this command's own imports
    from riskmodel.workflow import train
    from riskmodel.workflow.plan import ProgressLines

    console = Console(stderr=True)
    if not console.is_terminal:
        # redirected: the plan and plain progress lines (every ~10 s or 10 % of the fits, with an ETA;
        # a "still working" line after a minute of silence)
        lines = ProgressLines(sys.stderr)

        def plain(done: int, total: int, label: str) -> None:
            stop_if_terminated()
            lines(done, total, label)

        with lines:
            result = train(config, progress=plain, announce=lambda text: typer.echo(text, err=True), **kwargs)
    else:
        with Progress(
            TextColumn("{task.description:<14}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("loading", total=None)

            def progress(done: int, total: int, label: str) -> None:
                stop_if_terminated()
                bar.update(task, completed=done, total=total, description=label)

            result = train(config, progress=progress, announce=bar.console.print, **kwargs)
    return result


def print_result(result: TrainResult) -> None:
    """The notes, the missing data, the metrics table and the Cox hazard-ratio tables."""
    for note in result.notes:
        typer.echo(f"note: {note}")
    if result.missing_data is not None:
        typer.echo(
            "\nMissing values in the cohort file (patients before any complete-case exclusion; % by event and centre):"
        )
        shown = result.missing_data[result.missing_data["missing"] > 0]
        typer.echo(shown.drop(columns=["handling"]).to_string(index=False))
        for row in shown.itertuples():
            typer.echo(f"  {row.covariate}: {row.handling}")
    short = ", ".join(e.upper() for e in result.exploratory)
    caveat = f"EXPLORATORY: below Riley et al.'s minimum sample size for {short}; " if short else ""
    typer.echo(
        f"\nExperiment {result.experiment!r}: cross-validated metrics, mean ± SD over folds "
        f"({caveat}EPV = events per model parameter)"
    )
    typer.echo(result.table().to_string(index=False))
    for run in result.runs:
        if run.hazard_ratios is not None:
            print_hazard_ratios(run, run.hazard_ratios)


def print_hazard_ratios(run: RunResult, table: pd.DataFrame) -> None:
    """One Cox run's unpenalised (or pooled) hazard-ratio table, with its cautions."""
    epv = run.n_events / max(run.n_parameters, 1)
    caveats = [table.attrs.get("note", "")]
    if epv < 10:
        caveats.append(f"{epv:.1f} events per parameter (< 10): unstable, exploratory")
    typer.echo(
        f"\n{run.endpoint.upper()} Cox hazard ratios, unpenalised fit on the same features "
        f"({run.n_events} events, {run.n_parameters} parameters)"
    )
    if table.attrs.get("method"):
        typer.echo(f"  {table.attrs['method']}")
    for caveat in filter(None, caveats):
        typer.echo(f"  caution: {caveat}")
    typer.echo(format_hazard_ratios(table))


def format_hazard_ratios(table: pd.DataFrame) -> str:
    """HR (95% CI) and p per feature, as printed by ``riskmodel train``."""
    lines = []
    for name, row in table.iterrows():
        ci = (
            f"({row['hr_lower_95']:.3g}-{row['hr_upper_95']:.3g})"
            if math.isfinite(row["hr_lower_95"]) and math.isfinite(row["hr_upper_95"])
            else "(not estimable)"
        )
        p = "n/a" if not math.isfinite(row["p"]) else ("<0.001" if row["p"] < 0.001 else f"{row['p']:.3f}")
        fmi = f"   fmi {row['fmi']:.2f}" if "fmi" in row.index and math.isfinite(row["fmi"]) else ""
        lines.append(f"  {name:<28} HR {row['hr']:>8.3g} {ci:<22} p {p}{fmi}")
    return "\n".join(lines)
