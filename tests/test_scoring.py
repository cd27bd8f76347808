"""Scoring paths the trained default models do not reach: one-hot levels unseen in training."""

from __future__ import annotations

from riskmodel.cohort import survival_data
from riskmodel.cohort.synthetic import generate
from riskmodel.features import ClinicalFeatures
from riskmodel.models import CoxPH
from riskmodel.scoring import RiskModel


def test_an_unencodable_row_is_reported_and_the_others_scored() -> None:
    train = generate(400, 3)
    train = train[train["t_stage"] != "T4"]  # so T4 is unseen at fit
    sd = survival_data(train, "os", landmark_months=3, feature_columns=["response_3mo"])
    features = ClinicalFeatures("study", landmark_months=3, stage_coding="onehot").fit(sd.X)
    model = RiskModel.from_training(
        endpoint="os",
        family="cox",
        experiment="t",
        landmark_months=3,
        horizons=[6.0],
        features=features,
        estimator=CoxPH().fit(features.transform(sd.X), sd.y),
        X=sd.X,
    )
    new = generate(5, 4).drop(columns=["os_months", "os_event", "lc_months", "lc_event"]).reset_index(drop=True)
    new["t_stage"] = new["t_stage"].astype(str)
    new.loc[2, "t_stage"] = "T4"
    records = model.score(new)
    assert [("error" in r) for r in records] == [False, False, True, False, False]
    assert "value 'T4': was not seen when the features were fitted" in records[2]["error"]
    full = model.predict_survival(new.drop(index=2))
    assert [r["survival"]["6"] for r in records if "error" not in r] == list(full[6.0])
