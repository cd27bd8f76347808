"""Accuracy on public data: riskmodel as ``riskmodel init`` declares it, beside plain baselines on the same folds.

For each public survival dataset (scikit-survival's and lifelines' bundled copies, no download):

1. export it to a CSV with an ``id`` column, the time and the event status;
2. ``riskmodel init`` (the CLI, in a subprocess) declares every column as a covariate;
3. the only edit to the YAML it writes is ``evaluation.bootstrap: 0`` (the benchmark compares
   cross-validated C; the bootstrap would only cost time), plus ``n_repeats`` when ``--repeats`` is
   given; every edited line is recorded, and the run stops if a line to edit is not there;
4. ``riskmodel train --models cox,rsf,gbm`` (the CLI) cross-validates each family; its summary's
   ``harrell_c_mean`` is riskmodel's figure;
5. the folds are rebuilt in this process by riskmodel's own splitter
   (:func:`riskmodel.validation.crossval.stratified_splitter`, same event vector, settings and
   seed), and checked: riskmodel's Cox pipeline refitted on the first fold must reproduce that
   fold's Harrell C in the run's ``cv_folds.csv``;
6. on those folds, the baselines are fitted on every covariate one-hot encoded (a categorical's
   missing value is a level of its own), numeric missing values filled with the training fold's
   median for scikit-survival and left as NaN for xgboost:

   * ``CoxPHSurvivalAnalysis(ties="efron")`` on standardised columns: unpenalised, or, for a
     dataset where some fold fails (separation), with the smallest ridge ``alpha`` of 1 (a
     ``CoxnetSurvivalAnalysis`` of ``alpha`` 0.001 fails there too);
   * ``RandomSurvivalForest(n_estimators=200, min_samples_leaf=3, max_features="sqrt")``;
   * ``GradientBoostingSurvivalAnalysis()`` (100 trees of depth 3, learning rate 0.1);
   * xgboost ``survival:cox``: 100 rounds of depth 3, learning rate 0.1, one thread (on a busy
     2-core machine two threads ran 25 times slower on a few hundred patients), otherwise
     xgboost's defaults.

Harrell's C of each held-out fold is scikit-survival's ``concordance_index_censored`` (riskmodel's
``harrell_c`` equals it), averaged over folds as riskmodel averages its own. The gap of a family is
riskmodel's C minus the best baseline of its kind (Cox: scikit-survival's Cox; forest: its random
survival forest; boosting: the better of its gradient boosting and xgboost); the issue asks for a
gap of -0.01 or more.

Run: ``python benchmarks/public_datasets.py [--datasets veterans gbsg2] [--repeats 1] [--workdir DIR]``.
Writes ``benchmarks/public_datasets.json`` (``--out``) and prints the table as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
FAMILIES = ("cox", "rsf", "gbm")
BASELINES = ("sksurv_cox", "sksurv_rsf", "sksurv_gbsa", "xgboost")
KIND = {"cox": ("sksurv_cox",), "rsf": ("sksurv_rsf",), "gbm": ("sksurv_gbsa", "xgboost")}
TOLERANCE = 0.01


# ----------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class Dataset:
    """A public dataset: its loader (covariates, event, time), the time unit and a note."""

    load: Callable[[], tuple[pd.DataFrame, np.ndarray, np.ndarray]]
    time_unit: str
    note: str = ""


def _sksurv(name: str) -> Callable[[], tuple[pd.DataFrame, np.ndarray, np.ndarray]]:
    def load() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        from sksurv import datasets

        X, y = getattr(datasets, f"load_{name}")()
        event_field, time_field = y.dtype.names
        return X, np.asarray(y[event_field], bool), np.asarray(y[time_field], float)

    return load


def _without(
    load: Callable[[], tuple[pd.DataFrame, np.ndarray, np.ndarray]], column: str
) -> Callable[[], tuple[pd.DataFrame, np.ndarray, np.ndarray]]:
    def loaded() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        X, event, time_ = load()
        return X.drop(columns=[column]), event, time_

    return loaded


def _rossi() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    from lifelines.datasets import load_rossi

    frame = load_rossi()
    return frame.drop(columns=["week", "arrest"]), frame["arrest"].to_numpy(bool), frame["week"].to_numpy(float)


DATASETS: dict[str, Dataset] = {
    "veterans": Dataset(_sksurv("veterans_lung_cancer"), "days"),
    "whas500": Dataset(_sksurv("whas500"), "days"),
    "gbsg2": Dataset(_sksurv("gbsg2"), "days"),
    "flchain": Dataset(
        _sksurv("flchain"),
        "days",
        "creatinine 17% missing; chapter (the cause of death) is missing exactly for the patients alive, so "
        "its missingness all but gives the outcome away, to every model alike",
    ),
    "flchain_no_chapter": Dataset(
        _without(_sksurv("flchain"), "chapter"),
        "days",
        "flchain without the cause of death: every other covariate, creatinine 17% missing (multiply imputed "
        "for Cox, NaN for the trees)",
    ),
    "rossi": Dataset(_rossi, "weeks"),
}


def export(name: str, folder: Path) -> tuple[Path, pd.DataFrame]:
    """The dataset as ``<name>.csv`` (``id`` numbered 1 to n, covariates, ``time``, ``status``)."""
    X, event, time_ = DATASETS[name].load()
    frame = X.reset_index(drop=True).copy()
    frame.insert(0, "id", np.arange(1, len(frame) + 1))
    frame["time"], frame["status"] = time_, event.astype(int)
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path, frame


# ----------------------------------------------------------------------------- riskmodel, through its CLI
def _cli(args: list[str], cwd: Path) -> float:
    """Run ``riskmodel ARGS`` in a subprocess; its wall seconds. Raises with its output on failure."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "riskmodel", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"riskmodel {args[0]} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return time.perf_counter() - start


def edit_experiment(text: str, repeats: int | None) -> tuple[str, list[str]]:
    """init's YAML with the benchmark's edits, and each edited line as ``old -> new``.

    >>> edit_experiment("evaluation:\\n  n_splits: 5\\n  n_repeats: 2\\n  bootstrap: 20\\n", 1)[1]
    ['  n_repeats: 2 -> n_repeats: 1', '  bootstrap: 20 -> bootstrap: 0']
    """
    wanted = {"bootstrap": 0} | ({"n_repeats": repeats} if repeats is not None else {})
    lines, edits = text.splitlines(), []
    in_evaluation = False
    for i, line in enumerate(lines):
        if not line.startswith(" "):
            in_evaluation = line.rstrip() == "evaluation:"
            continue
        match = re.fullmatch(r"(\s+)(\w+): (\S+)", line)
        if in_evaluation and match and match.group(2) in wanted:
            new = f"{match.group(1)}{match.group(2)}: {wanted.pop(match.group(2))}"
            if new != line:
                lines[i] = new
                edits.append(f"{line} -> {new.strip()}")
    if wanted:
        raise ValueError(f"init's YAML has no evaluation.{', '.join(wanted)} line to edit")
    return "\n".join(lines) + "\n", edits


def run_riskmodel(name: str, folder: Path, repeats: int | None, reuse: bool = False) -> dict[str, Any]:
    """Export, ``init``, edit, ``train``: riskmodel's cross-validated C per family and timings.

    With ``reuse``, a finished run in ``folder`` (its ``riskmodel.json``) is read instead.
    """
    data, frame = export(name, folder)
    yaml_path = folder / f"{name}.yaml"
    done = folder / "riskmodel.json"
    if reuse and done.exists():
        kept = json.loads(done.read_text())
        return {
            **kept,
            "frame": frame,
            "yaml": yaml_path,
            "folds_file": {f: Path(v) for f, v in kept["folds_file"].items()},
        }
    init_s = _cli(
        [
            "init",
            data.name,
            "--time",
            "time",
            "--event",
            "status",
            "--time-unit",
            DATASETS[name].time_unit,
            "--out",
            yaml_path.name,
            "--force",
        ],
        folder,
    )
    text, edits = edit_experiment(yaml_path.read_text(), repeats)
    yaml_path.write_text(text)
    store = folder / "mlruns"
    store.mkdir(exist_ok=True)
    summary_path = folder / "summary.json"
    train_s = _cli(
        [
            "train",
            yaml_path.name,
            "--models",
            ",".join(FAMILIES),
            "--summary-json",
            summary_path.name,
            "--tracking-uri",
            f"sqlite:///{store / 'mlflow.db'}",
        ],
        folder,
    )
    summary = json.loads(summary_path.read_text())
    runs = {r["family"]: r for r in summary["runs"]}
    result: dict[str, Any] = {
        "edits": edits,
        "c": {f: runs[f]["metrics"]["harrell_c_mean"] for f in FAMILIES},
        "folds_file": {
            f: str(_artifact(store, summary["experiment"], runs[f]["run_id"], "cv_folds.csv")) for f in FAMILIES
        },
        "seconds": {"init": init_s, "train": train_s, **_family_seconds(store, summary)},
    }
    done.write_text(json.dumps(result, indent=2) + "\n")
    return {
        **result,
        "frame": frame,
        "yaml": yaml_path,
        "folds_file": {f: Path(v) for f, v in result["folds_file"].items()},
    }


def _artifact(store: Path, experiment: str, run_id: str, name: str) -> Path:
    return store / "artifacts" / experiment / run_id / "artifacts" / name


def _family_seconds(store: Path, summary: dict[str, Any]) -> dict[str, float]:
    """Per family, the seconds from the previous run's end to its own run's end in MLflow: its
    cross-validation, final fit, calibration and explanations, then its recording."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    previous = client.get_run(summary["parent_run_id"]).info.start_time
    out = {}
    for run in summary["runs"]:
        info = client.get_run(run["run_id"]).info
        out[run["family"]] = (info.end_time - previous) / 1000
        previous = info.end_time
    return out


# ----------------------------------------------------------------------------- the same folds
def riskmodel_folds(yaml_path: Path) -> tuple[Any, Any, list[tuple[np.ndarray, np.ndarray]]]:
    """The experiment's prepared data and the folds its ``train`` used, rebuilt by riskmodel's own
    preparation and splitter (as :func:`riskmodel.workflow.train.train` and
    :func:`riskmodel.validation.crossval.cross_validate` call them)."""
    from riskmodel.config import load_experiment
    from riskmodel.validation.crossval import stratified_splitter
    from riskmodel.workflow.prepare import drop_uninformative, load_cohort, override, prepare_endpoints

    config = override(load_experiment(yaml_path), data=None, endpoints=None, models=list(FAMILIES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cohort's own warnings were shown by train
        cohort = load_cohort(config)
    config, _ = drop_uninformative(config, cohort)
    (prepared,) = prepare_endpoints(config, cohort).values()
    sd = prepared.data
    event = np.asarray(sd.y["event"], bool)
    ev = config.evaluation
    splitter = stratified_splitter(event, ev.n_splits, ev.n_repeats, config.seed)
    return config, prepared, list(splitter.split(sd.X, event))


def check_folds(config: Any, prepared: Any, folds: list, folds_file: Path) -> float:
    """Refit riskmodel's Cox pipeline on the first fold; the difference from the C ``train`` logged
    for that fold (0 when the folds are the same)."""
    from riskmodel.metrics import harrell_c
    from riskmodel.models.registry import build_estimator
    from riskmodel.workflow.prepare import make_pipeline

    sd = prepared.data
    train_rows, test_rows = folds[0]
    params = config.models.cox.model_dump()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = make_pipeline(config, build_estimator("cox", params, config.seed)).fit(
            sd.X.iloc[train_rows], sd.y[train_rows]
        )
        risk = pipe[-1].predict_risk(pipe[:-1].transform(sd.X.iloc[test_rows]))
    test = sd.y[test_rows]
    logged = pd.read_csv(folds_file).query("repeat == 0 and fold == 0")["harrell_c"].iloc[0]
    return abs(harrell_c(test["event"], test["time"], risk) - float(logged))


# ----------------------------------------------------------------------------- baselines
def design(frame: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    """Every covariate of the exported rows riskmodel kept (by ``id``), one-hot encoded: a
    categorical's first level is the reference and a missing value a level of its own."""
    rows = frame.set_index(frame["id"].astype(str)).loc[pd.Index(ids.astype(str))]
    X = rows.drop(columns=["id", "time", "status"])
    categorical = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    parts = [X.drop(columns=categorical).astype(float)]
    for c in categorical:
        parts.append(pd.get_dummies(X[c], prefix=c, drop_first=True, dummy_na=bool(X[c].isna().any()), dtype=float))
    return pd.concat(parts, axis=1).reset_index(drop=True)


def _sksurv_model(name: str, seed: int, penalised: bool = False) -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    median = SimpleImputer(strategy="median")
    if name == "sksurv_cox":
        cox = CoxPHSurvivalAnalysis(alpha=1.0 if penalised else 0.0, ties="efron", n_iter=100)
        return make_pipeline(median, StandardScaler(), cox)
    if name == "sksurv_rsf":
        forest = RandomSurvivalForest(
            n_estimators=200, min_samples_leaf=3, max_features="sqrt", low_memory=True, n_jobs=2, random_state=seed
        )
        return make_pipeline(median, forest)
    return make_pipeline(median, GradientBoostingSurvivalAnalysis(random_state=seed))


def _xgboost_risk(X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame, seed: int) -> np.ndarray:
    import xgboost as xgb

    label = np.where(y_train["event"], y_train["time"], -y_train["time"])
    params = {"objective": "survival:cox", "eta": 0.1, "max_depth": 3, "nthread": 1, "seed": seed}
    booster = xgb.train(params, xgb.DMatrix(X_train, label=label), num_boost_round=100)
    return np.asarray(booster.predict(xgb.DMatrix(X_test), output_margin=True), float)


def _fold_c(
    name: str, X: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int, penalised: bool
) -> float:
    from sksurv.metrics import concordance_index_censored

    if name == "xgboost":
        risk = _xgboost_risk(X.iloc[train], y[train], X.iloc[test], seed)
    else:
        risk = _sksurv_model(name, seed, penalised).fit(X.iloc[train], y[train]).predict(X.iloc[test])
    return float(concordance_index_censored(y["event"][test], y["time"][test], risk)[0])


def run_baselines(X: pd.DataFrame, y: np.ndarray, folds: list, seed: int) -> dict[str, Any]:
    """Each baseline's mean held-out Harrell C over the folds, and its seconds."""
    from sklearn.exceptions import ConvergenceWarning

    out: dict[str, Any] = {"c": {}, "seconds": {}, "cox": "CoxPHSurvivalAnalysis (unpenalised)"}
    for name in BASELINES:
        start = time.perf_counter()
        penalised = False
        while True:
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")  # a line search's overflow, scikit-learn's notices
                    if name == "sksurv_cox" and not penalised:
                        warnings.simplefilter("error", ConvergenceWarning)
                    cs = [_fold_c(name, X, y, tr, te, seed, penalised) for tr, te in folds]
                break
            except (ConvergenceWarning, ArithmeticError, np.linalg.LinAlgError, ValueError) as exc:
                if name != "sksurv_cox" or penalised:
                    raise
                penalised = True
                out["cox"] = f"CoxPHSurvivalAnalysis(alpha=1): the unpenalised fit failed ({exc})"
        out["c"][name] = float(np.mean(cs))
        out["seconds"][name] = time.perf_counter() - start
    return out


# ----------------------------------------------------------------------------- one dataset, the table
def benchmark(
    name: str, folder: Path, repeats: int | None, log: Callable[[str], None], reuse: bool = False
) -> dict[str, Any]:
    """riskmodel through its CLI, then the baselines on the same folds."""
    folder.mkdir(parents=True, exist_ok=True)
    rm = run_riskmodel(name, folder, repeats, reuse)
    seconds = rm["seconds"]
    log(f"{name}: riskmodel init {seconds['init']:.1f} s, train {seconds['train']:.1f} s; edits {rm['edits']}")
    config, prepared, folds = riskmodel_folds(rm["yaml"])
    start = time.perf_counter()
    fold_diff = check_folds(config, prepared, folds, rm["folds_file"]["cox"])
    check_s = time.perf_counter() - start
    if fold_diff > 1e-9:
        raise AssertionError(
            f"{name}: the rebuilt first fold gives a Cox C {fold_diff:.2e} away from train's: other folds"
        )
    sd = prepared.data
    X = design(rm["frame"], sd.X["patient_id"])
    base = run_baselines(X, sd.y, folds, config.seed)
    gaps = {f: rm["c"][f] - max(base["c"][b] for b in KIND[f]) for f in FAMILIES}
    ev = config.evaluation
    return {
        "n": len(sd.y),
        "events": int(sd.y["event"].sum()),
        "covariates": len(config.covariates),
        "encoded_columns": X.shape[1],
        "cv": f"{len(folds) // ev.n_repeats}-fold x {ev.n_repeats}",
        "edits": rm["edits"],
        "riskmodel_c": rm["c"],
        "baseline_c": base["c"],
        "baseline_cox": base["cox"],
        "gap": gaps,
        "within_tolerance": {f: bool(g >= -TOLERANCE) for f, g in gaps.items()},
        "fold_check_abs_diff": fold_diff,
        "seconds": {"riskmodel": rm["seconds"], "baseline": base["seconds"], "fold_check": check_s},
        "note": DATASETS[name].note,
    }


def markdown(results: dict[str, Any]) -> str:
    """The accuracy table (Harrell C, mean over held-out folds) and the timing table."""
    head = (
        "| dataset | n | events | covariates (columns) | CV | riskmodel cox | rsf | gbm | sksurv Cox | sksurv RSF "
        "| sksurv GBSA | xgboost | gap cox | gap rsf | gap gbm |\n|" + "---|" * 15
    )
    rows = [head]
    for name, r in results["datasets"].items():
        if "error" in r:
            rows.append(f"| {name} | error: {r['error'][:200]} |")
            continue
        rm, b, g = r["riskmodel_c"], r["baseline_c"], r["gap"]
        best = {f: max(b[k] for k in KIND[f]) for f in FAMILIES}
        cells = [f"{rm[f]:.3f}" for f in FAMILIES]
        cells += [
            (f"**{b[k]:.3f}**" if any(b[k] == best[f] and k in KIND[f] for f in FAMILIES) else f"{b[k]:.3f}")
            for k in BASELINES
        ]
        cells += [f"{g[f]:+.3f}" + ("" if r["within_tolerance"][f] else " ✗") for f in FAMILIES]
        rows.append(
            f"| {name} | {r['n']} | {r['events']} | {r['covariates']} ({r['encoded_columns']}) | {r['cv']} | "
            + " | ".join(cells)
            + " |"
        )
    timing = [
        "| dataset | init | train (all) | riskmodel cox | rsf | gbm | sksurv Cox | sksurv RSF | sksurv GBSA "
        "| xgboost |",
        "|" + "---|" * 10,
    ]
    for name, r in results["datasets"].items():
        if "error" in r:
            continue
        rs, bs = r["seconds"]["riskmodel"], r["seconds"]["baseline"]
        cells = [
            f"{rs['init']:.1f}",
            f"{rs['train']:.1f}",
            *(f"{rs[f]:.1f}" for f in FAMILIES),
            *(f"{bs[k]:.1f}" for k in BASELINES),
        ]
        timing.append(f"| {name} | " + " | ".join(cells) + " |")
    return (
        "\n".join(rows)
        + "\n\nSeconds (riskmodel per family: cross-validation, final fit, calibration, explanations and "
        "recording; baselines: every fold's fit and prediction):\n\n" + "\n".join(timing) + "\n"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--repeats", type=int, default=None, help="CV repeats (default: as riskmodel init chose)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the CSVs, YAMLs and MLflow stores here")
    parser.add_argument("--out", type=Path, default=HERE / "public_datasets.json")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse riskmodel's finished runs in --workdir (rerun the baselines only)"
    )
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be 1 or more")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="riskmodel-public-"))
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "tolerance": TOLERANCE,
        "datasets": {},
    }
    for name in args.datasets:
        try:
            results["datasets"][name] = benchmark(name, workdir / name, args.repeats, print, args.reuse)
        except Exception as exc:  # one dataset's failure is its row of the table
            results["datasets"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(markdown(results))
    print(f"(work files in {workdir}; results in {args.out})")
    return results


if __name__ == "__main__":
    main()
