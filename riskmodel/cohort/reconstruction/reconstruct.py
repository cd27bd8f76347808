"""Build the bundled 36-patient cohort, ``data/reconstructed_cohort.csv``.

No patient-level data of the study were published. This module reconstructs 36 *synthetic*
records whose marginals match the published cohort description (``data/published_targets.json``,
a copy of the study's figures): every group size of Table 1 exactly, and the min, max and median
of each continuous characteristic. Joint structure is induced by rank assignment: larger lesions
get lower D90 and more seeds, and responders tend to have higher D90 and smaller lesions.
Starting outcomes come from the synthetic DGP (:mod:`riskmodel.cohort.synthetic`), drawn until
they meet the published constraints (25 deaths, all between months 3 and 26, follow-up at most
29 months). :mod:`riskmodel.cohort.reconstruction.calibrate` then anneals outcomes and block assignments towards
every Kaplan-Meier cell, median and significance of Tables 1-2, keeping every marginal exact.

Rebuild with ``python -m riskmodel.cohort.reconstruction.reconstruct`` (deterministic for a given seed; about
80 s). It writes the cohort and ``data/RECONSTRUCTION.md``, the calibration report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from riskmodel.cohort.bundled import bundled_cohort_path
from riskmodel.cohort.contract import COLUMNS, RESPONSE_CATEGORIES
from riskmodel.cohort.load import write_csv
from riskmodel.cohort.synthetic import simulate_outcomes

__all__ = ["CALIBRATION_STEPS", "DEFAULT_SEED", "reconstruct"]

DEFAULT_SEED = 2013
CALIBRATION_STEPS = 30_000
N = 36
DEATHS = 25
MAX_FOLLOW_UP = 29.0
DEATH_WINDOW = (3.0, 26.0)


def _sorted_marginal(
    rng: np.random.Generator,
    *,
    lo: float,
    hi: float,
    middle: tuple[float, float],
    groups: tuple[tuple[float, int], ...] = (),
    decimals: int = 1,
) -> np.ndarray:
    """N sorted values with min ``lo``, max ``hi``, the two middle order statistics ``middle``,
    and ``count`` values below each ``edge`` of ``groups`` (left-closed groups, cumulative)."""
    step = 10.0**-decimals
    upper = np.full(N, hi, dtype=float)
    lower = np.full(N, lo, dtype=float)
    start = 0
    for edge, count in groups:  # positions start..start+count-1 lie below edge, the rest at or above it
        upper[start : start + count] = np.minimum(upper[start : start + count], edge - step)
        lower[start + count :] = np.maximum(lower[start + count :], edge)
        start += count
    half = N // 2
    upper[: half - 1] = np.minimum(upper[: half - 1], middle[0])
    lower[half + 1 :] = np.maximum(lower[half + 1 :], middle[1])
    values = np.round(rng.uniform(lower, upper), decimals)
    values = np.clip(values, lower, upper)
    values[0], values[-1] = lo, hi
    values[half - 1], values[half] = middle
    values = np.sort(values)
    below = [int((values < edge).sum()) for edge, _ in groups]
    if (values[0], values[-1], np.median(values)) != (lo, hi, sum(middle) / 2) or below != list(
        np.cumsum([c for _, c in groups])
    ):
        raise AssertionError("marginal construction broke its own constraints")  # pragma: no cover
    return values


def _assign(sorted_values: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Give the smallest value to the lowest score, and so on."""
    out = np.empty_like(sorted_values)
    out[np.argsort(score, kind="stable")] = sorted_values
    return out


def _z(x: np.ndarray) -> np.ndarray:
    return np.asarray((x - x.mean()) / x.std(), dtype=float)


def reconstruct(seed: int = DEFAULT_SEED, calibration_steps: int = CALIBRATION_STEPS) -> pd.DataFrame:
    """The 36 reconstructed records, canonical columns, typed like a validated cohort.

    ``calibration_steps=0`` skips the calibration (the marginals and starting outcomes only).
    """
    rng = np.random.default_rng(seed)
    perm = rng.permutation

    volume = perm(_sorted_marginal(rng, lo=7, hi=66, middle=(21.2, 21.2), groups=((20, 11),)))
    d90 = _assign(
        _sorted_marginal(rng, lo=47, hi=151, middle=(104, 104), groups=((110, 21),)),
        -0.6 * _z(np.log(volume)) + 0.8 * rng.normal(size=N),
    )
    seeds = _assign(
        _sorted_marginal(rng, lo=14, hi=100, middle=(37, 38), decimals=0),
        0.8 * _z(np.log(volume)) + 0.6 * rng.normal(size=N),
    )
    interval = perm(_sorted_marginal(rng, lo=2, hi=50.7, middle=(8.6, 8.6), groups=((10, 21),)))
    skin = _assign(
        _sorted_marginal(rng, lo=2.22, hi=139.41, middle=(32.96, 32.96), decimals=2), 0.5 * _z(d90) + rng.normal(size=N)
    )
    age = perm(_ages(rng))
    kps = perm(np.array([60] * 5 + [70] * 8 + [80] * 12 + [90] * 11))
    ebrt = perm(
        np.array([20, 40, 50, 50] + list(rng.choice([50.4, 54, 56, 59.4], 13)) + [60] * 15 + [61.2, 64, 66, 66])
    )
    fraction_gy = np.select([ebrt <= 20, np.isin(ebrt, [50.4, 54, 59.4, 61.2])], [4.0, 1.8], 2.0)
    activity = perm(
        np.array(
            [
                0.3,
                *list(rng.choice([0.3, 0.35, 0.4, 0.45], 16)),
                0.5,
                0.5,
                *list(rng.choice([0.5, 0.55, 0.6, 0.7, 0.8], 16)),
                0.8,
            ]
        )
    )
    prescription = np.clip(np.round(d90 / rng.uniform(0.9, 1.1, N) / 5) * 5, 45, 140)
    prescription[np.argmin(d90)], prescription[np.argmax(d90)] = 45, 140

    latent = 0.5 * (d90 - 104) / 10 - 0.9 * np.log(volume / 21.2) + rng.logistic(size=N)
    counts = dict(zip(("PD", "SD", "PR", "CR"), (10, 6, 18, 2), strict=True))
    response = _assign(np.repeat(np.array(list(counts), dtype=object), list(counts.values())), latent)

    frame = pd.DataFrame(
        {
            "patient_id": [f"RECON-{i:02d}" for i in range(1, N + 1)],
            "age_years": age,
            "sex": pd.Categorical(perm(np.array(["M"] * 32 + ["F"] * 4)), categories=["M", "F"]),
            "kps": kps.astype(np.int64),
            "pathological_grade": pd.Categorical(
                perm(np.array(["low"] * 21 + ["moderate"] * 11 + ["high"] * 4)), categories=["low", "moderate", "high"]
            ),
            "t_stage": perm(np.array(["T1"] * 18 + ["T2"] * 8 + ["T3"] * 10)),
            "n_stage": perm(np.array(["N0"] * 9 + ["N1"] * 8 + ["N2"] * 19)),
            "m_stage": perm(np.array(["M0"] * 27 + ["M1"] * 9)),
            "prior_ebrt_dose_gy": ebrt,
            "prior_ebrt_fractions": np.round(ebrt / fraction_gy).astype(np.int64),
            "recurrence_interval_months": interval,
            "lesion_volume_cm3": volume,
            "seed_activity_mci": activity,
            "seed_count": seeds.astype(np.int64),
            "prescription_dose_gy": prescription,
            "d90_gy": d90,
            "d100_gy": np.round(d90 * rng.uniform(0.5, 0.75, N), 1),
            "skin_d2cc_gy": skin,
            "response_3mo": pd.Categorical(response, categories=list(reversed(RESPONSE_CATEGORIES)), ordered=True),
            "post_implant_chemo": pd.array(perm(np.array([True] * 32 + [False] * 4)), dtype="boolean"),
        }
    )
    _draw_outcomes(frame, rng)
    if calibration_steps:
        from riskmodel.cohort.reconstruction.calibrate import calibrate

        frame = calibrate(frame, seed=seed, iterations=calibration_steps).frame
    return frame[[c.name for c in COLUMNS]]


def _ages(rng: np.random.Generator) -> np.ndarray:
    """Whole-year ages 47-77, 11 under 60, summing to 2274 (mean 63.17, the printed 'median')."""
    ages = np.concatenate([[47], rng.integers(48, 60, 10), rng.integers(60, 77, 24), [77]])
    target = 2274
    while (gap := target - int(ages.sum())) != 0:
        i = int(rng.integers(1, N - 1))
        lo, hi = (48, 59) if i < 11 else (60, 76)
        ages[i] = int(np.clip(ages[i] + np.sign(gap), lo, hi))
    return ages.astype(float)


def _draw_outcomes(frame: pd.DataFrame, rng: np.random.Generator) -> None:
    for _ in range(100_000):
        simulate_outcomes(frame, rng, admin_months=MAX_FOLLOW_UP - 3.0)
        deaths = frame["os_event"] == 1
        death_times = frame.loc[deaths, "os_months"]
        if deaths.sum() == DEATHS and death_times.between(*DEATH_WINDOW).all():
            return
    raise RuntimeError("no outcome draw met the published constraints")  # pragma: no cover


def main(argv: list[str] | None = None) -> None:
    """Rebuild the bundled cohort file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=bundled_cohort_path())
    parser.add_argument("--steps", type=int, default=CALIBRATION_STEPS, help="annealing steps of the calibration")
    args = parser.parse_args(argv)
    from riskmodel.cohort.reconstruction.calibrate import markdown_report

    frame = reconstruct(args.seed, args.steps)
    write_csv(frame, args.out)
    report = args.out.with_name("RECONSTRUCTION.md")
    report.write_text(markdown_report(frame, seed=args.seed, iterations=args.steps), encoding="utf-8")
    print(f"wrote {args.out} ({N} reconstructed patients, seed {args.seed}) and {report}")


if __name__ == "__main__":
    main()
