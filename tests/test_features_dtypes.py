"""ClinicalFeatures reads a loaded cohort's categorical and numeric columns directly (their codes,
their numbers): the same features, levels and refusals as from the same cells as plain objects or
text, which take the general route (``pd.factorize`` and ``pd.to_numeric``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import Cohort, survival_data
from riskmodel.errors import FeatureError
from riskmodel.features import FEATURE_SETS, ClinicalFeatures


@pytest.fixture
def X(bundled: Cohort) -> pd.DataFrame:
    return survival_data(bundled, "os", landmark_months=3).X


def _as_objects(X: pd.DataFrame) -> pd.DataFrame:
    """The same cells without pandas dtypes: categories as text objects, numbers as text."""
    out = X.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(object)
        elif out[col].dtype.kind in "fiu":
            out[col] = out[col].map(repr).astype(object)
    return out


@pytest.mark.parametrize("feature_set", sorted(FEATURE_SETS))
@pytest.mark.parametrize("stage_coding", ["ordinal", "onehot"])
def test_typed_and_object_columns_give_the_same_features(X: pd.DataFrame, feature_set: str, stage_coding: str) -> None:
    rows = np.random.default_rng(1).integers(0, len(X), len(X))  # a resample: some levels unseen
    typed = ClinicalFeatures(feature_set, stage_coding=stage_coding, landmark_months=3).fit(X.iloc[rows])  # type: ignore[arg-type]
    plain = ClinicalFeatures(feature_set, stage_coding=stage_coding, landmark_months=3).fit(_as_objects(X.iloc[rows]))  # type: ignore[arg-type]
    assert typed.stage_levels_ == plain.stage_levels_
    assert list(typed.get_feature_names_out()) == list(plain.get_feature_names_out())
    np.testing.assert_array_equal(typed.transform(X), plain.transform(_as_objects(X)))


def test_a_categorical_with_unused_or_unknown_categories_refuses_only_the_rows_holding_one(X: pd.DataFrame) -> None:
    f = ClinicalFeatures("preimplant").fit(X)
    new = X.head(4).copy()
    new["t_stage"] = new["t_stage"].cat.add_categories(["T9"])  # declared, held by no row: no refusal
    np.testing.assert_array_equal(f.transform(new), f.transform(X.head(4)))
    new.iloc[2, new.columns.get_loc("t_stage")] = "T9"
    with pytest.raises(FeatureError, match=r"row 4, column t_stage, value 'T9': must be one of") as typed:
        f.transform(new)
    with pytest.raises(FeatureError) as plain:
        f.transform(_as_objects(new))
    assert str(typed.value) == str(plain.value)
    new.iloc[2, new.columns.get_loc("t_stage")] = np.nan
    with pytest.raises(FeatureError, match=r"row 4, column t_stage, value \(empty\): must be one of"):
        f.transform(new)


def test_a_missing_number_in_a_float_column_is_refused_as_before(X: pd.DataFrame) -> None:
    f = ClinicalFeatures(["d90", "volume"]).fit(X)
    new = X.head(4).copy()
    new.iloc[1, new.columns.get_loc("lesion_volume_cm3")] = np.nan
    with pytest.raises(FeatureError, match=r"row 3, column lesion_volume_cm3, value \(empty\): needs a number"):
        f.transform(new)
