"""ClinicalFeatures: sklearn contracts, feature sets, guards, and hand-checked values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from riskmodel.cohort import Cohort, survival_data
from riskmodel.cohort.derive import bed_permanent_implant
from riskmodel.errors import FeatureError, GuaranteeTimeBiasError, RiskModelWarning, UserInputError
from riskmodel.features import FEATURE_BLOCKS, FEATURE_SETS, ClinicalFeatures


@pytest.fixture
def X(bundled: Cohort) -> pd.DataFrame:
    return survival_data(bundled, "os", landmark_months=3).X


def test_study_set_values(X: pd.DataFrame) -> None:
    f = ClinicalFeatures("study", landmark_months=3).fit(X)
    names = list(f.get_feature_names_out())
    assert names == [
        "d90_gy",
        "response_cr_pr",
        "recurrence_interval_months",
        "t_stage_ordinal",
        "n_stage_ordinal",
        "m1",
        "log_lesion_volume_cm3",
    ]
    out = pd.DataFrame(f.transform(X), columns=names, index=X.index)
    row = X.iloc[0]
    assert out.iloc[0]["d90_gy"] == row["d90_gy"]
    assert out.iloc[0]["response_cr_pr"] == float(row["response_3mo"] in ("CR", "PR"))
    assert out.iloc[0]["t_stage_ordinal"] == int(row["t_stage"][1])
    assert out.iloc[0]["log_lesion_volume_cm3"] == pytest.approx(np.log(row["lesion_volume_cm3"]))
    assert out["response_cr_pr"].sum() == 20  # the study's CR+PR group


def test_published_set_uses_the_threshold(X: pd.DataFrame) -> None:
    f = ClinicalFeatures("published", landmark_months=3, d90_threshold_gy=110).fit(X)
    assert list(f.get_feature_names_out()) == ["d90_ge_110gy", "response_cr_pr"]
    assert f.transform(X)[:, 0].sum() == (X["d90_gy"] >= 110).sum() == 15


def test_bed_block_by_hand(X: pd.DataFrame) -> None:
    f = ClinicalFeatures(["bed", "eqd2"], alpha_beta=3.0).fit(X)
    out = f.transform(X)
    d90, dose, n = X["d90_gy"].iloc[0], X["prior_ebrt_dose_gy"].iloc[0], X["prior_ebrt_fractions"].iloc[0]
    ebrt = dose * (1 + dose / n / 3.0)
    assert out[0, 0] == pytest.approx(bed_permanent_implant(d90, 3.0))
    assert out[0, 1] == pytest.approx(ebrt)
    assert out[0, 2] == pytest.approx(out[0, 0] + ebrt)
    assert out[0, 5] == pytest.approx(out[0, 2] / (1 + 2 / 3.0))
    assert f.get_feature_names_out()[2] == "bed_cumulative_gy_ab3"


def test_response_without_landmark_is_refused(X: pd.DataFrame) -> None:
    with pytest.raises(GuaranteeTimeBiasError, match="Guarantee-time"):
        ClinicalFeatures("study").fit(X)
    with pytest.raises(GuaranteeTimeBiasError):
        ClinicalFeatures(["response"], landmark_months=1.0).fit(X)
    ClinicalFeatures("preimplant").fit(X)  # no response, no landmark needed


def test_works_in_a_pipeline_and_clones(X: pd.DataFrame) -> None:
    pipe = make_pipeline(ClinicalFeatures("full", landmark_months=3, stage_coding="onehot"), LinearRegression())
    y = X["age_years"].to_numpy()
    pipe.fit(X, y)
    twin = clone(pipe).fit(X, y)
    np.testing.assert_allclose(pipe.predict(X), twin.predict(X))
    assert clone(ClinicalFeatures("preimplant", alpha_beta=3)).get_params()["alpha_beta"] == 3


def test_pandas_output(X: pd.DataFrame) -> None:
    f = ClinicalFeatures("preimplant", stage_coding="onehot").set_output(transform="pandas").fit(X)
    out = f.transform(X)
    assert list(out.columns) == [
        "d90_gy",
        "recurrence_interval_months",
        "t_stage_T2",
        "t_stage_T3",
        "n_stage_N1",
        "n_stage_N2",
        "m_stage_M1",
        "log_lesion_volume_cm3",
    ]
    assert (out["m_stage_M1"] == (X["m_stage"] == "M1")).all()


def test_unknown_categories_are_flagged_not_zero_filled(X: pd.DataFrame) -> None:
    f = ClinicalFeatures("preimplant", stage_coding="onehot").fit(X)
    new = X.head(3).copy()
    new["t_stage"] = new["t_stage"].astype(object)
    new.iloc[1, new.columns.get_loc("t_stage")] = "T4"
    with pytest.raises(FeatureError, match=r"column t_stage, value 'T4': was not seen when the features were fitted"):
        f.transform(new)
    new.iloc[1, new.columns.get_loc("t_stage")] = "T9"
    with pytest.raises(FeatureError, match="must be one of"):
        f.transform(new)
    ordinal = ClinicalFeatures("preimplant").fit(X)
    new.iloc[1, new.columns.get_loc("t_stage")] = "T4"
    with pytest.warns(RiskModelWarning, match="extrapolates"):
        ordinal.transform(new)


def test_missing_values_are_never_imputed(X: pd.DataFrame) -> None:
    f = ClinicalFeatures(["d90", "chemo"]).fit(X)
    new = X.head(4).copy()
    new.iloc[2, new.columns.get_loc("d90_gy")] = np.nan
    with pytest.raises(FeatureError, match=r"error: row 4, column d90_gy, value \(empty\): needs a number"):
        f.transform(new)


def test_bad_parameters_name_the_value(X: pd.DataFrame) -> None:
    with pytest.raises(UserInputError, match="unknown feature set 'studdy'"):
        ClinicalFeatures("studdy").fit(X)
    with pytest.raises(UserInputError, match="unknown: dose"):
        ClinicalFeatures(["d90", "dose"]).fit(X)
    with pytest.raises(UserInputError, match="alpha_beta must be a positive number, got -1"):
        ClinicalFeatures("preimplant", alpha_beta=-1).fit(X)
    with pytest.raises(FeatureError, match="lacks the columns d90_gy"):
        ClinicalFeatures("preimplant").fit(X.drop(columns="d90_gy"))


def test_every_named_set_and_block_builds(X: pd.DataFrame) -> None:
    for name in [*FEATURE_SETS, *FEATURE_BLOCKS]:
        f = ClinicalFeatures(name, landmark_months=3).fit(X)
        out = f.transform(X)
        assert out.shape == (len(X), len(f.get_feature_names_out()))
        assert np.isfinite(out).all(), name


DECLARED = {
    "id": "id",
    "covariates": [
        {
            "name": "cell",
            "column": "Cell",
            "kind": "categorical",
            "levels": ["adeno", "large", "small"],
            "reference": "small",
        },
        {"name": "age", "column": "Age", "kind": "numeric"},
        {"name": "arm", "column": "Arm", "kind": "categorical", "levels": ["A", "B"], "reference": "A"},
    ],
    "endpoints": [
        {"name": "os", "time": "t", "time_unit": "days", "event": "e", "event_codes": [1], "censored_codes": [0]}
    ],
}


def test_tree_families_get_every_level_of_a_categorical_and_cox_the_levels_beside_the_reference() -> None:
    import json

    from riskmodel.config import ExperimentConfig
    from riskmodel.features import DeclaredFeatures
    from riskmodel.models.registry import build_estimator
    from riskmodel.workflow.prepare import make_pipeline as experiment_pipeline

    X = pd.DataFrame(
        {"cell": ["small", "adeno", "large", "small"], "age": [60.0, 70.0, 65.0, 50.0], "arm": ["A", "B", "B", "A"]}
    )
    linear = DeclaredFeatures(DECLARED).fit(X)
    trees = DeclaredFeatures(DECLARED, all_levels=True).fit(X)
    assert list(linear.get_feature_names_out()) == ["cell_adeno", "cell_large", "age", "arm_B"]
    # two levels stay one column: a second would repeat the first
    assert list(trees.get_feature_names_out()) == ["cell_adeno", "cell_large", "cell_small", "age", "arm_B"]
    np.testing.assert_array_equal(trees.transform(X)[:, :3].sum(axis=1), 1.0)  # one level per patient
    again = DeclaredFeatures.from_state(json.loads(json.dumps(trees.to_state())))
    np.testing.assert_array_equal(again.transform(X), trees.transform(X))
    config = ExperimentConfig.model_validate({"name": "x", "data": {"path": "x.csv"}, "cohort": DECLARED}, strict=False)
    for family, every_level in (("cox", False), ("rsf", True), ("gbm", True)):
        assert experiment_pipeline(config, build_estimator(family, {}, 0))[0].all_levels is every_level, family
