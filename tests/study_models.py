"""Models for tests that need a RiskModel: of the study's clinical features, fitted from the 3-month
landmark as train fits one (a synthetic frame or the bundled cohort), or of a declared cohort."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import pandas as pd

from riskmodel.cohort import Cohort, SurvivalData, survival_data
from riskmodel.cohort.declaration import CohortDeclaration
from riskmodel.features import ClinicalFeatures, DeclaredFeatures
from riskmodel.scoring import RiskModel

LANDMARK = 3


def study_model(
    data: Cohort | pd.DataFrame,
    endpoint: str,
    estimator: Any,
    *,
    family: str,
    horizons: Sequence[float],
    feature_columns: Sequence[str] = (),
    competing: bool = False,
    experiment: str = "t",
    quiet: bool = False,
) -> tuple[RiskModel, SurvivalData]:
    """``estimator`` fitted on ``data``'s ``endpoint`` (the competing target with ``competing``)
    through the study's clinical features, as a RiskModel, and the data it was fitted on.
    ``quiet``: the fit's warnings (a Cox fit's convergence notes) are not shown."""
    sd = survival_data(data, endpoint, landmark_months=LANDMARK, feature_columns=feature_columns, competing=competing)
    features = ClinicalFeatures("study", landmark_months=LANDMARK).fit(sd.X)
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        estimator.fit(features.transform(sd.X), sd.y)
    model = RiskModel.from_training(
        endpoint=endpoint,
        family=family,
        experiment=experiment,
        landmark_months=LANDMARK,
        horizons=list(horizons),
        features=features,
        estimator=estimator,
        X=sd.X,
    )
    return model, sd


def declared_model(
    declaration: dict[str, Any], X: pd.DataFrame, y: Any, estimator: Any, *, endpoint: str, family: str
) -> RiskModel:
    """``estimator`` fitted on ``X``, ``y`` through the encodings of ``declaration`` (a declared
    cohort's YAML as a dict; time zero at the start, horizons 6, 12 and 24 months), as a RiskModel."""
    decl = CohortDeclaration.model_validate(declaration, strict=False)
    features = DeclaredFeatures(decl.model_dump(mode="json")).fit(X)
    estimator.fit(features.transform(X), y)
    return RiskModel.from_training(
        endpoint=endpoint,
        family=family,
        experiment="declared",
        landmark_months=0,
        horizons=[6.0, 12.0, 24.0],
        features=features,
        estimator=estimator,
        X=X,
        declaration=decl,
    )


def lc_competing_model(data: Cohort | pd.DataFrame, estimator: Any, family: str) -> RiskModel:
    """``estimator`` (a competing-risk family) fitted on LC with death competing, from the 3-month
    landmark with the 3-month response, horizons 6 and 12 months: the serving and calculator tests' model."""
    model, _ = study_model(
        data,
        "lc",
        estimator,
        family=family,
        horizons=[6.0, 12.0],
        feature_columns=["response_3mo"],
        competing=True,
        quiet=True,
    )
    return model
