"""Synthetic cohorts of any size with a documented data-generating process (DGP).

The DGP mirrors the study's design, so the truth is known and models can be scored against it.

1. **Baseline covariates** are drawn independently, with distributions shaped like the study
   cohort (``shared/study/targets.json``), except for the treatment chain: the prescription falls
   with the prior EBRT dose, D90 follows the prescription and falls with lesion volume, and seed
   count grows with volume.
2. **Selection.** Like the study, every patient is alive and imaged at 3 months (time zero is the
   implant; no event happens before month 3 except a PD at the 3-month CT).
3. **Response** at the 3-month CT is ordinal (PD < SD < PR < CR) from the latent
   ``0.5·(D90 − 100)/10 − 0.9·log(volume/21) + 0.3·log(interval/8.6) + logistic noise``, cut at
   :data:`RESPONSE_CUTPOINTS`. **A PD is a local progression at month 3.**
4. **After the 3-month landmark**, two cause-specific Weibull hazards act on each patient:
   local progression (patients without PD) and death from any cause. Each is
   ``h(t) = (k/s)·(t/s)^(k−1)·exp(η)``, with ``t`` the months since the landmark and
   ``η = Σ β·x`` over the covariates centred at :data:`REFERENCE` (see :data:`LC_COEFFICIENTS`
   and :data:`OS_COEFFICIENTS`, log hazard ratios). Death ends local-control follow-up, so it is a
   competing event for LC.
5. **Censoring**: administrative, uniform over 0-36 months after the landmark, and loss to
   follow-up at 1 % per month.

Observed: ``os = 3 + min(T_death, C)``, ``lc = 3`` for PD, else ``3 + min(T_lp, T_death, C)``,
with ``lc_event`` true only for a local progression first. :func:`true_log_hazard` returns η, so
the oracle C-index after the 3-month landmark is the C-index of η.

**Fine-Gray truth** (:func:`fine_gray_sample`): a separate, covariates-only generator in which the
Fine-Gray model holds exactly (Fine & Gray 1999, JASA 94:496-509, section 5). Covariates are
independent standard normals Z; the event of interest has CIF₁(t | z) = 1 − (1 − p(1 − e^(−t)))^exp(zβ),
so P(cause 1 | z) = 1 − (1 − p)^exp(zβ); otherwise the cause is competing, with an exponential time of
rate exp(zβ₂) (β₂ = −β unless given). Censoring is independent and exponential (``censoring_rate``).
A patient's cause is drawn first (uniform u < P(cause 1 | z)), then the time by inverting CIF₁ at u
(cause 1) or from the exponential (competing).

Event rates with the defaults (measured on 1,000,000 patients, seed 0; sampling error < 0.1
points): OS events 71.1 %; LC events 56.4 % (27.7 % PD at the 3-month CT, 28.7 % progression
later); death without local progression 28.0 %; responses CR 5.6 %, PR 50.0 %, SD 16.7 %,
PD 27.7 % (the study's 2/18/6/10 of 36). Generating 1,000,000 patients takes about a second.

**Centres** (``generate(..., centres=K, centre_heterogeneity=CentreHeterogeneity(...))``), for
multi-centre and internal-external validation, with known heterogeneity. Each patient joins
centre j with probability ``sizes[j]`` (equal by default) and a ``centre`` column ("C01", "C02",
…) follows the canonical columns. Centre j has three true values, drawn once from their own
random stream (so the patients' other draws are the same as without centres):

- ``u_j ~ N(0, log_hazard_sd²)``, a **random effect on the baseline hazard**: both causes'
  hazards (local progression and death) in centre j are multiplied by ``exp(u_j)``, i.e. η becomes
  ``η + u_j`` in step 4. A model that ignores centres is then miscalibrated in centre j by
  about ``exp(u_j)`` in O/E and keeps a calibration slope of 1 (the covariate effects are
  common). Default tau = 0.3 on the log-hazard scale.
- ``a_j ~ N(0, age_sd_years²)`` and ``b_j ~ N(0, log_volume_sd²)``, **case-mix shifts**: centre
  j's ages are drawn around 63 + a_j years and its log lesion volumes around log(21) + b_j (then
  clipped and rounded as usual), which moves D90, the response and the hazards through the DGP.
  Default 0 (no case-mix shift).

:func:`centre_effects` returns the realised ``u_j``, ``a_j`` and ``b_j`` for a seed: the truth a
test compares pooled estimates and prediction intervals against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskmodel.cohort.contract import COLUMNS, M_STAGES, N_STAGES, RESPONSE_CATEGORIES, T_STAGES
from riskmodel.cohort.endpoints import RESPONSE_LANDMARK_MONTHS, Endpoint
from riskmodel.errors import UserInputError

__all__ = [
    "LC_COEFFICIENTS",
    "OS_COEFFICIENTS",
    "REFERENCE",
    "RESPONSE_CUTPOINTS",
    "WEIBULL",
    "CentreHeterogeneity",
    "centre_effects",
    "fine_gray_sample",
    "generate",
    "simulate_outcomes",
    "true_log_hazard",
]

# Centring values for the covariates of the hazards and of the response latent.
REFERENCE = {
    "d90_gy": 100.0,
    "lesion_volume_cm3": 21.0,
    "recurrence_interval_months": 8.6,
    "age_years": 60.0,
    "kps": 80.0,
}

# Log hazard ratios after the 3-month landmark. Terms:
#   d90_per_10gy: (D90 - 100)/10; log_volume: log(volume/21); log_interval: log(interval/8.6);
#   response_sd / response_pd: vs CR+PR; grade_moderate_or_high: vs low; t_ordinal, n_ordinal:
#   stage 0-4 / 0-3 per step; m1: M1 vs M0; age_per_10y: (age - 60)/10; kps_per_10: (KPS - 80)/10;
#   chemo: post-implant chemotherapy yes.
LC_COEFFICIENTS: dict[str, float] = {
    "d90_per_10gy": -0.20,
    "log_volume": 0.45,
    "log_interval": -0.25,
    "response_sd": 1.20,
    "response_pd": 0.0,  # PD patients have already progressed at month 3
    "grade_moderate_or_high": -0.60,
    "t_ordinal": 0.05,
    "n_ordinal": 0.0,
    "m1": 0.0,
    "age_per_10y": 0.0,
    "kps_per_10": 0.0,
    "chemo": 0.0,
}
OS_COEFFICIENTS: dict[str, float] = {
    "d90_per_10gy": -0.12,
    "log_volume": 0.30,
    "log_interval": -0.35,
    "response_sd": 0.90,
    "response_pd": 1.40,
    "grade_moderate_or_high": -0.20,
    "t_ordinal": 0.05,
    "n_ordinal": 0.10,
    "m1": 0.90,
    "age_per_10y": 0.15,
    "kps_per_10": -0.20,
    "chemo": -0.40,
}
# (shape k, scale s in months) of the baseline Weibull of each cause, after the landmark
WEIBULL = {"lc": (1.2, 9.0), "os": (1.1, 12.0)}
# Cut points of the response latent: below the first is PD, then SD, PR, above the last CR.
RESPONSE_CUTPOINTS = (-1.02, -0.05, 3.90)
ADMIN_FOLLOW_UP_MONTHS = 36.0
DROPOUT_PER_MONTH = 0.01

# the centres' random stream: numpy's SeedSequence of (seed, this), apart from the patients' own
_CENTRE_STREAM = 19


@dataclass(frozen=True)
class CentreHeterogeneity:
    """How centres differ (see the module docstring): SDs of the centre effects, relative sizes."""

    log_hazard_sd: float = 0.3
    age_sd_years: float = 0.0
    log_volume_sd: float = 0.0
    sizes: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("log_hazard_sd", "age_sd_years", "log_volume_sd"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise UserInputError(f"centre_heterogeneity: {name} is {value!r}; it must be a finite SD >= 0")
        if self.sizes is not None and (not self.sizes or not all(np.isfinite(x) and x > 0 for x in self.sizes)):
            raise UserInputError(f"centre_heterogeneity: sizes {self.sizes!r} must be positive numbers")


def centre_effects(centres: int, seed: int = 0, heterogeneity: CentreHeterogeneity | None = None) -> pd.DataFrame:
    """The true effects of :func:`generate`'s centres for this ``seed``: one row per centre.

    Columns ``centre`` ("C01", …), ``share`` (the probability of joining it),
    ``log_hazard_offset`` (u_j), ``age_shift_years`` (a_j) and ``log_volume_shift`` (b_j).
    """
    if not isinstance(centres, (int, np.integer)) or isinstance(centres, bool) or centres < 1:
        raise UserInputError(f"centres must be a positive whole number, got {centres!r}")
    het = heterogeneity or CentreHeterogeneity()
    k = int(centres)
    if het.sizes is not None and len(het.sizes) != k:
        raise UserInputError(f"centre_heterogeneity: {len(het.sizes)} sizes for {k} centres")
    sizes = np.ones(k) if het.sizes is None else np.asarray(het.sizes, dtype=float)
    rng = np.random.default_rng([seed, _CENTRE_STREAM])
    draws = rng.standard_normal((3, k))
    return pd.DataFrame(
        {
            "centre": [f"C{j + 1:02d}" for j in range(k)],
            "share": sizes / sizes.sum(),
            "log_hazard_offset": het.log_hazard_sd * draws[0],
            "age_shift_years": het.age_sd_years * draws[1],
            "log_volume_shift": het.log_volume_sd * draws[2],
        }
    )


def _centre_draws(
    n: int, seed: int, centres: int | None, heterogeneity: CentreHeterogeneity | None
) -> tuple[np.ndarray | None, pd.DataFrame | None]:
    if centres is None:
        if heterogeneity is not None:
            raise UserInputError("centre_heterogeneity needs centres=K (the number of centres)")
        return None, None
    effects = centre_effects(centres, seed, heterogeneity)
    rng = np.random.default_rng([seed, _CENTRE_STREAM, 1])
    return rng.choice(len(effects), n, p=effects["share"].to_numpy()), effects


_T_P = {"T1": 0.48, "T2": 0.22, "T3": 0.27, "T4": 0.03}
_N_P = {"N0": 0.25, "N1": 0.22, "N2": 0.50, "N3": 0.03}
_EBRT = np.array([40.0, 50.0, 50.4, 54.0, 56.0, 59.4, 60.0, 61.2, 64.0, 66.0])
_EBRT_P = np.array([0.03, 0.08, 0.10, 0.08, 0.08, 0.10, 0.40, 0.05, 0.04, 0.04])
_EBRT_FRACTION_GY = np.where(np.isin(_EBRT, [50.4, 54.0, 59.4, 61.2]), 1.8, 2.0)


def generate(
    n: int,
    seed: int = 0,
    *,
    lc_coefficients: Mapping[str, float] | None = None,
    os_coefficients: Mapping[str, float] | None = None,
    admin_follow_up_months: float = ADMIN_FOLLOW_UP_MONTHS,
    centres: int | None = None,
    centre_heterogeneity: CentreHeterogeneity | None = None,
) -> pd.DataFrame:
    """Draw ``n`` synthetic patients with the canonical columns (see the module docstring).

    Coefficient mappings override entries of :data:`LC_COEFFICIENTS` / :data:`OS_COEFFICIENTS`.
    The result is typed like a validated cohort (categoricals, booleans, float64). With
    ``centres=K`` a ``centre`` column follows, and the centres differ as ``centre_heterogeneity``
    says (default :class:`CentreHeterogeneity`: tau = 0.3 on the log baseline hazard).
    """
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise UserInputError(f"n must be a positive whole number of patients, got {n!r}")
    lc_beta = _merge(LC_COEFFICIENTS, lc_coefficients, "lc_coefficients")
    os_beta = _merge(OS_COEFFICIENTS, os_coefficients, "os_coefficients")
    rng = np.random.default_rng(seed)
    n = int(n)
    centre, effects = _centre_draws(n, seed, centres, centre_heterogeneity)
    shift = {"age_shift_years": np.zeros(n), "log_volume_shift": np.zeros(n), "log_hazard_offset": np.zeros(n)}
    if centre is not None and effects is not None:
        shift = {name: effects[name].to_numpy()[centre] for name in shift}

    age = np.clip(np.round(rng.normal(63.0, 7.5, n) + shift["age_shift_years"]), 40, 88)
    male = rng.random(n) < 0.89
    kps = rng.choice(np.array([60.0, 70.0, 80.0, 90.0, 100.0]), n, p=[0.12, 0.24, 0.33, 0.28, 0.03])
    grade = rng.choice(3, n, p=[0.58, 0.30, 0.12])  # low, moderate, high
    t = rng.choice([T_STAGES.index(k) for k in _T_P], n, p=list(_T_P.values()))
    nn = rng.choice([N_STAGES.index(k) for k in _N_P], n, p=list(_N_P.values()))
    m1 = rng.random(n) < 0.25
    ebrt_i = rng.choice(len(_EBRT), n, p=_EBRT_P)
    ebrt = _EBRT[ebrt_i]
    fractions = np.round(ebrt / _EBRT_FRACTION_GY[ebrt_i])
    interval = np.clip(np.exp(rng.normal(np.log(8.6), 0.8, n)), 2.0, 120.0).round(1)
    volume = np.clip(np.exp(rng.normal(np.log(21.0), 0.55, n) + shift["log_volume_shift"]), 2.0, 150.0).round(1)
    activity = rng.choice(np.round(np.arange(0.3, 0.81, 0.05), 2), n)
    prescription = np.clip(np.round((103 - 0.6 * (ebrt - 60) + rng.normal(0, 18, n)) / 5) * 5, 45, 180)
    d90 = np.clip(prescription * np.exp(rng.normal(0, 0.12, n)) * (volume / 21.0) ** -0.08, 30, 200).round(1)
    d100 = (d90 * rng.uniform(0.45, 0.75, n)).round(1)
    skin = np.clip(d90 * rng.beta(2.0, 4.5, n), 0.1, 160).round(2)
    seeds = np.clip(np.round(6.5 * volume**0.55 * prescription / 100 * np.sqrt(0.5 / activity)), 5, 150)
    chemo = rng.random(n) < 0.88

    latent = (
        0.5 * (d90 - REFERENCE["d90_gy"]) / 10
        - 0.9 * np.log(volume / REFERENCE["lesion_volume_cm3"])
        + 0.3 * np.log(interval / REFERENCE["recurrence_interval_months"])
        + rng.logistic(0, 1, n)
    )
    response = np.searchsorted(np.asarray(RESPONSE_CUTPOINTS), latent)  # 0 PD, 1 SD, 2 PR, 3 CR

    frame = pd.DataFrame(
        {
            "patient_id": _ids(n),
            "age_years": age,
            "sex": _categorical(np.where(male, 0, 1), ["M", "F"]),
            "kps": kps.astype(np.int64),
            "pathological_grade": _categorical(grade, ["low", "moderate", "high"]),
            "t_stage": _categorical(t, list(T_STAGES)),
            "n_stage": _categorical(nn, list(N_STAGES)),
            "m_stage": _categorical(m1.astype(int), list(M_STAGES)),
            "prior_ebrt_dose_gy": ebrt,
            "prior_ebrt_fractions": fractions.astype(np.int64),
            "recurrence_interval_months": interval,
            "lesion_volume_cm3": volume,
            "seed_activity_mci": activity,
            "seed_count": seeds.astype(np.int64),
            "prescription_dose_gy": prescription,
            "d90_gy": d90,
            "d100_gy": d100,
            "skin_d2cc_gy": skin,
            "response_3mo": _categorical(response, list(reversed(RESPONSE_CATEGORIES)), ordered=True),
            "post_implant_chemo": pd.array(chemo, dtype="boolean"),
        }
    )
    simulate_outcomes(frame, rng, lc_beta, os_beta, admin_follow_up_months, offset=shift["log_hazard_offset"])
    columns = [c.name for c in COLUMNS]
    if centre is not None and effects is not None:
        frame["centre"] = _categorical(centre, list(effects["centre"]))
        columns.append("centre")
    return frame[columns]


def _categorical(codes: np.ndarray, categories: list[str], ordered: bool = False) -> pd.Categorical:
    # pandas-stubs types codes as a Sequence[int]; an integer ndarray is what pandas documents
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories), ordered=ordered)  # type: ignore[arg-type]


def _merge(base: Mapping[str, float], override: Mapping[str, float] | None, name: str) -> dict[str, float]:
    merged = dict(base)
    if override:
        unknown = sorted(set(override) - set(base))
        if unknown:
            raise UserInputError(f"{name}: unknown terms {', '.join(unknown)}; known: {', '.join(base)}")
        merged.update(override)
    return merged


def _ids(n: int) -> np.ndarray:
    width = max(6, len(str(n)))
    return np.char.add("SYN-", np.char.zfill(np.arange(1, n + 1).astype(str), width)).astype(object)


def _terms(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    resp = frame["response_3mo"].astype(object).to_numpy()
    t_ord = {"T0": 0, "Tis": 0, "T1": 1, "T1a": 1, "T1b": 1, "T2": 2, "T3": 3, "T4": 4, "T4a": 4, "T4b": 4}
    return {
        "d90_per_10gy": (frame["d90_gy"].to_numpy(float) - REFERENCE["d90_gy"]) / 10,
        "log_volume": np.log(frame["lesion_volume_cm3"].to_numpy(float) / REFERENCE["lesion_volume_cm3"]),
        "log_interval": np.log(
            frame["recurrence_interval_months"].to_numpy(float) / REFERENCE["recurrence_interval_months"]
        ),
        "response_sd": (resp == "SD").astype(float),
        "response_pd": (resp == "PD").astype(float),
        "grade_moderate_or_high": (frame["pathological_grade"].astype(object).to_numpy() != "low").astype(float),
        "t_ordinal": frame["t_stage"].astype(object).map(t_ord).to_numpy(float),
        "n_ordinal": frame["n_stage"].astype(object).map({k: i for i, k in enumerate(N_STAGES)}).to_numpy(float),
        "m1": (frame["m_stage"].astype(object).to_numpy() == "M1").astype(float),
        "age_per_10y": (frame["age_years"].to_numpy(float) - REFERENCE["age_years"]) / 10,
        "kps_per_10": (frame["kps"].to_numpy(float) - REFERENCE["kps"]) / 10,
        "chemo": frame["post_implant_chemo"].to_numpy(dtype=float, na_value=0.0),
    }


def true_log_hazard(
    frame: pd.DataFrame, endpoint: Endpoint, coefficients: Mapping[str, float] | None = None
) -> np.ndarray:
    """The true log hazard η after the 3-month landmark, for any frame with canonical columns.

    For LC it is the cause-specific hazard of local progression; PD patients have their event at
    the landmark and are not at risk after it.
    """
    default = LC_COEFFICIENTS if endpoint == "lc" else OS_COEFFICIENTS
    beta = _merge(default, coefficients, "coefficients")
    terms = _terms(frame)
    return sum((beta[k] * terms[k] for k in beta), np.zeros(len(frame)))


def _weibull(rng: np.random.Generator, eta: np.ndarray, shape: float, scale: float) -> np.ndarray:
    # S(t) = exp(-(t/s)^k · e^η)  =>  T = s · (E · e^-η)^(1/k), E ~ Exp(1)
    return np.asarray(scale * (rng.standard_exponential(len(eta)) * np.exp(-eta)) ** (1 / shape), dtype=float)


def simulate_outcomes(
    frame: pd.DataFrame,
    rng: np.random.Generator,
    lc_beta: Mapping[str, float] = LC_COEFFICIENTS,
    os_beta: Mapping[str, float] = OS_COEFFICIENTS,
    admin_months: float = ADMIN_FOLLOW_UP_MONTHS,
    offset: np.ndarray | None = None,
) -> None:
    """Add ``os_*`` and ``lc_*`` columns to ``frame`` in place, by steps 2-5 of the DGP.

    ``offset`` (per patient) is added to both causes' log hazards: a centre's ``u_j``.
    """
    n = len(frame)
    landmark = RESPONSE_LANDMARK_MONTHS
    extra = np.zeros(n) if offset is None else np.asarray(offset, dtype=float)
    t_lp = _weibull(rng, true_log_hazard(frame, "lc", lc_beta) + extra, *WEIBULL["lc"])
    t_death = _weibull(rng, true_log_hazard(frame, "os", os_beta) + extra, *WEIBULL["os"])
    censor = np.minimum(rng.uniform(0, admin_months, n), rng.exponential(1 / DROPOUT_PER_MONTH, n))
    pd_at_scan = frame["response_3mo"].astype(object).to_numpy() == "PD"
    os_time = np.minimum(t_death, censor)
    lc_time = np.minimum(t_lp, os_time)
    frame["os_months"] = np.round(landmark + os_time, 2)
    frame["os_event"] = (t_death <= censor).astype(np.int64)
    frame["lc_months"] = np.where(pd_at_scan, landmark, np.minimum(np.round(landmark + lc_time, 2), frame["os_months"]))
    frame["lc_event"] = (pd_at_scan | (t_lp <= os_time)).astype(np.int64)


def fine_gray_sample(
    n: int,
    beta: np.ndarray | list[float],
    p: float = 0.3,
    seed: int = 0,
    *,
    competing_beta: np.ndarray | list[float] | None = None,
    censoring_rate: float = 0.2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, time, cause) of ``n`` patients for which the Fine-Gray model with coefficients ``beta``
    is true (see the module docstring); cause is 0 censored, 1 the event of interest, 2 competing."""
    b = np.asarray(beta, dtype=float).ravel()
    b2 = -b if competing_beta is None else np.asarray(competing_beta, dtype=float).ravel()
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise UserInputError(f"n must be a positive whole number of patients, got {n!r}")
    if not 0 < p < 1 or b2.size != b.size or censoring_rate <= 0:
        raise UserInputError("fine_gray_sample: need 0 < p < 1, len(competing_beta) == len(beta), censoring_rate > 0")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((int(n), b.size))
    scale = np.exp(X @ b)
    u = rng.random(int(n))
    first = u < 1 - (1 - p) ** scale
    # invert CIF1(t) = u: 1 - e^-t = (1 - (1 - u)^(1/scale)) / p
    frac = np.where(first, -np.expm1(np.log1p(-u) / scale) / p, 0.0)
    t_first = -np.log1p(-np.clip(frac, 0.0, 1 - 1e-16))
    t_other = rng.standard_exponential(int(n)) / np.exp(X @ b2)
    t_event = np.where(first, t_first, t_other)
    censor = rng.standard_exponential(int(n)) / censoring_rate
    cause = np.where(t_event <= censor, np.where(first, 1, 2), 0).astype(np.int8)
    return X, np.minimum(t_event, censor), cause
