"""Pickle-free model directories: data formats only, a SHA-256 manifest, checked before loading.

A model directory holds:

- ``manifest.json``: format version, riskmodel and dependency versions, and the SHA-256 of every
  other file. Loading refuses a missing or changed file, and any file the manifest does not list.
- ``model.json``: endpoint, family, landmark, horizons, feature pipeline state, training ranges
  and risk-group cut-offs (no patient rows).
- the estimator: ``cox.json`` (coefficients and Breslow baseline); ``booster.ubj`` (xgboost's
  own format) with ``gbm.json``; or ``estimator.skops`` for scikit-survival forests and boosting,
  loaded with an allow-list of types written here, never read from the file.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.core.files import staged_folder
from riskmodel.errors import RiskModelError, RiskModelWarning, UserInputError
from riskmodel.features import ClinicalFeatures, resolve_blocks
from riskmodel.models import CoxPH, GradientBoostingSurvival, SurvivalEstimator, SurvivalForest

__all__ = ["FORMAT", "ModelFileError", "read_model_dir", "write_model_dir"]

FORMAT = "riskmodel-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# The only types a skops file may contain beyond what skops itself trusts (numpy, builtins, sklearn).
SKOPS_ALLOWED = {
    "rsf": frozenset(
        {
            "sklearn.tree._tree.Tree",
            "sksurv.ensemble.forest.RandomSurvivalForest",
            "sksurv.tree.tree.SurvivalTree",
        }
    ),
    "gbm": frozenset(
        {
            "sklearn.tree._tree.Tree",
            "sksurv.ensemble.boosting.GradientBoostingSurvivalAnalysis",
            "sksurv.ensemble.survival_loss.CoxPH",
            "sksurv.functions.StepFunction",
            "sksurv.linear_model.coxph.BreslowEstimator",
        }
    ),
}
# every file name riskmodel writes into a model folder (besides the manifest)
KNOWN_FILES = frozenset({"model.json", "cox.json", "booster.ubj", "gbm.json", "estimator.skops", "estimator.json"})
_VERSIONED = ("riskmodel", "numpy", "pandas", "scikit-learn", "scikit-survival", "xgboost", "xgboost-cpu", "skops")


class ModelFileError(UserInputError):
    """A model directory is missing, tampered with, or not a riskmodel model."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            # xgboost ships as "xgboost" or "xgboost-cpu"; both are the same library
            out[name.removesuffix("-cpu")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=1, default=_json_default, allow_nan=True), encoding="utf-8")


# --------------------------------------------------------------------------- estimators
def _save_estimator(estimator: SurvivalEstimator, family: str, folder: Path) -> None:
    common = {
        "params": estimator.get_params(),
        "max_time": estimator.max_time_,
        "n_events": estimator.n_events_,
        "n_features_in": estimator.n_features_in_,
    }
    if isinstance(estimator, CoxPH):
        table = estimator.hazard_ratios_
        _write_json(
            folder / "cox.json",
            {
                **common,
                "coef": estimator.coef_,
                "mean": estimator.mean_,
                "scale": estimator.scale_,
                "constant": estimator.constant_,
                "converged": estimator.converged_,
                "information": estimator.information_,
                "event_times": estimator.event_times_,
                "baseline_cumhaz": estimator.baseline_cumhaz_,
                "feature_names": list(table.index),
                "hazard_ratios": table.reset_index().to_dict(orient="list"),
            },
        )
    elif isinstance(estimator, GradientBoostingSurvival) and estimator.backend == "xgboost":
        estimator.booster_.save_model(str(folder / "booster.ubj"))
        _write_json(
            folder / "gbm.json",
            {**common, "event_times": estimator.event_times_, "baseline_cumhaz": estimator.baseline_cumhaz_},
        )
    else:
        import skops.io as sio

        sio.dump(estimator.model_, folder / "estimator.skops")
        extra: dict[str, Any] = {}
        if isinstance(estimator, GradientBoostingSurvival):
            extra = {"event_times": estimator.event_times_, "baseline_cumhaz": estimator.baseline_cumhaz_}
        elif isinstance(estimator, SurvivalForest):
            extra = {"bin_edges": estimator.bin_edges_, "time_grid": estimator.time_grid_}
        _write_json(folder / "estimator.json", {**common, **extra})


def _load_estimator(family: str, folder: Path) -> SurvivalEstimator:
    def read(name: str) -> dict[str, Any]:
        return dict(json.loads((folder / name).read_text(encoding="utf-8")))

    if (folder / "cox.json").exists():
        d = read("cox.json")
        cox = CoxPH(**d["params"])
        cox.coef_, cox.mean_, cox.scale_ = (np.asarray(d[k], float) for k in ("coef", "mean", "scale"))
        cox.constant_ = np.asarray(d["constant"], bool)
        cox.converged_ = bool(d["converged"])
        if "information" in d:  # absent from model files written before riskmodel 0.1's explain
            cox.information_ = np.asarray(d["information"], float)
        cox.event_times_ = np.asarray(d["event_times"], float)
        cox.baseline_cumhaz_ = np.asarray(d["baseline_cumhaz"], float)
        cox.feature_names_in_ = np.asarray(d["feature_names"], dtype=object)
        cox.hazard_ratios_ = pd.DataFrame(d["hazard_ratios"]).set_index("feature")
        estimator: SurvivalEstimator = cox
    elif (folder / "booster.ubj").exists():
        import xgboost as xgb

        d = read("gbm.json")
        gbm = GradientBoostingSurvival(**d["params"])
        gbm.booster_ = xgb.Booster()
        gbm.booster_.load_model(str(folder / "booster.ubj"))
        gbm.event_times_ = np.asarray(d["event_times"], float)
        gbm.baseline_cumhaz_ = np.asarray(d["baseline_cumhaz"], float)
        estimator = gbm
    else:
        import skops.io as sio

        d = read("estimator.json")
        allowed = SKOPS_ALLOWED.get(family)
        if allowed is None:
            raise ModelFileError(f"{folder}: family {family!r} has no skops allow-list")
        found = set(sio.get_untrusted_types(file=folder / "estimator.skops"))
        refused = sorted(found - allowed)
        if refused:
            raise ModelFileError(f"{folder}/estimator.skops holds types outside the allow-list: {', '.join(refused)}")
        inner = sio.load(folder / "estimator.skops", trusted=sorted(found))
        estimator = SurvivalForest(**d["params"]) if family == "rsf" else GradientBoostingSurvival(**d["params"])
        estimator.model_ = inner
        if isinstance(estimator, GradientBoostingSurvival):
            estimator.event_times_ = np.asarray(d["event_times"], float)
            estimator.baseline_cumhaz_ = np.asarray(d["baseline_cumhaz"], float)
        elif isinstance(estimator, SurvivalForest):
            edges = d.get("bin_edges")
            estimator.bin_edges_ = None if edges is None else [None if e is None else np.asarray(e) for e in edges]
            grid = d.get("time_grid")
            estimator.time_grid_ = None if grid is None else np.asarray(grid, float)
    estimator.max_time_ = float(d["max_time"])
    estimator.n_events_ = int(d["n_events"])
    estimator.n_features_in_ = int(d["n_features_in"])
    return estimator


# --------------------------------------------------------------------------- features
def _features_state(features: ClinicalFeatures) -> dict[str, Any]:
    params = features.get_params()
    if not isinstance(params["feature_set"], str):
        params["feature_set"] = list(params["feature_set"])
    return {"params": params, "stage_levels": features.stage_levels_}


def _features_from_state(state: dict[str, Any]) -> ClinicalFeatures:
    features = ClinicalFeatures(**state["params"])
    features.blocks_ = resolve_blocks(features.feature_set)
    features.stage_levels_ = {k: list(v) for k, v in state["stage_levels"].items()}
    used = features.input_columns()
    features.feature_names_in_ = np.asarray(used, dtype=object)
    features.n_features_in_ = len(used)
    features.feature_names_out_ = np.asarray(features._names(), dtype=object)
    return features


# --------------------------------------------------------------------------- directories
def write_model_dir(
    folder: Path, *, meta: dict[str, Any], features: ClinicalFeatures, estimator: SurvivalEstimator
) -> Path:
    """Write a model directory (it must not exist yet, so nothing is ever overwritten)."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise RiskModelError(f"{folder}: refusing to overwrite a non-empty folder")
    # built under a temporary name and renamed when complete: a killed process never leaves a
    # half-written model folder under the real name (and without its manifest none would load)
    with staged_folder(folder) as tmp:
        _write_json(tmp / "model.json", {**meta, "features": _features_state(features)})
        _save_estimator(estimator, meta["family"], tmp)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.name != MANIFEST}
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": _versions(), "files": files}
        _write_json(tmp / MANIFEST, manifest)
    return folder


def read_model_dir(folder: str | Path) -> tuple[dict[str, Any], ClinicalFeatures, SurvivalEstimator]:
    """Verify the manifest, then load metadata, the feature pipeline and the estimator."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise ModelFileError(f"{folder}: not a riskmodel model directory (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"{manifest_path}: unreadable manifest") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{folder}: unsupported model format {manifest.get('format')!r} version {manifest.get('format_version')!r}"
        )
    listed: dict[str, str] = manifest.get("files", {})
    foreign = sorted(set(listed) - KNOWN_FILES)
    if foreign:  # a manifest can be rewritten by whoever edits the folder; the file names cannot
        raise ModelFileError(f"{folder}: files riskmodel never writes: {', '.join(foreign)}; refusing to load")
    present = {p.name for p in folder.iterdir() if p.name != MANIFEST}
    unexpected = sorted(present - set(listed))
    if unexpected:
        raise ModelFileError(f"{folder}: unexpected files not in the manifest: {', '.join(unexpected)}")
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file():
            raise ModelFileError(f"{folder}: {name} is listed in the manifest but missing")
        if _sha256(path) != digest:
            raise ModelFileError(f"{folder}: {name} does not match its SHA-256 in the manifest; refusing to load")
    _check_versions(manifest.get("versions", {}), folder)
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    features = _features_from_state(meta.pop("features"))
    return meta, features, _load_estimator(meta["family"], folder)


def _check_versions(saved: dict[str, str], folder: Path) -> None:
    now = _versions()
    changed = [
        f"{k} {v} -> {now[k]}"
        for k, v in saved.items()
        if k in now and k != "riskmodel" and v.split(".")[:2] != now[k].split(".")[:2]
    ]
    if changed:
        warnings.warn(
            f"{folder}: saved with other library versions ({'; '.join(changed)}); predictions may differ",
            RiskModelWarning,
            stacklevel=3,
        )
