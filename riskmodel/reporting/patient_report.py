"""Per-patient reports (``riskmodel score --report DIR``): one self-contained HTML page per patient.

Each page shows, for every model given (say an LC and an OS model):

* the predicted survival curve with the horizons marked, and an uncertainty band whose source is
  stated: the spread of the forest's trees (2.5th-97.5th percentile of the per-tree curves), or,
  for Cox, the coefficients' sampling uncertainty (draws from the normal approximation, baseline
  hazard held fixed); boosting keeps no uncertainty estimate, and the page says so;
* SHAP waterfalls for the risk score and for S(12 months) (:mod:`riskmodel.explain`);
* the patient's inputs against the middle of the training data (5th smallest to 5th largest
  value; ages above 89 shown as 90+), with flags;
* a D90 what-if curve: S(12 months) as D90 sweeps 60-160 Gy, everything else held fixed, with
  the patient's own D90 marked, labelled as a model association and not a causal dose-response.

The only identifier on a page, and in its file name, is the salted pseudonym
(:func:`riskmodel.privacy.pseudonym`). Every file passes the PHI guard before it is moved into
place.
"""

from __future__ import annotations

import copy
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskmodel.core.files import staged_folder
from riskmodel.errors import UserInputError, require_writable
from riskmodel.explain import explain
from riskmodel.features.safe_harbor import shown_value
from riskmodel.models import CoxPH, SurvivalForest
from riskmodel.models.base import proportional_survival
from riskmodel.privacy import PhiGuard, pseudonym
from riskmodel.reporting.plots import figure_html, pyplot, shap_waterfall
from riskmodel.scoring import RiskModel
from riskmodel.stats import step_values

__all__ = ["WHAT_IF_D90", "survival_band", "write_patient_reports"]

WHAT_IF_D90 = np.arange(60.0, 160.01, 2.5)
EXPLAIN_HORIZON = 12.0
CAUSAL_WARNING = (
    "Model association, not a causal dose-response: the model learned how outcomes differed between "
    "patients who received different doses, and those patients differed in other ways too."
)


def survival_band(model: RiskModel, Z: np.ndarray, grid: np.ndarray, draws: int = 200) -> tuple[Any, Any, str]:
    """(lower, upper, how) of a 95 % band around one patient's S(t) on ``grid``; bounds None if none."""
    estimator = model.estimator
    if isinstance(estimator, SurvivalForest) and not estimator.model_.low_memory:
        rsf = estimator.model_
        Xb = estimator._binned(Z)
        idx = np.searchsorted(rsf.unique_times_, grid, side="right") - 1
        curves = np.array([t.predict_survival_function(Xb, return_array=True)[0] for t in rsf.estimators_])
        per_tree = np.where(idx[None, :] >= 0, curves[:, np.clip(idx, 0, None)], 1.0)
        low, high = np.percentile(per_tree, [2.5, 97.5], axis=0)
        return low, high, "band: 2.5th-97.5th percentile of the forest's individual trees (their spread)"
    if isinstance(estimator, CoxPH):
        information = getattr(estimator, "information_", None)
        if information is None:
            return None, None, "no band: this model file predates the stored information matrix"
        try:
            cov = np.linalg.inv(information)
            np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            return None, None, "no band: the Cox information matrix is singular"
        rng = np.random.default_rng(0)
        betas = rng.multivariate_normal(estimator.coef_, cov, size=draws)
        eta = (Z[0] - estimator.mean_) @ betas.T
        surv = proportional_survival(eta, step_values(estimator.event_times_, estimator.baseline_cumhaz_, grid))
        low, high = np.percentile(surv, [2.5, 97.5], axis=0)
        return (
            low,
            high,
            "band: 95% of curves from the coefficients' sampling uncertainty (normal approximation, baseline "
            "hazard held fixed)",
        )
    return None, None, "no band: gradient boosting keeps no uncertainty estimate"


def _curve_figure(parts: list[tuple[RiskModel, np.ndarray]]) -> tuple[Any, list[str]]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    notes = []
    for k, (model, Z) in enumerate(parts):
        grid = np.linspace(0.0, model.max_time, 200)
        surv = model.estimator.predict_survival(Z, grid).to_numpy()[0]
        low, high, how = survival_band(model, Z, grid)
        label = f"{model.endpoint.upper()} ({model.family})"
        ax.step(grid, surv, where="post", color=f"C{k}", lw=1.8, label=label)
        if low is not None:
            ax.fill_between(grid, low, high, step="post", color=f"C{k}", alpha=0.18, lw=0)
        for h in model.horizons:
            ax.axvline(h, color="0.75", lw=0.8, ls=":")
        notes.append(f"{label}: {how}.")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"months after {parts[0][0].time_origin}")
    ax.set_ylabel("predicted probability event-free")
    ax.legend(fontsize=8)
    ax.set_title("Predicted curves (dotted: horizons)", fontsize=10)
    return fig, notes


def _what_if_figure(rows: list[tuple[RiskModel, pd.DataFrame, float]], actual: float) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for k, (model, sweep, h) in enumerate(rows):
        ax.plot(sweep["value"], sweep[f"S_{h:g}"], color=f"C{k}", lw=1.8, label=f"{model.endpoint.upper()} S({h:g})")
    ax.axvline(actual, color="0.2", ls="--", lw=1, label=f"this patient's D90 ({actual:g} Gy)")
    ax.set_xlabel("D90 (Gy)")
    ax.set_ylabel("predicted probability event-free")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("What if D90 were different? (model association, not causal)", fontsize=10)
    return fig


def _inputs_table(model: RiskModel, row: pd.Series) -> pd.DataFrame:
    """The patient's inputs beside the training data: a number against the range of the middle of
    the training data (5th smallest to 5th largest value), an age above 89 as 90+ on both sides."""
    out = []
    for name in model.input_columns:
        value = row.get(name)
        kind = model.declaration.covariate(name).kind if model.declaration is not None else None
        if name in model.numeric_ranges or kind == "numeric" or (kind is None and name not in model.categories):
            v = float(np.asarray(value, dtype=float))
            side = model.range_position(name, v)
            training = model.shown_range(name) if name in model.numeric_ranges else "not stored (under 10 values)"
            flag = f"{side} the middle of the training data" if side else ""
            out.append(
                {"input": name, "value": shown_value(v, age=model.is_age(name)), "training": training, "flag": flag}
            )
        else:
            seen = model.categories.get(name, [])
            flag = "" if str(value) in seen else "not seen in training"
            out.append({"input": name, "value": str(value), "training": ", ".join(seen), "flag": flag})
    return pd.DataFrame(out)


def _ages_shown(model: RiskModel, explanation: Any) -> Any:
    """One patient's explanation with an age feature of 90 or more labelled "90+" (shap prints a
    text value as it is), so that the waterfall's labels follow Safe Harbor like the tables."""
    names = list(explanation.feature_names or [])
    data = np.asarray(explanation.data, dtype=object).copy()
    capped = False
    for j, name in enumerate(names):
        if model.is_age(name) and isinstance(data[j], int | float | np.number) and float(data[j]) >= 90:
            data[j], capped = "90+", True
    if not capped:
        return explanation
    shown = copy.copy(explanation)
    shown.data = data
    return shown


def _horizon(model: RiskModel) -> float:
    """12 months, or the model's last horizon when its follow-up is shorter; never a horizon with
    too few training patients followed (then the longest time that had enough)."""
    limit = min(model.max_time, model.reliable_until if model.reliable_until is not None else model.max_time)
    if limit >= EXPLAIN_HORIZON:
        return EXPLAIN_HORIZON
    within = [h for h in model.horizons if h <= limit]
    return max(within) if within else limit


def _page(pid: str, sections: list[str]) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>riskmodel patient report {html.escape(pid)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:left}img{max-width:100%}"
        ".note{background:#fff8e1;padding:.6em;border-left:4px solid #f0b400}.flag{color:#b00020}</style>"
        "</head><body>" + "\n".join(sections) + "</body></html>\n"
    )


def write_patient_reports(models: Sequence[RiskModel], patients: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """One HTML page per valid patient (plus ``index.html``) in ``out_dir``; returns the pages.

    Rows that any model cannot score are skipped (``riskmodel score`` reports them).
    """
    if not models:
        raise UserInputError("a patient report needs at least one model")
    require_writable(out_dir, folder=True, option="--report")
    valid = None
    for model in models:
        data, _bad = model.split_valid(patients)
        valid = data.index if valid is None else valid.intersection(data.index)
    assert valid is not None
    id_column = models[0].id_column
    if id_column not in patients.columns or len(valid) == 0:
        return []
    chosen = patients.loc[valid]
    explained = {}
    for m in models:
        h = _horizon(m)
        explained[id(m)] = (explain(m, chosen), explain(m, chosen, output=("survival", h)), h)
    ids = {str(v).strip() for v in patients[id_column].dropna()}
    # an ID that is also a clinical value on the page (a patient called "N1" beside stage N1) can't
    # be guarded as a token; the pages name patients only by pseudonym anyway
    shown = {str(v).strip() for m in models for c in m.input_columns if c in patients for v in patients[c].dropna()}
    guard = PhiGuard(identifiers=frozenset(i for i in ids - shown if len(i) >= 4 or not i.isdigit()))
    pages: list[Path] = []
    with staged_folder(out_dir, merge=True) as stage:
        links = []
        for i, row_label in enumerate(valid):
            raw = chosen.loc[[row_label]]
            pid = pseudonym(raw[id_column].iloc[0])
            sections = [
                f"<h1>Patient {html.escape(pid)}</h1>",
                "<p class='note'><b>Exploratory.</b> Predictions of models trained on a small cohort; read the "
                "bands and the model reports before using them. The identifier is a pseudonym.</p>",
            ]
            parts = [(m, np.asarray(m.features.transform(m.validate_patients(raw)), dtype=float)) for m in models]
            fig, notes = _curve_figure(parts)
            sections.append(figure_html(fig, "predicted survival curves"))
            sections.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
            summary = []
            for m, Z in parts:
                risk = float(m.estimator.predict_risk(Z)[0])
                surv = m.estimator.predict_survival(Z, m.horizons).to_numpy()[0]
                summary.append(
                    {
                        "model": f"{m.endpoint.upper()} ({m.family}, {m.experiment})",
                        "risk group": m.risk_group(risk),
                        **{
                            f"S({h:g})": f"{s:.2f}" + (" (unstable: few followed)" if m.unstable_horizons([h]) else "")
                            for h, s in zip(m.horizons, surv, strict=True)
                        },
                    }
                )
            sections.append(pd.DataFrame(summary).to_html(index=False, border=0, escape=True, na_rep="–"))
            sections.append("<h2>Why: SHAP explanations</h2>")
            for m in models:
                risk_e, surv_e, h = explained[id(m)]
                label = f"{m.endpoint.upper()} ({m.family})"
                risk_i, surv_i = _ages_shown(m, risk_e[i]), _ages_shown(m, surv_e[i])
                sections.append(figure_html(shap_waterfall(risk_i, f"{label}: risk score"), f"{label} SHAP risk"))
                sections.append(
                    figure_html(shap_waterfall(surv_i, f"{label}: S({h:g} months)"), f"{label} SHAP S({h:g})")
                )
                sections.append(f"<p class='small'>{html.escape(risk_e.method)}; {html.escape(surv_e.method)}.</p>")
            sections.append("<h2>Inputs against the training data</h2>")
            for m in models:
                table = _inputs_table(m, m.validate_patients(raw).iloc[0])
                sections.append(f"<h3>{m.endpoint.upper()} ({m.family})</h3>")
                sections.append(table.to_html(index=False, border=0, escape=True))
            sections.append("<h2>D90 what-if</h2>")
            with_d90 = [m for m in models if "d90_gy" in m.input_columns]
            actual = with_d90[0].validate_patients(raw)["d90_gy"].iloc[0] if with_d90 else np.nan
            if with_d90 and pd.notna(actual):
                rows = []
                for m in with_d90:
                    h = _horizon(m)
                    rows.append((m, m.what_if(raw, "d90_gy", WHAT_IF_D90, times=[h]), h))
                sections.append(figure_html(_what_if_figure(rows, float(actual)), "D90 what-if"))
                sections.append(f"<p class='note'>{html.escape(CAUSAL_WARNING)}</p>")
            else:
                sections.append("<p>None of these models reads D90.</p>")
            name = f"patient_{pid.removeprefix('pid:')}.html"
            (stage / name).write_text(_page(pid, sections), encoding="utf-8")
            links.append(f"<li><a href='{name}'>{html.escape(pid)}</a></li>")
            pages.append(Path(out_dir) / name)
        (stage / "index.html").write_text(
            _page("index", ["<h1>Patient reports</h1><ul>", *links, "</ul>"]), encoding="utf-8"
        )
        guard.check_tree(stage, "patient report")
    return pages
