"""Models of the bundled study for the calculators' tests: an LC Cox and an OS forest at the 3-month
landmark (seconds to fit), and patients written by hand as the form would send them."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from riskmodel.cohort import Cohort
from riskmodel.models import CoxPH, SurvivalForest
from riskmodel.scoring import RiskModel
from tests.study_models import study_model

# the inputs of the study's feature set, as the calculator form sends them
PATIENT: dict[str, Any] = {
    "t_stage": "T2",
    "n_stage": "N1",
    "m_stage": "M0",
    "recurrence_interval_months": 12.5,
    "lesion_volume_cm3": 17.25,
    "d90_gy": 115.0,
    "response_3mo": "PR",
}


def fit_bundled(cohort: Cohort, folder: Path, endpoint: str) -> Path:
    """An LC Cox (ridge 0.1) or an OS random survival forest on the bundled cohort, saved."""
    estimator: Any = (
        CoxPH(penalty=0.1) if endpoint == "lc" else SurvivalForest(n_estimators=20, min_samples_leaf=3, random_state=0)
    )
    family = "cox" if endpoint == "lc" else "rsf"
    model, _ = study_model(
        cohort, endpoint, estimator, family=family, horizons=[6.0, 12.0], feature_columns=["response_3mo"], quiet=True
    )
    return model.save(folder)


def fit_declared_spline(folder: Path) -> Path:
    """An OS Cox on the bundled cohort read by its declaration, D90 as a 4-knot restricted cubic
    spline, lesion volume on the log scale, T stage one-hot, N stage ordinal, M stage binary."""
    import pandas as pd

    from riskmodel.cohort import bundled_cohort_path
    from riskmodel.cohort.builtin import builtin_declaration
    from riskmodel.cohort.declaration import CohortDeclaration
    from riskmodel.cohort.declared import from_frame_declared
    from riskmodel.features.declared import DeclaredFeatures
    from riskmodel.stats import survival_array

    spec = builtin_declaration().model_dump(mode="json")
    for c in spec["covariates"]:
        if c["name"] == "d90_gy":
            c["encoding"], c["knots"] = "spline", 4
        if c["name"] == "lesion_volume_cm3":
            c["encoding"], c["range"] = "log", [0.01, 2000.0]
    declaration = CohortDeclaration.model_validate(spec, strict=False)
    covariates = ["d90_gy", "lesion_volume_cm3", "t_stage", "m_stage", "n_stage"]
    raw = pd.read_csv(bundled_cohort_path(), dtype=str, keep_default_na=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = from_frame_declared(raw, declaration, covariates=covariates, endpoints=["os"]).data
        y = survival_array(data["os_event"].astype(int) == 1, data["os_months"].astype(float))
        features = DeclaredFeatures(spec, covariates).fit(data)
        estimator = CoxPH(penalty=0.1).fit(features.transform(data), y)
    model = RiskModel.from_training(
        endpoint="os",
        family="cox",
        experiment="declared",
        landmark_months=0,
        horizons=[6.0, 12.0],
        features=features,
        estimator=estimator,
        X=data,
        declaration=declaration,
    )
    return model.save(folder)
