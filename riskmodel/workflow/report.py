"""``riskmodel report EXPERIMENT``: an experiment's cohort, prepared as ``train`` prepares it, into
the classical survival report.

A declared cohort (an experiment with a ``cohort:`` section) is read through its declaration; its
constant and all-missing covariates are left out with a note (:func:`drop_uninformative`, as in
``train``); each endpoint's cohort is held against Riley et al.'s minimum sample size for the
multivariable model (:func:`sample_size`, as in ``train``), so the report says "exploratory" where
the data, not the study, call for it. An experiment on the bundled study's contract gets the
study's report (:func:`riskmodel.reporting.build_report`), held against the same minimum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from riskmodel.cohort import Cohort
from riskmodel.config import ExperimentConfig
from riskmodel.errors import UserInputError, own_warnings_silenced
from riskmodel.reporting import build_declared_report, build_report
from riskmodel.stats.samplesize import SampleSize
from riskmodel.workflow.prepare import drop_uninformative, load_cohort, override, prepare_endpoints, sample_size

__all__ = ["experiment_report", "sample_sizes"]


def experiment_report(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    data: str | Path | None = None,
    endpoints: Sequence[str] | None = None,
    cutoffs: Mapping[str, float] | None = None,
) -> Path:
    """Write the survival report of ``config``'s cohort (``data`` and ``endpoints`` replace the
    experiment's) into ``out_dir``; returns the path of ``report.html``."""
    config = override(config, data=data, endpoints=endpoints, models=None)
    cohort = load_cohort(config)
    if config.cohort is None:
        sizes, _ = sample_sizes(config, cohort)  # an endpoint not assessed is labelled exploratory
        return build_report(
            cohort,
            out_dir,
            endpoints=config.endpoints,
            cutoffs=dict(cutoffs) if cutoffs else None,
            sample_sizes=sizes,
        )
    config, notes = drop_uninformative(config, cohort)
    sizes, problems = sample_sizes(config, cohort)
    return build_declared_report(
        cohort, config, out_dir, sample_sizes=sizes, notes=[*notes, *problems], cutoffs=cutoffs
    )


def sample_sizes(config: ExperimentConfig, cohort: Cohort) -> tuple[dict[str, SampleSize | None], list[str]]:
    """Riley et al.'s assessment of each endpoint's multivariable model, and a note for each
    endpoint that cannot be assessed (too few patients or events after the landmark)."""
    sizes: dict[str, SampleSize | None] = {}
    notes = []
    for endpoint in config.endpoints:
        try:
            with own_warnings_silenced():
                prepared = prepare_endpoints(config, cohort, [endpoint])[endpoint]
                sizes[endpoint] = sample_size(config, prepared)
        except UserInputError as exc:
            sizes[endpoint] = None
            notes.append(f"{endpoint.upper()}: no sample-size assessment ({exc}); read it as exploratory")
    return sizes, notes
