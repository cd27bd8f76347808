"""``riskmodel tune``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from riskmodel.cli.cluster import cluster_option
from riskmodel.cli.common import app, stop_if_terminated, user_errors

if TYPE_CHECKING:
    from riskmodel.tuning.study import TuneResult


@app.command("tune")
@user_errors
@cluster_option
def tune_command(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML; its tune: section sets metric and spaces.")],
    trials: Annotated[int, typer.Option(help="Total finished (complete or pruned) trials the study should hold.")],
    model: Annotated[
        str | None, typer.Option(help="Model family to tune. Default: the experiment's first enabled family.")
    ] = None,
    endpoint: Annotated[str | None, typer.Option(help="Endpoint to tune for. Default: the experiment's first.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop starting new trials after this many seconds.")] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL. Default: sqlite:///mlruns/optuna.db beside the MLflow store. Use "
            "postgresql://user:password@host/db to share one study between workers on several machines."
        ),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="Default: <experiment>-<endpoint>-<family>. The same name resumes it.")
    ] = None,
    n_jobs: Annotated[int, typer.Option(help="Trials run in parallel in this process (threads).")] = 1,
    register: Annotated[
        str | None, typer.Option(help="Register the best model in the MLflow model registry under NAME.")
    ] = None,
    nested_cv: Annotated[
        int,
        typer.Option(
            help="Also estimate tuned performance honestly: K outer folds, each tuning from scratch on its "
            "training part (trials/2 inner trials, at least 5). 0 = off."
        ),
    ] = 0,
    data: Annotated[Path | None, typer.Option(help="Cohort file replacing the experiment's data.")] = None,
    worker_index: Annotated[
        int,
        typer.Option(
            help="With several workers on one study, give each its own index: the sampler is seeded with the "
            "experiment's seed + 1000 × index (logged), so the same command repeats the same trials and "
            "workers do not propose the same parameters."
        ),
    ] = 0,
    tracking_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db."),
    ] = None,
) -> None:
    """Tune one family's hyperparameters with Optuna; every trial is an MLflow run.

    The objective (tune.metric: uno_c, ibs or td_auc) is measured on held-out folds of repeated
    stratified cross-validation, the same folds for every trial; poor trials are pruned after a
    fold. Running the same command again resumes the study: --trials is the total. Ctrl-C ends the
    running trial as FAIL and keeps the finished ones. The best trial is refitted on all patients
    and logged as the study's model.

    Two machines: start a PostgreSQL server and an MLflow tracking server, then on each machine run
    MLFLOW_TRACKING_URI=http://tracking-host:5000 riskmodel tune experiments/default.yaml
    --trials 60 --storage postgresql://user:password@db-host/optuna
    """
    from riskmodel.config import load_experiment
    from riskmodel.tuning import tune

    config = load_experiment(experiment)

    def progress(done: int, total: int) -> None:
        stop_if_terminated()
        typer.echo(f"  {done}/{total} trials finished", err=True)

    result = tune(
        config,
        trials=trials,
        family=model,
        endpoint=endpoint,
        timeout=timeout,
        storage=storage,
        study_name=study_name,
        n_jobs=n_jobs,
        register=register,
        nested_cv=nested_cv,
        tracking_uri=tracking_uri,
        data=data,
        progress=progress,
        worker=worker_index,
    )
    print_result(result)


def print_result(result: TuneResult) -> None:
    """The study, its best trial and model, the nested CV, and the caveats."""
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(
        f"study {result.study_name} ({result.storage}): {result.finished} finished trials, {result.failed} failed; "
        f"{result.ran_here} run now"
    )
    if result.best_value is not None:
        best = f"{result.best_value:.4f} at trial {result.best_trial}"
        typer.echo(f"best {result.metric} (cross-validated, {result.direction}): {best}")
        if result.default_value is not None:
            typer.echo(f"  the experiment's own parameters (trial 0): {result.default_value:.4f}")
        typer.echo("  " + ", ".join(f"{k}={v}" for k, v in result.best_params.items()))
        typer.echo(f"model: {result.model_uri}" + (f"  registered as {result.registered}" if result.registered else ""))
    if result.nested is not None:
        folds = result.nested
        names = ("Wolbers C", "Wolbers C (IPCW)") if result.competing else ("Harrell C", "Uno C")
        typer.echo(
            f"nested CV of the whole tuning ({len(folds)} outer folds): {names[0]} {folds['harrell_c'].mean():.3f} "
            f"± {folds['harrell_c'].std():.3f}, {names[1]} {folds['uno_c'].mean():.3f} ± {folds['uno_c'].std():.3f}"
        )
    caveat = (
        " Exploratory: the cohort is below Riley et al.'s minimum sample size; the tuned gain may be noise."
        if result.exploratory
        else ""
    )
    typer.echo(f"parent run {result.parent_run_id}; compare the trials with `riskmodel ui`.{caveat}")
