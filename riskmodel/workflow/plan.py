"""The evaluation plan of ``riskmodel train``: how each model is validated, sized to the data.

With ``evaluation.plan: auto`` (the default) the scheme follows the number of events of interest
``E`` of each endpoint, and any ``evaluation`` key the experiment sets explicitly wins:

=====================  ==========================  ==================================  ==========
events of interest E   internal validation         optimism bootstrap (Cox, Fine-Gray)  trees
=====================  ==========================  ==================================  ==========
E < 100                3-fold CV repeated 10 times  200 resamples                       none
100 ≤ E < 1,000        5-fold CV repeated 2 times   100 resamples                       none
1,000 ≤ E < 10,000     5-fold CV, once              none                                none
E ≥ 10,000             one held-out split (80/20)   none                                none
=====================  ==========================  ==================================  ==========

Why: with few events the optimism of a regression model is large and the bootstrap (Harrell's
optimism correction, Steyerberg 2019 ch. 17) is the most efficient estimate of it; repeated CV
steadies the small test folds (Steyerberg 2019 ch. 17.2). As events grow into the thousands the
optimism of a prespecified regression model is negligible (Riley et al. 2020, BMJ 368:m441: the
expected shrinkage approaches 1), one K-fold pass is precise, and beyond ~10,000 events a random
held-out fifth of the cohort is itself a large validation set (Collins et al. 2024, TRIPOD+AI
explanation and elaboration, BMJ 385:e078378, item 12). Tree ensembles never get the optimism
bootstrap: each resample repeats ~63 % of the patients, which the trees memorise, so it
under-corrects; their honest figure is the cross-validated (or held-out) one.

``evaluation.plan: fixed`` keeps the experiment's values (3×10-fold CV and 200 resamples for every
family unless set), as riskmodel did before the plan existed.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import IO, Any

import numpy as np

from riskmodel.config import ExperimentConfig
from riskmodel.errors import NUMERICAL_FAILURES, RiskModelWarning, is_own_error
from riskmodel.models.competing_trees import CauseSpecificForest
from riskmodel.models.forest import SurvivalForest
from riskmodel.models.registry import SPECS, build_family
from riskmodel.workflow.prepare import PreparedEndpoint, make_pipeline

__all__ = ["RULE", "EvaluationPlan", "ProgressLines", "Scheme", "scheme_for"]

# (fewer than this many events, n_splits (0: a held-out split), n_repeats, regression bootstrap)
RULE: tuple[tuple[float, int, int, int], ...] = (
    (100, 3, 10, 200),
    (1_000, 5, 2, 100),
    (10_000, 5, 1, 0),
    (math.inf, 0, 1, 0),
)
HOLDOUT = 0.2  # the held-out fraction of the largest cohorts
TIMING_SAMPLE = 2000  # patients behind the quick timing of one fit


@dataclass(frozen=True)
class Scheme:
    """How one (endpoint, family) is validated."""

    endpoint: str
    family: str
    n_events: int
    n_splits: int  # 0: a single held-out split instead of cross-validation
    n_repeats: int
    holdout: float  # the held-out fraction (a held-out split only)
    bootstrap: int
    bootstrap_reason: str

    @property
    def fits(self) -> int:
        """Pipeline fits: every CV fold (or the held-out fit), every resample, and the final fit."""
        return (self.n_splits * self.n_repeats if self.n_splits else 1) + self.bootstrap + 1

    def describe_cv(self) -> str:
        """The internal validation in words."""
        if not self.n_splits:
            return f"one held-out split ({100 * (1 - self.holdout):.0f}/{100 * self.holdout:.0f}, stratified)"
        times = f"repeated {self.n_repeats} times" if self.n_repeats > 1 else "once"
        return f"{self.n_splits}-fold cross-validation {times}"

    def describe_bootstrap(self) -> str:
        """The bootstrap in words, or why there is none."""
        if self.bootstrap:
            return f"optimism bootstrap, {self.bootstrap} resamples ({self.bootstrap_reason})"
        return f"no bootstrap: {self.bootstrap_reason}"

    def estimators(self) -> dict[str, str]:
        """Which estimator each recorded figure comes from (MLflow tags)."""
        out = {"estimator.mean_sd_folds": self.describe_cv(), "estimator.bootstrap": self.describe_bootstrap()}
        out["estimator.honest"] = (
            "bootstrap optimism-corrected (_corrected) and cross-validated (_mean)"
            if self.bootstrap and not SPECS[self.family].memorises_resamples
            else ("held-out (_mean)" if not self.n_splits else "cross-validated (_mean)")
        )
        return out


def scheme_for(config: ExperimentConfig, endpoint: str, family: str, n_events: int) -> Scheme:
    """The rule of this module's table for one (endpoint, family); explicit settings win."""
    ev = config.evaluation
    explicit = ev.model_fields_set if ev.plan == "auto" else {"n_splits", "n_repeats", "bootstrap"}
    _, splits, repeats, boot = next(row for row in RULE if n_events < row[0])
    if boot:
        reason = f"{n_events} events (< {'100' if n_events < 100 else '1,000'}): a regression model's optimism matters"
    else:
        reason = f"{n_events} events: the optimism of a prespecified model is negligible; the cross-validated "
        reason += "(or held-out) figure suffices"
    if SPECS[family].memorises_resamples:
        boot = 0
        reason = "a tree ensemble, which the optimism bootstrap under-corrects; its cross-validated (or held-out) "
        reason += "figure is the honest one"
    if "n_splits" in explicit or ("n_repeats" in explicit and not splits):
        splits = ev.n_splits
    if "n_repeats" in explicit:
        repeats = ev.n_repeats
    if "bootstrap" in explicit:
        boot = ev.bootstrap
        reason = "set by evaluation.bootstrap" if ev.plan == "auto" else "evaluation.plan: fixed"
        if not boot:
            reason = "evaluation.bootstrap: 0"
    holdout = 0.0
    if ev.holdout is not None:
        splits, repeats, holdout = 0, 1, ev.holdout
    elif not splits:
        holdout = HOLDOUT
    return Scheme(endpoint, family, n_events, splits, repeats, holdout, boot, reason)


@dataclass
class EvaluationPlan:
    """Every (endpoint, family)'s :class:`Scheme`, the number of fits and an estimated duration."""

    mode: str
    schemes: dict[tuple[str, str], Scheme]
    seconds_per_fit: dict[tuple[str, str], float] = field(default_factory=dict)  # from one timed fit
    timed_on: int = 0  # patients in the timed fit

    @classmethod
    def from_data(
        cls,
        config: ExperimentConfig,
        prepared: dict[str, PreparedEndpoint],
        families: Iterable[str] | None = None,
        *,
        time_fits: bool = False,
    ) -> EvaluationPlan:
        """The plan of ``train`` on these endpoints; ``time_fits`` times one fit per family."""
        names = list(families if families is not None else config.models.enabled())
        schemes = {}
        for endpoint, prep in prepared.items():
            events = int(np.asarray(prep.data.y["event"]).sum())
            for family in names:
                if SPECS[family].competing_only and not prep.competing:
                    continue
                schemes[endpoint, family] = scheme_for(config, endpoint, family, events)
        plan = cls(config.evaluation.plan, schemes)
        if time_fits:
            plan.time_one_fit(config, prepared)
        return plan

    def scheme(self, endpoint: str, family: str) -> Scheme:
        """The scheme of one (endpoint, family)."""
        return self.schemes[endpoint, family]

    @property
    def total_fits(self) -> int:
        """Pipeline fits of the whole train."""
        return sum(s.fits for s in self.schemes.values())

    def time_one_fit(
        self,
        config: ExperimentConfig,
        prepared: dict[str, PreparedEndpoint],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """Time one fit of each family on up to :data:`TIMING_SAMPLE` patients of each endpoint's
        data; the estimate scales it to the endpoint's patients by :func:`growth`. ``clock``: the
        wall clock, or ``time.thread_time`` while other processes share the cores (``train``'s
        workers starting: a fit of a cohort that small uses one core, so its CPU time is its
        duration on a core of its own)."""
        rng = np.random.default_rng(config.seed)
        for (endpoint, family), _ in self.schemes.items():
            sd = prepared[endpoint].data
            n = len(sd.y)
            rows = np.sort(rng.choice(n, TIMING_SAMPLE, replace=False)) if n > TIMING_SAMPLE else np.arange(n)
            params = config.models.enabled()[family].model_dump()
            pipe = make_pipeline(
                config, build_family(family, params, config.seed, competing=prepared[endpoint].competing)
            )
            seconds = fit_seconds(pipe, sd.X.iloc[rows], sd.y[rows], times=2 if len(rows) <= 500 else 1, clock=clock)
            if seconds is None:
                continue
            self.seconds_per_fit[endpoint, family] = seconds * growth(pipe[-1], n / len(rows))
            self.timed_on = max(self.timed_on, len(rows))

    def estimated_seconds(self) -> float | None:
        """Fits × the timed seconds a fit, summed (None without a timing)."""
        if not self.seconds_per_fit:
            return None
        return sum(s.fits * self.seconds_per_fit.get(key, 0.0) for key, s in self.schemes.items())

    def describe(self) -> str:
        """The plan as printed before any fit."""
        endpoints = sorted({e for e, _ in self.schemes}, key=list(dict.fromkeys(e for e, _ in self.schemes)).index)
        families = list(dict.fromkeys(f for _, f in self.schemes))
        lines = [
            f"evaluation plan ({self.mode}): {len(endpoints)} endpoint(s) × {len(families)} famil"
            f"{'y' if len(families) == 1 else 'ies'} = {len(self.schemes)} models, {self.total_fits} fits"
        ]
        for (endpoint, family), s in self.schemes.items():
            lines.append(
                f"  {endpoint.upper()} {family}: {s.n_events} events; {s.describe_cv()}; {s.describe_bootstrap()}; "
                f"{s.fits} fits"
            )
        seconds = self.estimated_seconds()
        if seconds is not None:
            lines.append(
                f"  estimated duration of the fits ≈ {clock(seconds)} (one fit of each family timed on "
                f"{self.timed_on} patients, scaled to each endpoint's; metrics, explanations and records come on top)"
            )
        return "\n".join(lines)

    def params(self) -> dict[str, Any]:
        """The plan as MLflow params of the parent run."""
        out: dict[str, Any] = {"plan.mode": self.mode, "plan.total_fits": self.total_fits}
        for (endpoint, family), s in self.schemes.items():
            out[f"plan.{endpoint}.{family}"] = f"{s.describe_cv()}; {s.describe_bootstrap()}"[:500]
        seconds = self.estimated_seconds()
        if seconds is not None:
            out["plan.estimated_seconds"] = round(seconds, 1)
        return out

    def restricted(self, endpoint: str, family: str) -> EvaluationPlan:
        """A plan of one (endpoint, family) only."""
        return replace(self, schemes={(endpoint, family): self.schemes[endpoint, family]})


def fit_seconds(pipe: Any, X: Any, y: Any, times: int, clock: Callable[[], float] = time.perf_counter) -> float | None:
    """The quickest of ``times`` fits by ``clock`` (a small sample is timed twice: the first fit also
    pays one-off costs such as imports and compilation); None if the fit fails numerically."""
    best = math.inf
    for _ in range(times):
        start = clock()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RiskModelWarning)
                pipe.fit(X, y)
        except NUMERICAL_FAILURES as exc:
            if is_own_error(exc):
                raise
            return None
        best = min(best, clock() - start)
    return best


def growth(estimator: Any, ratio: float) -> float:
    """How much longer a fit on ``ratio`` times the patients takes: √ratio for a forest, whose trees
    each see 30·√n patients above 1,000 (:mod:`riskmodel.models.forest`), else ratio (Cox's Newton
    steps and xgboost's histogram passes are linear in n).

    >>> growth(object(), 4.0), growth(SurvivalForest(), 4.0)
    (4.0, 2.0)
    """
    inner = getattr(estimator, "estimator", estimator)  # multiple imputation wraps the family
    forest = isinstance(inner, SurvivalForest | CauseSpecificForest) and inner.max_samples == "auto"
    return math.sqrt(ratio) if forest and ratio > 1 else ratio


def clock(seconds: float) -> str:
    """``h:mm:ss`` of a duration."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressLines:
    """Progress as plain lines (for a stream that is not a terminal): at most one line every
    ``every_seconds``, plus one at each ``every_fraction`` of the fits and at the end, with an ETA
    from the mean time a fit so far.

    A call with an unchanged ``done`` and a new ``label`` names the step under way (``"OS rsf:
    recording the run"``) without counting a fit. Between fits, :meth:`heartbeat` (a daemon thread
    started by ``with lines:``) repeats the last line with "still working" every
    ``heartbeat_seconds`` of silence, so a long step after a fit (calibration, explanations,
    recording at registry scale) never leaves the log quiet for minutes.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        every_seconds: float = 10.0,
        every_fraction: float = 0.1,
        heartbeat_seconds: float = 60.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.every_seconds, self.every_fraction = every_seconds, every_fraction
        self.heartbeat_seconds = heartbeat_seconds
        self.start = self.last = time.monotonic()
        self.step = 0
        self.latest: tuple[int, int, str] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressLines:
        self._thread = threading.Thread(target=self._beat, name="riskmodel-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(min(self.heartbeat_seconds, 5.0)):
            self.heartbeat()

    def heartbeat(self) -> None:
        """Repeat the last line, marked "still working", if nothing was printed for a while."""
        with self._lock:
            if self.latest is None or time.monotonic() - self.last < self.heartbeat_seconds:
                return
            self._print(*self.latest, note=", still working")

    def __call__(self, done: int, total: int, label: str) -> None:
        with self._lock:
            self.latest = (done, total, label)
            now = time.monotonic()
            step = int(done / max(total, 1) / self.every_fraction) if self.every_fraction else 0
            if done < total and step == self.step and now - self.last < self.every_seconds:
                return
            self.step = step
            self._print(done, total, label)

    def _print(self, done: int, total: int, label: str, note: str = "") -> None:
        now = time.monotonic()
        self.last = now
        elapsed = now - self.start
        # from the mean time a fit once a twentieth of them is done: after the first fit alone the
        # start-up (processes, imports) would be spread over every fit to come (an ETA of hours)
        eta = elapsed / done * (total - done) if done and done >= 0.05 * total else math.nan
        shown = clock(eta) if math.isfinite(eta) else "?"
        print(
            f"train: {done}/{total} fits ({100 * done / max(total, 1):.0f}%), {label}, elapsed {clock(elapsed)}, "
            f"ETA {shown}{note}",
            file=self.stream,
            flush=True,
        )
