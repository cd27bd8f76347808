"""Small saved models of every family, for tests that rewrite model files (seconds, not minutes)."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pandas as pd
from sklearn.base import clone

from riskmodel.cohort import survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CoxPH, GradientBoostingSurvival, SurvivalForest
from riskmodel.models.base import SurvivalEstimator
from riskmodel.scoring import RiskModel

ESTIMATORS = {
    "cox": lambda: CoxPH(),
    "rsf": lambda: SurvivalForest(n_estimators=3),
    "gbm": lambda: GradientBoostingSurvival(n_estimators=5),
    "gbm_sksurv": lambda: GradientBoostingSurvival(backend="sksurv", n_estimators=5),
}


def save_small_model(folder: Path, kind: str = "cox") -> Path:
    """Fit ``kind`` on 120 synthetic patients and save it (a pickle-free riskmodel folder).

    ``rsf_legacy``: a forest folder as riskmodel wrote it before the compact store (scikit-survival's
    forest in ``estimator.skops``, no ``forest.npz``), the manifest to match.
    """
    legacy = kind == "rsf_legacy"
    sd = survival_data(generate(120, 3), "os", landmark_months=3, feature_columns=["response_3mo"])
    features = ClinicalFeatures("study", landmark_months=3).fit(sd.X)
    estimator: SurvivalEstimator = ESTIMATORS["rsf" if legacy else kind]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(features.transform(sd.X), sd.y)
    model = RiskModel.from_training(
        endpoint="os",
        family=kind.split("_")[0],
        experiment="t",
        landmark_months=3,
        horizons=[6.0, 12.0],
        features=features,
        estimator=estimator,
        X=sd.X,
    )
    model.save(folder)
    if legacy:
        _as_legacy_forest(folder, clone(estimator).sksurv_forest(features.transform(sd.X), sd.y))
    return folder


def _as_legacy_forest(folder: Path, rsf: object) -> None:
    import skops.io as sio

    (folder / "forest.npz").unlink()
    sio.dump(rsf, folder / "estimator.skops")
    manifest = json.loads((folder / "manifest.json").read_text())
    files = manifest["files"]
    del files["forest.npz"]
    files["estimator.skops"] = hashlib.sha256((folder / "estimator.skops").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def new_patients(path: Path) -> Path:
    """Five new patients without outcomes, as a CSV."""
    frame: pd.DataFrame = generate(5, 4).drop(columns=["os_months", "os_event", "lc_months", "lc_event"])
    frame.to_csv(path, index=False)
    return path
