"""Pickle-free model directories: data formats only, a SHA-256 manifest, checked before loading.

A model directory holds:

- ``manifest.json``: format version, riskmodel and dependency versions, and the SHA-256 of every
  other file. Loading refuses a missing or changed file, and any file the manifest does not list.
- ``model.json``: endpoint, family, landmark, horizons, feature pipeline state, training ranges
  and risk-group cut-offs (no patient rows).
- the estimator's files, written and read by its family (``save_state`` / ``load_state`` in
  :mod:`riskmodel.models`): ``cox.json`` (coefficients and baseline); ``booster.ubj``
  (xgboost's own format) with ``gbm.json``; ``forest.npz`` (numeric arrays, every index checked)
  with ``estimator.json`` for random survival forests; or ``estimator.skops`` for scikit-survival
  boosting (and forests saved before ``forest.npz``, converted as they are read), loaded with an
  allow-list of types kept in the family's code, never read from the file.
- a competing-risk model (the family's counterpart, ``FamilySpec.competing``): ``competing.json``
  and each cause's model in ``cause_1/`` and ``cause_2/``, in that family's own files, each read
  back with that family's checks; told apart from the survival family by ``competing.json``.
  Under multiple imputation, the same inside every ``imputation_<i>/``.
- a recalibrated model (``riskmodel update``, :mod:`riskmodel.models.recalibrated`):
  ``recalibration.json`` and the parent model's own files in ``parent/``, read back with the
  family's own checks.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from riskmodel.core.files import staged_folder
from riskmodel.errors import ModelFileError, RiskModelError, RiskModelWarning
from riskmodel.features import ClinicalFeatures, DeclaredFeatures, DeclaredInputs, resolve_blocks
from riskmodel.models.base import SurvivalEstimator, read_json, write_json
from riskmodel.models.imputation import IMPUTATION_FILE, MultipleImputationSurvival
from riskmodel.models.recalibrated import PARENT_DIR, RECALIBRATION_FILE, Recalibrated
from riskmodel.models.recalibrated_cif import CIF_RECALIBRATION_FILE, RecalibratedCif
from riskmodel.models.registry import SPECS, family_names
from riskmodel.scoring.schemas import Manifest, ModelMeta

__all__ = ["FORMAT", "ModelFileError", "read_model_dir", "write_model_dir"]

FORMAT = "riskmodel-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# every file name riskmodel writes into a model folder (besides the manifest): its own, and each family's
FAMILY_FILES = frozenset().union(*(s.estimator.FILES for s in SPECS.values()))
# a competing counterpart's: competing.json and cause_<k>/<a family file>
COMPETING_FILES = frozenset().union(*(s.competing.FILES for s in SPECS.values() if s.competing is not None))
COMPETING_STATE = "competing.json"
RECALIBRATION_FILES = frozenset({RECALIBRATION_FILE, CIF_RECALIBRATION_FILE})
KNOWN_FILES = frozenset({"model.json", IMPUTATION_FILE}) | RECALIBRATION_FILES | FAMILY_FILES | COMPETING_FILES
_VERSIONED = ("riskmodel", "numpy", "pandas", "scikit-learn", "scikit-survival", "xgboost", "xgboost-cpu", "skops")


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


# --------------------------------------------------------------------------- estimators
def _load_estimator(family: str, folder: Path) -> SurvivalEstimator:
    if (folder / RECALIBRATION_FILE).exists():
        return Recalibrated.load_with(folder, lambda sub: _load_base(family, sub))
    if (folder / CIF_RECALIBRATION_FILE).exists():
        return RecalibratedCif.load_with(folder, lambda sub: _load_base(family, sub))
    return _load_base(family, folder)


def _load_base(family: str, folder: Path) -> SurvivalEstimator:
    if family not in SPECS:
        raise ModelFileError(f"{folder}: unknown model family {family!r}; this riskmodel knows {family_names()}")
    imputed = (folder / IMPUTATION_FILE).exists()
    competing = (folder / "imputation_0" / COMPETING_STATE if imputed else folder / COMPETING_STATE).exists()
    kind: type[SurvivalEstimator] | None = SPECS[family].competing if competing else SPECS[family].estimator
    if kind is None:
        raise ModelFileError(f"{folder}: {COMPETING_STATE} for family {family!r}, which has no competing-risk model")
    if imputed:
        return MultipleImputationSurvival.load_imputed(folder, kind)
    return kind.load_state(folder)


_IMPUTATION_DIR = re.compile(r"imputation_\d{1,3}")


def _known_file(name: str) -> bool:
    """A file name riskmodel writes: its own, a family's (a competing model's ``cause_<k>/`` files
    included), or either inside one imputation's folder; a recalibrated model's parent's in ``parent/``."""
    if name in KNOWN_FILES:
        return True
    first, _, rest = name.partition("/")
    if first == PARENT_DIR:
        nested = rest in RECALIBRATION_FILES | {"model.json"} or rest.startswith(PARENT_DIR + "/")
        return not nested and _known_file(rest)
    return bool(_IMPUTATION_DIR.fullmatch(first)) and rest in FAMILY_FILES | COMPETING_FILES


# --------------------------------------------------------------------------- features
def _features_state(features: Any) -> dict[str, Any]:
    if isinstance(features, DeclaredFeatures | DeclaredInputs):
        return features.to_state()
    params = features.get_params()
    if not isinstance(params["feature_set"], str):
        params["feature_set"] = list(params["feature_set"])
    return {"params": params, "stage_levels": features.stage_levels_}


def _features_from_state(state: dict[str, Any]) -> Any:
    kind = state.get("kind", "clinical")
    if kind == "declared":
        return DeclaredFeatures.from_state(state)
    if kind == "declared_inputs":
        return DeclaredInputs.from_state(state)
    features = ClinicalFeatures(**state["params"])
    features.blocks_ = resolve_blocks(features.feature_set)
    features.stage_levels_ = {k: list(v) for k, v in state["stage_levels"].items()}
    used = features.input_columns()
    features.feature_names_in_ = np.asarray(used, dtype=object)
    features.n_features_in_ = len(used)
    features.feature_names_out_ = np.asarray(features._names(), dtype=object)
    return features


# --------------------------------------------------------------------------- directories
def write_model_dir(folder: Path, *, meta: dict[str, Any], features: Any, estimator: SurvivalEstimator) -> Path:
    """Write a model directory (it must not exist yet, so nothing is ever overwritten)."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise RiskModelError(f"{folder}: refusing to overwrite a non-empty folder")
    # built under a temporary name and renamed when complete: a killed process never leaves a
    # half-written model folder under the real name (and without its manifest none would load)
    with staged_folder(folder) as tmp:
        write_json(tmp / "model.json", {**meta, "features": _features_state(features)})
        estimator.save_state(tmp)
        files = {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        files.pop(MANIFEST, None)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": _versions(), "files": files}
        write_json(tmp / MANIFEST, manifest)
    return folder


def read_model_dir(folder: str | Path) -> tuple[dict[str, Any], Any, SurvivalEstimator]:
    """Verify the manifest, then load metadata, the feature pipeline and the estimator."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not folder.is_dir() or not manifest_path.exists():
        raise ModelFileError(f"{folder}: not a riskmodel model directory (no {MANIFEST})")
    manifest = _read_manifest(manifest_path)
    listed: dict[str, str] = manifest["files"]
    foreign = sorted(name for name in listed if not _known_file(name))
    if foreign:  # a manifest can be rewritten by whoever edits the folder; the file names cannot
        raise ModelFileError(f"{folder}: files riskmodel never writes: {', '.join(foreign)}; refusing to load")
    links = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_symlink())
    if links:
        raise ModelFileError(f"{folder}: symbolic links in a model folder: {', '.join(links)}; refusing to load")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MANIFEST}
    unexpected = sorted(present - set(listed))
    if unexpected:
        raise ModelFileError(f"{folder}: unexpected files not in the manifest: {', '.join(unexpected)}")
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file():
            raise ModelFileError(f"{folder}: {name} is listed in the manifest but missing")
        if _sha256(path) != digest:
            raise ModelFileError(f"{folder}: {name} does not match its SHA-256 in the manifest; refusing to load")
    _check_versions(manifest["versions"], folder)
    if "model.json" not in listed:
        raise ModelFileError(f"{folder}: model.json is not listed in the manifest")
    meta = read_json(folder / "model.json", ModelMeta, may_be_nan=frozenset({"hazard_ratios"}))
    try:
        features = _features_from_state(meta.pop("features"))
        return meta, features, _load_estimator(meta["family"], folder)
    except RiskModelError:
        raise
    except Exception as exc:  # a field of the right type holding a wrong value: refused, never a traceback
        raise ModelFileError(f"{folder}: malformed model files ({_first_line(exc)}); refusing to load") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, or one line saying why it cannot be trusted (a list, ``files`` as a list, NaN...)."""
    if path.is_symlink():
        raise ModelFileError(f"{path}: a symbolic link; refusing to load")
    try:
        raw = json.loads(path.read_bytes()) if path.stat().st_size <= 1 << 20 else None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ModelFileError(f"{path}: unreadable manifest") from None
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path}: unreadable manifest (not a JSON object of at most 1 MB)")
    if raw.get("format") != FORMAT or raw.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path.parent}: unsupported model format {raw.get('format')!r} version {raw.get('format_version')!r}"
        )
    return read_json(path, Manifest)


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
