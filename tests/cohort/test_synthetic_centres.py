"""The synthetic generator's centres: their effects are what ``centre_effects`` says they are.

References are independent of the generator's code: lifelines' Cox fit (centre dummies beside the
true log hazard) for the baseline-hazard offsets, plain sample means for the case-mix shifts, and
the Weibull's known cumulative hazard for O/E, pooled with the meta-analysis of
``riskmodel.stats.meta`` (itself checked against metafor in tests/stats/test_meta.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from riskmodel.cohort.endpoints import RESPONSE_LANDMARK_MONTHS
from riskmodel.cohort.synthetic import WEIBULL, CentreHeterogeneity, centre_effects, generate, true_log_hazard
from riskmodel.errors import UserInputError
from riskmodel.stats.meta import random_effects

# z beyond which a recovered value counts as different from the truth (two-sided p ~ 5e-4 each)
Z_MAX = 3.5


def test_centres_leave_every_other_draw_alone() -> None:
    """With no heterogeneity the patients are the ones drawn without centres, plus their centre."""
    plain = generate(3000, seed=4)
    flat = CentreHeterogeneity(log_hazard_sd=0.0)
    with_centres = generate(3000, seed=4, centres=5, centre_heterogeneity=flat)
    pd.testing.assert_frame_equal(plain, with_centres.drop(columns="centre"))
    assert list(with_centres["centre"].cat.categories) == ["C01", "C02", "C03", "C04", "C05"]
    assert centre_effects(5, 4, flat)["log_hazard_offset"].abs().max() == 0.0


def test_a_cox_fit_with_centre_dummies_recovers_the_log_hazard_offsets() -> None:
    """n = 20,000 over 5 centres, tau = 0.4: each centre's log HR against C01 (lifelines, Efron,
    with the true covariate log hazard as a covariate) lies within 3.5 SE of u_j − u_1."""
    het = CentreHeterogeneity(log_hazard_sd=0.4)
    frame = generate(20_000, seed=11, centres=5, centre_heterogeneity=het)
    truth = centre_effects(5, 11, het).set_index("centre")["log_hazard_offset"]
    data = pd.DataFrame(
        {
            "time": frame["os_months"] - RESPONSE_LANDMARK_MONTHS,
            "event": frame["os_event"],
            "eta": true_log_hazard(frame, "os"),
        }
    )
    for name in truth.index[1:]:
        data[name] = (frame["centre"] == name).astype(float)
    fit = CoxPHFitter().fit(data, "time", "event")
    assert fit.params_["eta"] == pytest.approx(1.0, abs=Z_MAX * fit.standard_errors_["eta"])
    for name in truth.index[1:]:
        expected = truth[name] - truth["C01"]
        assert abs(fit.params_[name] - expected) < Z_MAX * fit.standard_errors_[name], name
    # the offsets are large enough that a generator ignoring them would fail the check above
    assert max(abs(truth[n] - truth["C01"]) / fit.standard_errors_[n] for n in truth.index[1:]) > 2 * Z_MAX


def test_case_mix_shifts_move_each_centres_age_and_volume() -> None:
    het = CentreHeterogeneity(log_hazard_sd=0.0, age_sd_years=4.0, log_volume_sd=0.3)
    frame = generate(20_000, seed=12, centres=4, centre_heterogeneity=het)
    truth = centre_effects(4, 12, het).set_index("centre")
    for name, group in frame.groupby("centre", observed=True):
        n = len(group)
        log_volume = np.log(group["lesion_volume_cm3"].to_numpy(float))
        # 0.05: the rounding of volumes to 0.1 cm³ and the rare clipping, an upper bound on their bias
        assert (
            abs(log_volume.mean() - (np.log(21.0) + truth.loc[name, "log_volume_shift"]))
            < Z_MAX * 0.55 / np.sqrt(n) + 0.05
        )
        assert (
            abs(group["age_years"].mean() - (63.0 + truth.loc[name, "age_shift_years"]))
            < Z_MAX * 7.5 / np.sqrt(n) + 0.1
        )
    assert truth["age_shift_years"].abs().max() > 1.0  # the shifts are there to be found


def _log_oe(frame: pd.DataFrame) -> pd.DataFrame:
    """Per centre, log(O/E) of death against the true model without centre effects, and 1/O."""
    shape, scale = WEIBULL["os"]
    expected = ((frame["os_months"] - RESPONSE_LANDMARK_MONTHS) / scale) ** shape * np.exp(true_log_hazard(frame, "os"))
    by = pd.DataFrame({"centre": frame["centre"], "o": frame["os_event"], "e": expected}).groupby(
        "centre", observed=True
    )
    sums = by.sum()
    return pd.DataFrame({"y": np.log(sums["o"] / sums["e"]), "v": 1 / sums["o"]})


def test_per_centre_o_over_e_recovers_each_centres_offset() -> None:
    het = CentreHeterogeneity(log_hazard_sd=0.3)
    frame = generate(20_000, seed=13, centres=8, centre_heterogeneity=het)
    truth = centre_effects(8, 13, het).set_index("centre")["log_hazard_offset"]
    table = _log_oe(frame)
    z = (table["y"] - truth[table.index]) / np.sqrt(table["v"])
    assert z.abs().max() < Z_MAX


@pytest.mark.slow
def test_pooled_estimates_and_prediction_intervals_cover_the_truth() -> None:
    """200 multi-centre cohorts (10 centres, 4,000 patients, tau = 0.3): REML's CI covers the mean
    centre offset (0) and the Riley prediction interval a new centre's offset about 95% of the
    time; tau² is estimated without large bias.

    Sampling error of a coverage over 200 runs: SD 1.5 points; [0.88, 0.995] holds a correct
    procedure. Measured: CI 91.5% (REML's normal CI under-covers a little with 10 centres, as
    known), PI 96.0%, mean tau² 0.0877 (truth 0.09). A generator without centre effects gives a
    mean tau² near 0 and fails the last check; a PI that ignores tau² under-covers new centres.
    """
    het = CentreHeterogeneity(log_hazard_sd=0.3)
    ci_hits = pi_hits = 0
    tau2 = []
    runs = 200
    for seed in range(runs):
        table = _log_oe(generate(4000, seed=1000 + seed, centres=10, centre_heterogeneity=het))
        fit = random_effects(table["y"], table["v"], prediction="riley")
        new_centre = np.random.default_rng(seed).normal(0, het.log_hazard_sd)
        ci_hits += fit.lower <= 0.0 <= fit.upper
        pi_hits += fit.pi_lower <= new_centre <= fit.pi_upper
        tau2.append(fit.tau2)
    assert 0.88 <= ci_hits / runs <= 0.995
    assert 0.88 <= pi_hits / runs <= 0.995
    # REML's tau² is nearly unbiased here; the mean over 200 runs is within 25% of 0.09
    assert np.mean(tau2) == pytest.approx(het.log_hazard_sd**2, rel=0.25)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"centres": 0}, "centres must be a positive whole number"),
        ({"centre_heterogeneity": CentreHeterogeneity()}, "needs centres=K"),
        ({"centres": 3, "centre_heterogeneity": CentreHeterogeneity(sizes=(1.0, 2.0))}, "2 sizes for 3 centres"),
    ],
)
def test_bad_centre_settings_get_one_clear_line(kwargs: dict, words: str) -> None:
    with pytest.raises(UserInputError, match=words):
        generate(100, **kwargs)


def test_a_negative_sd_is_refused() -> None:
    with pytest.raises(UserInputError, match=r"log_hazard_sd is -0\.1"):
        CentreHeterogeneity(log_hazard_sd=-0.1)
