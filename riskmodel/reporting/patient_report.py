"""Per-patient reports (``riskmodel score --report DIR``): one self-contained HTML page per patient.

Each page shows, for every model given (say an LC and an OS model):

* the predicted survival curve with the horizons marked, and an uncertainty band whose source is
  stated: the spread of the forest's trees (2.5th-97.5th percentile of the per-tree curves), or,
  for Cox, the coefficients' sampling uncertainty (draws from the normal approximation, baseline
  hazard held fixed); boosting keeps no uncertainty estimate, and the page says so;
* SHAP waterfalls for the risk score and for S(12 months) (:mod:`riskmodel.explain`);
* the patient's inputs against the middle of the training data (5th smallest to 5th largest
  value; ages above 89 shown as 90+), with flags;
* a D90 what-if curve: S(12 months) as D90 sweeps the training range (extended to the patient's
  own D90, the extension dashed and labelled as extrapolation), everything else held fixed, with
  its 95% band for Cox, the patient's own D90 marked, labelled as a model association and not a
  causal dose-response.

A competing-risk model (say local failure with death competing) shows instead a stacked figure of
both CIFs and the event-free probability, its table and words, contributions over time, SHAP of
the CIF, and a what-if of the CIF (:mod:`riskmodel.reporting.patient_competing`).

Every label is clinical ("M stage M1", "lesion volume 12.5 cm³"), never an encoding
(:mod:`riskmodel.features.labels`). A model that refuses the patient (not at risk after its
landmark) shows the refusal and no prediction; a patient outside the development data gets the
predictions, marked, and no risk group unless extrapolation is allowed. Probabilities below 0.005
read "< 0.01" (:func:`riskmodel.reporting.page.format_probability`).

The only identifier on a page, and in its file name (:func:`page_name`), is the salted pseudonym
(:func:`riskmodel.privacy.pseudonym`); ``riskmodel score`` writes both beside the user's own ID
in its results, so pages can be joined back. Every file passes the PHI guard before it is moved
into place.
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
from riskmodel.features.labels import feature_labels, input_label, input_unit, shown_input
from riskmodel.features.safe_harbor import RANGE_WORDING
from riskmodel.models import CoxPH, SurvivalForest
from riskmodel.models.base import proportional_survival
from riskmodel.privacy import PhiGuard, pseudonym
from riskmodel.reporting.page import format_probability
from riskmodel.reporting.patient_competing import competing_cells, competing_section
from riskmodel.reporting.plots import figure_html, pyplot, shap_waterfall
from riskmodel.scoring import RiskModel
from riskmodel.scoring.flags import EXTRAPOLATED, OUTSIDE, outside_flags
from riskmodel.scoring.landmark import landmark_refusals
from riskmodel.stats import step_values

__all__ = ["EXTRAPOLATION_LABEL", "page_name", "survival_band", "what_if_sweep", "write_patient_reports"]

EXTRAPOLATION_LABEL = "extrapolated: outside the development data"
EXPLAIN_HORIZON = 12.0
CAUSAL_WARNING = (
    "Model association, not a causal dose-response: the model learned how outcomes differed between "
    "patients who received different doses, and those patients differed in other ways too."
)


def survival_band(model: RiskModel, Z: np.ndarray, grid: np.ndarray, draws: int = 200) -> tuple[Any, Any, str]:
    """(lower, upper, how) of a 95 % band around one patient's S(t) on ``grid``; bounds None if none."""
    estimator = model.estimator
    if isinstance(estimator, SurvivalForest) and not estimator.model_.low_memory:
        per_tree = estimator.tree_survival(Z[:1], np.asarray(grid, dtype=float))[:, 0, :]
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


def what_if_sweep(model: RiskModel, raw: pd.DataFrame, horizon: float, feature: str = "d90_gy") -> pd.DataFrame:
    """The page's sweep of ``feature``: 41 values over its stored training range, extended to the
    patient's own value when that lies outside (the extension is marked ``extrapolated``)."""
    lo, hi = model.numeric_ranges.get(feature, (60.0, 160.0))
    own = float(model.validate_patients(raw)[feature].iloc[0])
    grid = np.linspace(lo, hi, 41)
    if np.isfinite(own) and not lo <= own <= hi:
        grid = np.unique(np.concatenate([grid, np.linspace(hi if own > hi else lo, own, 21)]))
    return model.what_if(raw, feature, grid, times=[horizon])


def _what_if_figure(rows: list[tuple[RiskModel, pd.DataFrame, float]], actual: float) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    marked = False
    for k, (model, sweep, h) in enumerate(rows):
        column = f"cif_{h:g}" if model.competing else f"S_{h:g}"
        x, y, out = sweep["value"].to_numpy(), sweep[column].to_numpy(), sweep["extrapolated"].to_numpy()
        label = f"{model.endpoint.upper()} " + (
            f"{model.event_labels.event} by {h:g}" if model.competing else f"S({h:g})"
        )
        if model.competing:  # the competing event's CIF beside it, thin and dotted
            shown = np.where(out, np.nan, sweep[f"cif_competing_{h:g}"].to_numpy())
            ax.plot(
                x,
                shown,
                color=f"C{k}",
                lw=1.0,
                ls=":",
                label=f"{model.endpoint.upper()} {model.event_labels.competing}",
            )
        ax.plot(x, np.where(out, np.nan, y), color=f"C{k}", lw=1.8, label=label)
        if out.any():
            ax.plot(x, y, color=f"C{k}", lw=1.4, ls="--", label=None if marked else EXTRAPOLATION_LABEL, zorder=1)
            marked = True
        if f"S_{h:g}_lower" in sweep:
            ax.fill_between(
                x,
                sweep[f"S_{h:g}_lower"],
                sweep[f"S_{h:g}_upper"],
                color=f"C{k}",
                alpha=0.15,
                lw=0,
                label=f"{label}: 95% band (Cox coefficients)",
            )
        lo, hi = model.numeric_ranges.get("d90_gy", (x.min(), x.max()))
        if x.min() < lo:
            ax.axvspan(x.min(), lo, color="0.9", lw=0, zorder=0)
        if x.max() > hi:
            ax.axvspan(hi, x.max(), color="0.9", lw=0, zorder=0)
    ax.axvline(actual, color="0.2", ls=":", lw=1, label=f"this patient's D90 ({actual:g} Gy)")
    ax.set_xlabel("D90 (Gy)")
    ax.set_ylabel(
        "predicted probability" if any(m.competing for m, _, _ in rows) else "predicted probability event-free"
    )
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("What if D90 were different? (model association, not causal)", fontsize=10)
    return fig


def _inputs_table(model: RiskModel, row: pd.Series) -> pd.DataFrame:
    """The patient's inputs beside the training data, by their clinical names: a number against the
    range of the middle of the training data (5th smallest to 5th largest value), an age above 89
    as 90+ on both sides."""
    out = []
    decl = model.declaration
    for name in model.input_columns:
        value = row.get(name)
        kind = decl.covariate(name).kind if decl is not None else None
        label = input_label(name, decl)
        if name in model.numeric_ranges or kind == "numeric" or (kind is None and name not in model.categories):
            v = float(np.asarray(value, dtype=float))
            side = model.range_position(name, v)
            unit = input_unit(name, decl)
            training = (
                f"{model.shown_range(name)}{' ' + unit if unit else ''}"
                if name in model.numeric_ranges
                else "not stored (under 10 values)"
            )
            flag = f"{side} the middle of the training data: {OUTSIDE}" if side else ""
            shown = shown_input(name, v, decl).removeprefix(label).strip()
            out.append({"input": label, "value": shown, "training": training, "flag": flag})
        else:
            seen = model.categories.get(name, [])
            flag = "" if str(value) in seen else f"not seen in training: {OUTSIDE}"
            out.append({"input": label, "value": str(value), "training": ", ".join(seen), "flag": flag})
    return pd.DataFrame(out)


def _clinical(model: RiskModel, explanation: Any, row: pd.Series, Z: np.ndarray) -> Any:
    """One patient's explanation labelled with the clinical values its features encode ("M stage
    M1", "lesion volume 12.5 cm³", ages as 90+), never the encodings ("1 = m1")."""
    shown = copy.copy(explanation)
    shown.feature_names = feature_labels(model.features, row, Z, model.declaration)
    shown.data = None
    shown.display_data = None
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


def page_name(pid: str) -> str:
    """The file name of a patient's page, from the pseudonym alone."""
    return f"patient_{pid.removeprefix('pid:')}.html"


def _status_line(m: RiskModel, status: str, reason: str) -> str:
    label = f"{m.endpoint.upper()} ({m.family})"
    return f"<li class='flag'><b>{html.escape(label)}: {html.escape(status)}</b>. {html.escape(reason)}</li>"


def _summary(
    active: list[tuple[RiskModel, np.ndarray, pd.DataFrame]],
    refused: dict[int, str],
    models: Sequence[RiskModel],
    allow: bool,
) -> tuple[str, list[str]]:
    rows, lines = [], []
    by_model = {id(m): (Z, data) for m, Z, data in active}
    for m in models:
        name = f"{m.endpoint.upper()} ({m.family}, {m.experiment})"
        if id(m) in refused:
            rows.append({"model": name, "status": "refused", "risk group": "none: no prediction"})
            lines.append(_status_line(m, "refused", refused[id(m)]))
            continue
        Z, data = by_model[id(m)]
        flags = outside_flags(m, data).get(data.index[0], [])
        risk = float(m.estimator.predict_risk(Z)[0])
        status = "scored" if not flags else (EXTRAPOLATED if allow else OUTSIDE)
        group = m.risk_group(risk) if status != OUTSIDE else f"none: {OUTSIDE}"
        if flags:
            inputs = _inputs_table(m, data.iloc[0])
            shown = [
                f"{r['input']} {r['value']}: {r['flag']} ({r['training']})"
                for r in inputs.to_dict(orient="records")
                if r["flag"]
            ]
            lines.append(_status_line(m, status, "; ".join(shown) + ("" if allow else "; no risk group")))
        rows.append(
            {
                "model": name,
                "status": status,
                "risk group": group,
                **(competing_cells(m, Z) if m.competing else _survival_cells(m, Z)),
            }
        )
    table = pd.DataFrame(rows).to_html(index=False, border=0, escape=True, na_rep="–")
    return table, lines


def _survival_cells(m: RiskModel, Z: np.ndarray) -> dict[str, str]:
    surv = m.estimator.predict_survival(Z, m.horizons).to_numpy()[0]
    return {
        f"S({h:g})": format_probability(float(v)) + (" (unstable: few followed)" if m.unstable_horizons([h]) else "")
        for h, v in zip(m.horizons, surv, strict=True)
    }


def _what_if_section(active: list[tuple[RiskModel, np.ndarray, pd.DataFrame]], raw: pd.DataFrame) -> list[str]:
    with_d90 = [(m, data) for m, _, data in active if "d90_gy" in m.input_columns]
    actual = with_d90[0][1]["d90_gy"].iloc[0] if with_d90 else np.nan
    if not with_d90 or pd.isna(actual):
        return ["<p>None of these models reads D90 for this patient.</p>"]
    rows = []
    notes = []
    for m, _ in with_d90:
        h = _horizon(m)
        sweep = what_if_sweep(m, raw, h)
        rows.append((m, sweep, h))
        if sweep["extrapolated"].any():
            lo, hi = m.numeric_ranges["d90_gy"]
            notes.append(
                f"{m.endpoint.upper()}: D90 outside {lo:g}-{hi:g} Gy ({RANGE_WORDING}) is {EXTRAPOLATION_LABEL} "
                "(dashed, shaded)."
            )
        notes.append(f"{m.endpoint.upper()} ({m.family}): {sweep.attrs['band']}.")
    return [
        figure_html(_what_if_figure(rows, float(actual)), "D90 what-if"),
        "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
        f"<p class='note'>{html.escape(CAUSAL_WARNING)}</p>",
    ]


def _explanations(
    models: Sequence[RiskModel], patients: pd.DataFrame, scorable: dict[int, pd.Index]
) -> dict[int, tuple[Any, Any, float, dict[Any, int]]]:
    out = {}
    for m in models:
        rows = scorable[id(m)]
        if len(rows):
            h = _horizon(m)
            chosen = patients.loc[rows]
            out[id(m)] = (
                explain(m, chosen),
                explain(m, chosen, output=("cif" if m.competing else "survival", h)),
                h,
                {r: i for i, r in enumerate(rows)},
            )
    return out


def write_patient_reports(
    models: Sequence[RiskModel], patients: pd.DataFrame, out_dir: str | Path, *, allow_extrapolation: bool = False
) -> list[Path]:
    """One HTML page per patient (plus ``index.html``) in ``out_dir``; returns the pages.

    Rows that a model cannot read are skipped (``riskmodel score`` reports them). A model that
    refuses a patient (not at risk after its landmark) is shown as refusing, without predictions.
    """
    if not models:
        raise UserInputError("a patient report needs at least one model")
    require_writable(out_dir, folder=True, option="--report")
    id_column = models[0].id_column
    if id_column not in patients.columns:
        return []
    refusals = {id(m): landmark_refusals(m, patients) for m in models}
    valid: pd.Index | None = None
    scorable: dict[int, pd.Index] = {}
    for m in models:
        data, _bad = m.split_valid(patients.drop(index=list(refusals[id(m)])))
        scorable[id(m)] = data.index
        ok = data.index.union(pd.Index(list(refusals[id(m)])))
        valid = ok if valid is None else valid.intersection(ok)
    assert valid is not None
    valid = pd.Index([r for r in patients.index if r in set(valid)])
    if len(valid) == 0:
        return []
    explained = _explanations(models, patients, scorable)
    guard = _guard(models, patients, id_column)
    pages: list[Path] = []
    with staged_folder(out_dir, merge=True) as stage:
        links = []
        for row_label in valid:
            raw = patients.loc[[row_label]]
            pid = pseudonym(raw[id_column].iloc[0])
            refused = {id(m): refusals[id(m)][row_label] for m in models if row_label in refusals[id(m)]}
            sections = _patient_sections(models, raw, pid, refused, explained, allow_extrapolation)
            name = page_name(pid)
            (stage / name).write_text(_page(pid, sections), encoding="utf-8")
            links.append(f"<li><a href='{name}'>{html.escape(pid)}</a></li>")
            pages.append(Path(out_dir) / name)
        (stage / "index.html").write_text(
            _page("index", ["<h1>Patient reports</h1><ul>", *links, "</ul>"]), encoding="utf-8"
        )
        guard.check_tree(stage, "patient report")
    return pages


def _guard(models: Sequence[RiskModel], patients: pd.DataFrame, id_column: str) -> PhiGuard:
    ids = {str(v).strip() for v in patients[id_column].dropna()}
    # an ID that is also a clinical value on the page (a patient called "N1" beside stage N1) can't
    # be guarded as a token; the pages name patients only by pseudonym anyway
    shown = {str(v).strip() for m in models for c in m.input_columns if c in patients for v in patients[c].dropna()}
    return PhiGuard(identifiers=frozenset(i for i in ids - shown if len(i) >= 4 or not i.isdigit()))


def _development_notes(models: Sequence[RiskModel]) -> list[tuple[RiskModel, str]]:
    """Each model's note on its development cohort (:meth:`RiskModel.development_note`), said once
    when every model has the same."""
    notes = [(m, m.development_note()) for m in models]
    return notes[:1] if len({n for _, n in notes}) == 1 else notes


def _patient_sections(
    models: Sequence[RiskModel],
    raw: pd.DataFrame,
    pid: str,
    refused: dict[int, str],
    explained: dict[int, tuple[Any, Any, float, dict[Any, int]]],
    allow: bool,
) -> list[str]:
    sections = [
        f"<h1>Patient {html.escape(pid)}</h1>",
        "<p class='note'>"
        + " ".join(
            html.escape(f"{m.endpoint.upper()} {m.family}: {note}" if len(models) > 1 else note)
            for m, note in _development_notes(models)
        )
        + " Read the bands and the model reports before using these predictions. The identifier is a pseudonym.</p>",
    ]
    active = []
    for m in models:
        if id(m) not in refused:
            data = m.validate_patients(raw)
            active.append((m, np.asarray(m.features.transform(data), dtype=float), data))
    table, lines = _summary(active, refused, models, allow)
    if lines:
        sections.append("<ul>" + "".join(lines) + "</ul>")
    survival = [(m, Z) for m, Z, _ in active if not m.competing]
    if survival:
        fig, notes = _curve_figure(survival)
        sections.append(figure_html(fig, "predicted survival curves"))
        sections.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    for m, Z, data in active:
        if m.competing:
            sections += competing_section(m, Z, data.iloc[0], raw)
    sections.append(table)
    if active:
        sections.append("<h2>Why: SHAP explanations</h2>")
    for m, Z, data in active:
        row = data.iloc[0]
        risk_e, surv_e, h, where = explained[id(m)]
        i = where[raw.index[0]]
        label = f"{m.endpoint.upper()} ({m.family})"
        risk_i, surv_i = _clinical(m, risk_e[i], row, Z[0]), _clinical(m, surv_e[i], row, Z[0])
        sections.append(figure_html(shap_waterfall(risk_i, f"{label}: risk score"), f"{label} SHAP risk"))
        what = f"CIF of {m.event_labels.event} ({h:g} months)" if m.competing else f"S({h:g} months)"
        sections.append(figure_html(shap_waterfall(surv_i, f"{label}: {what}"), f"{label} SHAP {what}"))
        contributions = "; ".join(
            f"{n}: {v:+.3g}"
            for n, v in sorted(zip(risk_i.feature_names, risk_i.values, strict=True), key=lambda t: -abs(t[1]))
        )
        sections.append(
            f"<p class='small'>{html.escape(label)} risk score, largest contributions first: "
            f"{html.escape(contributions)}.</p>"
        )
        sections.append(f"<p class='small'>{html.escape(risk_e.method)}; {html.escape(surv_e.method)}.</p>")
    sections.append("<h2>Inputs against the training data</h2>")
    for m in models:
        table_in = _inputs_table(m, m.validate_patients(raw).iloc[0]) if id(m) not in refused else None
        sections.append(f"<h3>{m.endpoint.upper()} ({m.family})</h3>")
        sections.append(
            "<p>Refused: no prediction.</p>"
            if table_in is None
            else table_in.to_html(index=False, border=0, escape=True)
        )
    sections.append("<h2>D90 what-if</h2>")
    sections += _what_if_section(active, raw)
    return sections
