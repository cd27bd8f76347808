"""The ``riskmodel`` command line. It only parses options and calls library functions."""

from __future__ import annotations

import functools
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from riskmodel import __version__
from riskmodel._atomic import atomic_write_text
from riskmodel.errors import CohortValidationError, RiskModelError, RiskModelWarning, require_writable

app = typer.Typer(
    name="riskmodel",
    help="Outcome prediction and risk modelling for I-125 seed brachytherapy (local control and "
    "overall survival). Figures from small cohorts are exploratory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(fn: F) -> F:
    """Turn riskmodel's own errors into a message on stderr and their exit code; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RiskModelError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; runs already finished are kept, the current one is marked KILLED", err=True)
            raise typer.Exit(143 if _TERMINATED else 130) from None

    return wrapper  # type: ignore[return-value]


_TERMINATED = False


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (kill, a scheduler's timeout) ends the work like Ctrl-C: runs are closed, not left RUNNING."""
    global _TERMINATED
    _TERMINATED = True
    raise KeyboardInterrupt


def _stop_if_terminated() -> None:
    """Raise again at a safe point if SIGTERM came. Python prints and drops an exception raised
    while it runs a finaliser (a weakref callback, ``__del__``), so the handler's own raise can be
    lost; long work calls this between steps (its progress callback)."""
    if _TERMINATED:
        raise KeyboardInterrupt


def _version(value: bool) -> None:
    if value:
        typer.echo(f"riskmodel {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Show the version and exit.",
        ),
    ] = None,
) -> None:
    """riskmodel: survival models for seed brachytherapy cohorts."""


@app.command("validate-data")
@_user_errors
def validate_data(
    file: Annotated[
        Path | None,
        typer.Argument(help="Cohort file: .csv, .tsv, .xlsx or .parquet. Default: the bundled reconstructed cohort."),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            help="YAML file mapping your column names and values to the canonical ones (see data/mapping.example.yaml)."
        ),
    ] = None,
    response_rule: Annotated[
        str | None,
        typer.Option(
            help="How to derive response_3mo from measurements: 'recist' (sum of longest diameters) or "
            "'volume' (the study's rule). Needed only when both kinds of measurement are present."
        ),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when there are warnings but no errors.")] = False,
    scoring: Annotated[
        bool, typer.Option(help="Check new patients for scoring: outcome columns are not required.")
    ] = False,
) -> None:
    """Check a cohort file against the contract and print every problem at once.

    Each problem names the file, row (as in a spreadsheet: header = row 1), column, value and rule.
    Raw clinical fields are derived on the way: dates become intervals and outcomes, a TNM string
    becomes T/N/M, three diameters become a volume, two measurements become a response.

    Exit codes: 0 valid; 1 warnings only (with --strict); 2 errors.
    """
    from riskmodel.cohort import bundled_cohort_path, load

    if response_rule not in (None, "recist", "volume"):
        raise typer.BadParameter("must be 'recist' or 'volume'", param_hint="--response-rule")
    path = file or bundled_cohort_path()
    typer.echo(f"Validating {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RiskModelWarning)  # shown below, once, in the report
        try:
            cohort = load(
                path,
                mapping=mapping,
                response_rule=response_rule,  # type: ignore[arg-type]
                require_outcomes=not scoring,
            )
        except CohortValidationError as exc:
            for problem in (*exc.problems, *exc.warnings):
                typer.echo(f"  {problem}")
            typer.echo(
                f"{len(exc.problems)} errors, {len(exc.warnings)} warnings: NOT VALID "
                "(rows are numbered as in a spreadsheet: header = row 1)"
            )
            raise typer.Exit(2) from None
    typer.echo(f"  {cohort.summary()}")
    if cohort.derived:
        typer.echo(f"  derived: {', '.join(cohort.derived)}")
    if cohort.ignored:
        typer.echo(f"  ignored columns (not in the contract): {', '.join(cohort.ignored)}")
    for problem in cohort.warnings:
        typer.echo(f"  {problem}")
    n = len(cohort.warnings)
    typer.echo(f"0 errors, {n} warnings: {'valid' if n == 0 else 'valid, with warnings to review'}")
    if n and strict:
        raise typer.Exit(1)


@app.command("data-dictionary")
def data_dictionary() -> None:
    """Print the cohort contract: every canonical column, unit, type, range and rule (Markdown)."""
    from riskmodel.cohort import contract_markdown

    typer.echo(contract_markdown(), nl=False)


@app.command("synthetic")
@_user_errors
def synthetic(
    out: Annotated[Path, typer.Argument(help="Output file: .csv or .parquet.")],
    n: Annotated[int, typer.Option(help="Number of patients (36 to 1,000,000 and beyond).", min=1)] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same cohort.")] = 0,
) -> None:
    """Write a synthetic cohort from the documented data-generating process (known true effects)."""
    from riskmodel.cohort import synthetic as synth
    from riskmodel.cohort.reconstruct import write_csv
    from riskmodel.errors import UserInputError

    if out.suffix.lower() not in (".csv", ".parquet"):
        raise UserInputError(f"{out}: choose a .csv or .parquet output file")
    frame = synth.generate(n, seed)
    if out.suffix.lower() == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        write_csv(frame, out)
    typer.echo(f"wrote {out}: {n} synthetic patients (seed {seed})")


def _csv_option(value: str | None, name: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    if not items:
        raise typer.BadParameter("give a comma-separated list", param_hint=name)
    return items


@app.command("train")
@_user_errors
def train_command(
    experiment: Annotated[
        Path | None,
        typer.Argument(
            help="Experiment YAML. Default: experiments/default.yaml (all families, both endpoints, "
            "3-month landmark) on the bundled cohort."
        ),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Cohort file replacing the experiment's data.")] = None,
    endpoints: Annotated[str | None, typer.Option(help="Comma-separated subset of lc,os.")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated subset of cox,rsf,gbm.")] = None,
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
) -> None:
    """Train every model family for every endpoint, cross-validate, bootstrap-validate, and track each run.

    Prints the cohort's sample-size assessment (Riley et al. 2019), a table of cross-validated
    metrics (mean ± SD over repeats) beside the bootstrap optimism-corrected Harrell C and calibration
    slope (with 95% intervals), and the run IDs. Compare runs with `riskmodel ui`; score new patients
    with `riskmodel score --model runs:/<run_id>/model`.
    """
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from riskmodel.config import default_experiment_path, load_experiment
    from riskmodel.training import format_hazard_ratios, train

    if summary_json is not None:
        require_writable(summary_json, option="--summary-json")  # before training, not after
    path = experiment or default_experiment_path()
    config = load_experiment(path)
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("loading", total=None)

        def progress(done: int, total: int, label: str) -> None:
            _stop_if_terminated()
            bar.update(task, completed=done, total=total, description=label)

        result = train(
            config,
            data=data,
            endpoints=_csv_option(endpoints, "--endpoints"),
            models=_csv_option(models, "--models"),
            tracking_uri=tracking_uri,
            progress=progress,
            strict=strict,
        )
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(
        f"\nExperiment {result.experiment!r}: cross-validated metrics, mean ± SD over repeats "
        "(EXPLORATORY: small cohort; EPV = events per model parameter)"
    )
    typer.echo(result.table().to_string(index=False))
    for run in result.runs:
        if run.hazard_ratios is not None:
            epv = run.n_events / max(run.n_parameters, 1)
            caveats = [run.hazard_ratios.attrs.get("note", "")]
            if epv < 10:
                caveats.append(f"{epv:.1f} events per parameter (< 10): unstable, exploratory")
            typer.echo(
                f"\n{run.endpoint.upper()} Cox hazard ratios, unpenalised fit on the same features "
                f"({run.n_events} events, {run.n_parameters} parameters)"
            )
            for caveat in filter(None, caveats):
                typer.echo(f"  caution: {caveat}")
            typer.echo(format_hazard_ratios(run.hazard_ratios))
    typer.echo(f"\nparent run {result.parent_run_id} in {result.tracking_uri}; models:")
    for run in result.runs:
        typer.echo(f"  {run.endpoint.upper()} {run.family:<4} {run.model_uri}")
    typer.echo("score with: riskmodel score --model <model URI> --patients FILE   (compare runs: riskmodel ui)")
    if summary_json:
        atomic_write_text(summary_json, json.dumps(result.summary(), indent=2, allow_nan=False))
        typer.echo(f"summary written to {summary_json}")


@app.command("score")
@_user_errors
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
    from riskmodel.scoring import load_model, read_patients, write_scores

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
    table = read_patients(patients, mapping=mapping)
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
        from riskmodel.patient_report import write_patient_reports

        pages = write_patient_reports(risk_models, table, report)
        typer.echo(f"{len(pages)} patient report(s) in {report}/ (index.html lists them)", err=True)
    if bad:
        raise typer.Exit(1)


@app.command("tune")
@_user_errors
def tune_command(
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML; its tune: section sets metric and spaces.")],
    trials: Annotated[int, typer.Option(help="Total finished (complete or pruned) trials the study should hold.")],
    model: Annotated[
        str | None, typer.Option(help="Family to tune: cox, rsf or gbm. Default: the experiment's first.")
    ] = None,
    endpoint: Annotated[str | None, typer.Option(help="lc or os. Default: the experiment's first.")] = None,
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
    from riskmodel.tune import tune

    config = load_experiment(experiment)

    def progress(done: int, total: int) -> None:
        _stop_if_terminated()
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
    )
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
        typer.echo(
            f"nested CV of the whole tuning ({len(folds)} outer folds): Harrell C {folds['harrell_c'].mean():.3f} "
            f"± {folds['harrell_c'].std():.3f}, Uno C {folds['uno_c'].mean():.3f} ± {folds['uno_c'].std():.3f}"
        )
    typer.echo(f"parent run {result.parent_run_id}; compare the trials with `riskmodel ui`. Exploratory.")


@app.command("report")
@_user_errors
def report_command(
    out: Annotated[Path, typer.Option(help="Folder for report.html (self-contained) and the tables as CSV.")],
    data: Annotated[Path | None, typer.Option(help="Cohort file. Default: the bundled reconstructed cohort.")] = None,
    endpoints: Annotated[str, typer.Option(help="Comma-separated subset of lc,os.")] = "lc,os",
    mapping: Annotated[Path | None, typer.Option(help="Column mapping YAML for the cohort file.")] = None,
    cutoff: Annotated[
        list[str] | None,
        typer.Option(
            help="Another cut-off for a two-group factor, e.g. --cutoff d90_gy=120 (repeatable). Factors: age, "
            "seed_activity_mci, lesion_volume_cm3, d90_gy, recurrence_interval_months."
        ),
    ] = None,
) -> None:
    """Write the classical survival report: KM curves, log-rank tables, Cox, PH checks, competing risks.

    The univariate tables follow the layout of the study's Tables 1 and 2; rows and models involving
    the 3-month response start at the 3-month landmark. For the bundled cohort the published figures
    are shown beside the results. The report holds counts and estimates only, no patient rows.
    """
    from riskmodel.cohort import bundled_cohort_path, load
    from riskmodel.report import build_report

    cutoffs: dict[str, float] = {}
    for item in cutoff or []:
        name, _, value = item.partition("=")
        try:
            cutoffs[name.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"expected NAME=NUMBER, got {item!r}", param_hint="--cutoff") from None
    cohort = load(data or bundled_cohort_path(), mapping=mapping)
    path = build_report(cohort, out, endpoints=_csv_option(endpoints, "--endpoints") or [], cutoffs=cutoffs or None)
    typer.echo(f"report written to {path}, with tables/*.csv and summary.json beside it")


config_app = typer.Typer(help="Experiment configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of experiment YAML files."""
    import json

    from riskmodel.config import ExperimentConfig

    typer.echo(json.dumps(ExperimentConfig.model_json_schema(), indent=2))


@config_app.command("validate")
@_user_errors
def config_validate(experiment: Annotated[Path, typer.Argument(help="Experiment YAML to check.")]) -> None:
    """Check an experiment file; print every problem with its key path, value and rule."""
    from riskmodel.config import load_experiment

    config = load_experiment(experiment)
    typer.echo(f"{experiment}: valid ({', '.join(config.endpoints)}; {', '.join(config.models.enabled())})")


models_app = typer.Typer(help="Trained models in the tracking store.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
@_user_errors
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
@_user_errors
def ui(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """Start the MLflow UI on the riskmodel tracking store (Ctrl-C to stop)."""
    from riskmodel.tracking import resolve_tracking_uri, run_ui

    typer.echo(f"MLflow UI on http://127.0.0.1:{port} for {resolve_tracking_uri(tracking_uri)}")
    raise typer.Exit(run_ui(tracking_uri, port))


_default_showwarning = warnings.showwarning


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """riskmodel's own warnings as plain "warning: ..." lines, without Python's file and source line."""
    if issubclass(category, RiskModelWarning):
        text = str(message)
        typer.echo(text if text.startswith("warning") else f"warning: {text}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def _unraisable(info: Any) -> None:
    """Drop the KeyboardInterrupt of a SIGTERM that landed in a finaliser (re-raised at the next
    step, see :func:`_stop_if_terminated`); report anything else as Python does."""
    if _TERMINATED and info.exc_type is KeyboardInterrupt:
        return
    sys.__unraisablehook__(info)


def run() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.unraisablehook = _unraisable
    warnings.showwarning = _show_warning
    sys.exit(app())
