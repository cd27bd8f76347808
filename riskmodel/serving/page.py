"""The calculator's HTML page: the form, generated from the inputs, and a small script that posts it
to ``/api/predict`` and draws each model's answer (status, probabilities with bands, risk group,
curve, SHAP contributions, the what-if with its extrapolated part dashed).

The page loads nothing from anywhere (no CDN, no font): styles and script are inline, figures are
SVG drawn by the script. Every text from an answer is set as text, never parsed as HTML. The form
is ``novalidate``: the server's rules are the one source of truth, and its refusal (a field and
its rule) is shown beside the form.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from riskmodel.scoring import RiskModel
from riskmodel.serving.form import InputField

__all__ = ["SCRIPT", "STYLE", "field_html", "form_page"]

STYLE = """
body{font-family:system-ui,sans-serif;max-width:64em;margin:1.5em auto;padding:0 1em;color:#222}
form{display:grid;grid-template-columns:repeat(auto-fill,minmax(17em,1fr));gap:.6em 1.2em}
label{display:block;font-weight:600;font-size:.9em}.hint{font-size:.75em;color:#555;font-weight:400}
input,select{width:100%;box-sizing:border-box;padding:.25em;font-size:1em}[aria-invalid=true]{outline:2px solid #b00020}
button{grid-column:1/-1;padding:.5em;font-size:1em;cursor:pointer}
.note{background:#fff8e1;padding:.6em;border-left:4px solid #f0b400;font-size:.9em}
#problems{color:#b00020}.model{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;margin:1em 0}
.status{font-weight:700}.status.scored{color:#1b5e20}.status.outside,.status.refused,.status.error{color:#b00020}
table{border-collapse:collapse;font-size:.9em}td,th{padding:.15em .6em;border-bottom:1px solid #ddd;text-align:left}
svg{max-width:100%;height:auto;background:#fff}.small{font-size:.8em;color:#444}
"""

SCRIPT = r"""
"use strict";
const NS = "http://www.w3.org/2000/svg";
function fmtP(p) {
  if (p === null || p !== p) return "–";
  if (p > 0 && p < 0.005) return "< 0.01";
  if (p >= 0.995 && p < 1) return "> 0.99";
  return p.toFixed(2);
}
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function svgEl(tag, attrs) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}
function plot(title, xlabel, series, shade) {
  // series: [{x, y, lower, upper, dashed}], y in [0, 1]; shade: [[x0, x1], ...] drawn grey
  const W = 520, H = 260, L = 44, R = 10, T = 22, B = 36;
  const xs = series.flatMap(s => s.x.filter(v => v !== null));
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const sx = v => L + (W - L - R) * (v - x0) / ((x1 - x0) || 1), sy = v => T + (H - T - B) * (1 - v);
  const svg = svgEl("svg", {viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img"});
  svg.appendChild(svgEl("title", {})).textContent = title;
  for (const [a, b] of shade || []) {
    const width = Math.max(0, sx(b) - sx(a));
    svg.appendChild(svgEl("rect", {x: sx(a), y: T, width, height: H - T - B, fill: "#eee"}));
  }
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    svg.appendChild(svgEl("line", {x1: L, x2: W - R, y1: sy(v), y2: sy(v), stroke: "#ddd"}));
    svg.appendChild(svgEl("text", {x: L - 6, y: sy(v) + 4, "text-anchor": "end", "font-size": 10})).textContent = v;
  }
  for (const v of [x0, (x0 + x1) / 2, x1]) {
    const tick = svgEl("text", {x: sx(v), y: H - B + 14, "text-anchor": "middle", "font-size": 10});
    svg.appendChild(tick).textContent = +v.toPrecision(3);
  }
  const xtitle = svgEl("text", {x: (L + W) / 2, y: H - 4, "text-anchor": "middle", "font-size": 11});
  svg.appendChild(xtitle).textContent = xlabel;
  svg.appendChild(svgEl("text", {x: L, y: 14, "font-size": 12, "font-weight": 600})).textContent = title;
  for (const s of series) {
    if (s.lower && s.upper) {
      const top = s.x.map((v, i) => `${sx(v)},${sy(s.upper[i])}`);
      const bottom = s.x.map((v, i) => `${sx(v)},${sy(s.lower[i])}`).reverse();
      svg.appendChild(svgEl("polygon", {points: top.concat(bottom).join(" "), fill: s.colour, "fill-opacity": 0.18}));
    }
    const d = s.x.map((v, i) => (s.y[i] === null ? "" : `${i ? "L" : "M"}${sx(v)},${sy(s.y[i])}`)).join("");
    svg.appendChild(svgEl("path", {d, fill: "none", stroke: s.colour, "stroke-width": 2,
      "stroke-dasharray": s.dashed ? "6 4" : "none", class: s.dashed ? "extrapolated" : "inside"}));
  }
  return svg;
}
function whatIfPlot(w, events) {
  const y = w.outcome === "cif" ? w.cif : w.survival;
  const inside = w.values.map((v, i) => (w.extrapolated[i] ? null : y[i]));
  const series = [{x: w.values, y, dashed: true, colour: "#888"},
                  {x: w.values, y: inside, lower: w.lower, upper: w.upper, colour: "#1565c0"}];
  if (w.outcome === "cif") {
    series.push({x: w.values, y: w.values.map((v, i) => (w.extrapolated[i] ? null : w.cif_competing[i])),
                 colour: "#ef6c00", dashed: true});
  }
  const lo = Math.min(...w.values), hi = Math.max(...w.values);
  const shade = [[lo, w.training_range[0]], [w.training_range[1], hi]].filter(([a, b]) => b > a);
  const what = w.outcome === "cif" ? `CIF of ${events.cif} by ${w.horizon} months` : `S(${w.horizon} months)`;
  return plot(`What if ${w.label} were different? ${what}`, `${w.label} (${w.unit})`, series, shade);
}
function appendExplanations(box, m) {
  const shap = el("table", null, "shap");
  shap.insertRow().appendChild(el("th", `Why: SHAP contributions to the ${m.shap.output}`));
  for (const k of m.shap.contributions) {
    const row = shap.insertRow();
    row.insertCell().textContent = k.label;
    row.insertCell().textContent = (k.value >= 0 ? "+" : "") + k.value.toPrecision(3);
  }
  box.appendChild(shap);
  box.appendChild(el("p", m.shap.method, "small"));
  if (m.what_if) {
    box.appendChild(whatIfPlot(m.what_if, m.events));
    const [lo, hi] = m.what_if.training_range;
    const other = m.what_if.outcome === "cif" ? ` Orange, dashed: the CIF of ${m.events.cif_competing}.` : "";
    box.appendChild(el("p", `Dashed and shaded: outside ${lo}-${hi} ${m.what_if.unit}, ` +
      "the middle of the training data " +
      `(extrapolated).${other} ${m.what_if.band}. ${m.what_if.note}`, "small what-if-note"));
  }
}
function appendFlags(box, flags) {
  if (!flags.length) return;
  const ul = el("ul", null, "flags");
  for (const f of flags) ul.appendChild(el("li", f));
  box.appendChild(ul);
}
function renderCompeting(m, box) {
  const group = m.risk_group === null ? `none (${m.status})` : m.risk_group;
  box.appendChild(el("p", `Risk group: ${group}`, "risk-group"));
  const table = el("table", null, "cif");
  const head = table.insertRow();
  for (const h of ["horizon", `CIF of ${m.events.cif}`, `CIF of ${m.events.cif_competing}`, m.events.event_free, ""]) {
    head.appendChild(el("th", h));
  }
  for (const h of m.cumulative_incidence) {
    const row = table.insertRow();
    row.insertCell().textContent = `${h.months} months after the ${m.time_origin}`;
    for (const k of ["cif", "cif_competing", "event_free"]) row.insertCell().textContent = h.shown[k];
    row.insertCell().textContent = h.unstable ? "unstable: few training patients followed this long" : "";
  }
  box.appendChild(table);
  appendFlags(box, m.flags);
  const c = m.cif_curve;
  box.appendChild(plot("Cumulative incidence", `months after the ${m.time_origin}`,
    [{x: c.months, y: c.cif, colour: "#1565c0"}, {x: c.months, y: c.cif_competing, colour: "#ef6c00"}]));
  box.appendChild(el("p", `Blue: the CIF of ${m.events.cif}; orange: the CIF of ${m.events.cif_competing}; ` +
    `the rest up to 1 is ${m.events.event_free}. ${c.band}.`, "small curve-note"));
  appendExplanations(box, m);
  return box;
}
function renderModel(m) {
  const box = el("section", null, "model");
  box.dataset.endpoint = m.endpoint;
  box.dataset.status = m.status;
  box.appendChild(el("h2", `${m.label}, ${m.experiment}`));
  const cls = m.status === "scored" ? "scored" : m.status.includes("outside") ? "outside" : m.status;
  box.appendChild(el("p", `Status: ${m.status}`, `status ${cls}`));
  if (m.reason) box.appendChild(el("p", m.reason, "reason"));
  if (m.cumulative_incidence) return renderCompeting(m, box);
  if (!m.horizon_probabilities) return box;
  const group = m.risk_group === null ? `none (${m.status})` : m.risk_group;
  box.appendChild(el("p", `Risk group: ${group}`, "risk-group"));
  const table = el("table", null, "horizons");
  const head = table.insertRow();
  for (const h of ["horizon", "P(event-free)", "95% band", ""]) head.appendChild(el("th", h));
  for (const h of m.horizon_probabilities) {
    const row = table.insertRow();
    row.insertCell().textContent = `${h.months} months after the ${m.time_origin}`;
    row.insertCell().textContent = h.shown;
    row.insertCell().textContent = h.lower === null ? "no band" : `${fmtP(h.lower)} – ${fmtP(h.upper)}`;
    row.insertCell().textContent = h.unstable ? "unstable: few training patients followed this long" : "";
  }
  box.appendChild(table);
  appendFlags(box, m.flags);
  const c = m.curve;
  box.appendChild(plot("Predicted curve", `months after the ${m.time_origin}`,
    [{x: c.months, y: c.survival, lower: c.lower, upper: c.upper, colour: "#1565c0"}]));
  box.appendChild(el("p", c.band, "small"));
  appendExplanations(box, m);
  return box;
}
function collect(form) {
  const out = {};
  for (const e of form.elements) {
    if (!e.name) continue;
    e.removeAttribute("aria-invalid");
    const v = e.value.trim();
    if (v === "") continue;  // a missing value is left out: the server says whether it is required
    out[e.name] = e.dataset.kind === "numeric" && !Number.isNaN(Number(v)) ? Number(v) : v;
  }
  return out;
}
async function submit(event) {
  event.preventDefault();
  const form = event.target;
  const problems = document.getElementById("problems"), results = document.getElementById("results");
  problems.replaceChildren(); results.replaceChildren();
  document.body.dataset.state = "pending";
  results.setAttribute("aria-busy", "true");
  const response = await fetch("api/predict", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(collect(form))});
  const body = await response.json();
  if (!response.ok) {
    problems.appendChild(el("p", `Not calculated (${response.status}): ${body.message}`));
    for (const p of body.problems || []) {
      const name = p.field.split(" ")[0], field = form.elements.namedItem(name);
      if (field) field.setAttribute("aria-invalid", "true");
    }
  } else {
    for (const m of body.models) results.appendChild(renderModel(m));
    results.appendChild(el("p", body.note, "note"));
  }
  results.setAttribute("aria-busy", "false");
  document.body.dataset.state = response.ok ? "answered" : "refused";
}
document.getElementById("patient").addEventListener("submit", submit);
"""


def _control(f: InputField) -> str:
    name = html.escape(f.name)
    required = " required" if f.required else ""
    if f.kind == "numeric":
        limits = "" if f.limits is None else f" min='{f.limits[0]:g}' max='{f.limits[1]:g}'"
        return f"<input id='f-{name}' name='{name}' type='number' step='any' data-kind='numeric'{limits}{required}>"
    empty = "<option value=''>(missing)</option>" if not f.required else "<option value='' disabled selected>…</option>"
    options = "".join(f"<option>{html.escape(level)}</option>" for level in f.levels or [])
    return f"<select id='f-{name}' name='{name}' data-kind='{f.kind}'{required}>{empty}{options}</select>"


def field_html(f: InputField) -> str:
    """One labelled form control with its hints (unit, required, limits, training ranges)."""
    hints = [f"unit: {f.unit}"] if f.unit else []
    hints.append("required" if f.required else "optional")
    if f.limits is not None:
        hints.append(f"possible: {f.limits[0]:g}-{f.limits[1]:g}")
    hints += [f"training {t}" for t in f.training]
    if f.note:
        hints.append(f.note)
    return (
        f"<div><label for='f-{html.escape(f.name)}'>{html.escape(f.label)}"
        f"{' (' + html.escape(f.unit) + ')' if f.unit else ''}</label>{_control(f)}"
        f"<span class='hint'>{html.escape('; '.join(hints))}</span></div>"
    )


def form_page(fields: Sequence[InputField], models: Sequence[RiskModel], note: str) -> str:
    """The whole page: form, answer area, style and script inline."""
    names = ", ".join(f"{m.endpoint.upper()} {m.family} ({m.experiment})" for m in models)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>riskmodel calculator</title><style>{STYLE}</style></head><body>"
        f"<h1>riskmodel calculator</h1><p>Models: {html.escape(names)}.</p>"
        f"<p class='note'>{html.escape(note)} Nothing you enter is stored or logged.</p>"
        "<form id='patient' novalidate>"
        + "".join(field_html(f) for f in fields)
        + "<button type='submit'>Calculate</button></form><div id='problems' role='alert'></div>"
        f"<div id='results' aria-live='polite'></div><script>{SCRIPT}</script></body></html>\n"
    )
