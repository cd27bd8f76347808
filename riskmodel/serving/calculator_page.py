"""The offline calculator page: the form, the model as JSON data, and the script that computes.

``window.riskmodelCalculate(inputs)`` is the whole computation (also what the tests call in a real
browser); the form only collects the inputs and shows its result. Nothing is fetched: the page
works from a file, with the network off.
"""

from __future__ import annotations

import html
import json
from typing import Any

from riskmodel.serving.form import InputField
from riskmodel.serving.page import STYLE, field_html

__all__ = ["CALCULATOR_SCRIPT", "calculator_html", "spec_json"]

CALCULATOR_SCRIPT = r"""
"use strict";
const SPEC = JSON.parse(document.getElementById("model").textContent);
const Z95 = 1.959963984540054;
function fmtP(p) {
  if (p === null || p !== p) return "–";
  if (p > 0 && p < 0.005) return "< 0.01";
  if (p >= 0.995 && p < 1) return "> 0.99";
  return p.toFixed(2);
}
function rcs(x, k, term) {
  if (term === 0) return x;
  const j = term - 1, n = k.length, last = k[n - 1], before = k[n - 2];
  const cube = v => Math.pow(Math.max(v, 0), 3);
  const value = cube(x - k[j]) - cube(x - before) * (last - k[j]) / (last - before)
    + cube(x - last) * (before - k[j]) / (last - before);
  return value / Math.pow(last - k[0], 2);
}
function feature(r, inputs) {
  if (r.kind === "constant") return r.value;
  const v = inputs[r.input];
  if (r.kind === "table") return Object.prototype.hasOwnProperty.call(r.values, String(v)) ? r.values[String(v)] : NaN;
  if (r.kind === "identity") return v;
  if (r.kind === "log") return Math.log(v);
  if (r.kind === "ge") return v >= r.threshold ? 1 : 0;
  if (r.kind === "rcs") return rcs(v, r.knots, r.term);
  return NaN;
}
function check(inputs) {
  const problems = [];
  for (const f of SPEC.fields) {
    const v = inputs[f.name];
    const where = f.label === f.name ? f.name : `${f.name} (${f.label})`;
    if (v === null || v === undefined || v === "") { problems.push(`${where}: required: give a value`); continue; }
    if (f.kind === "numeric") {
      if (typeof v !== "number" || !Number.isFinite(v)) problems.push(`${where}: must be a number`);
      else if (f.limits && (v < f.limits[0] || v > f.limits[1])) {
        problems.push(`${where}: must be between ${f.limits[0]} and ${f.limits[1]}`);
      }
    } else if (!f.levels.includes(String(v))) problems.push(`${where}: must be one of ${f.levels.join(", ")}`);
  }
  return problems;
}
function outsideFlags(inputs) {
  const flags = [];
  for (const [name, [lo, hi]] of Object.entries(SPEC.numeric_ranges)) {
    const field = SPEC.fields.find(f => f.name === name);
    let v = inputs[name];
    if (field && field.age) v = Math.min(v, 90);
    const side = v < lo ? "below" : "above";
    if (v < lo || v > hi) flags.push(`${name} ${inputs[name]} is ${side} ${SPEC.range_wording}: ${lo}-${hi}`);
  }
  for (const [name, seen] of Object.entries(SPEC.categories)) {
    const v = String(inputs[name]);
    if (!seen.includes(v)) flags.push(`${name} ${v} was not seen in training (seen: ${seen.join(", ")})`);
  }
  return flags;
}
function riskGroup(risk) {
  const k = SPEC.risk_cutoffs.filter(c => c <= risk).length;
  const n = SPEC.risk_cutoffs.length;
  return n === 2 ? ["low", "intermediate", "high"][k] : `group ${k + 1} of ${n + 1}`;
}
function calculate(inputs) {
  const problems = check(inputs);
  if (problems.length) return {status: "invalid", problems};
  for (const rule of SPEC.landmark) {
    if (rule.levels.includes(String(inputs[rule.input]).trim().toLowerCase())) {
      return {status: "refused", reason: rule.reason, risk_group: null};
    }
  }
  const z = SPEC.recipes.map(r => feature(r, inputs));
  const missing = SPEC.recipes.findIndex((r, k) => Number.isNaN(z[k]));
  if (missing >= 0) {
    const r = SPEC.recipes[missing];
    const why = "was not seen when the model was fitted; its coding cannot represent it";
    return {status: "error", reason: `${r.input} ${inputs[r.input]} ${why}`};
  }
  const c = z.map((v, k) => v - SPEC.mean[k]);
  const eta = c.reduce((sum, v, k) => sum + v * SPEC.coef[k], 0);
  let se = null;
  if (SPEC.covariance) {
    let q = 0;
    for (let i = 0; i < c.length; i++) for (let j = 0; j < c.length; j++) q += c[i] * SPEC.covariance[i][j] * c[j];
    se = Math.sqrt(Math.max(q, 0));
  }
  const cif = SPEC.outcome === "cif";
  // S = exp(-H e^eta) of a Cox model; a Fine-Gray model's CIF of the event = 1 - exp(-H e^eta)
  const surv = H => Math.exp(-Math.exp(eta + Math.log(H)));
  const incidence = H => -Math.expm1(-Math.exp(eta + Math.log(H)));
  const horizons = SPEC.model.horizons.map((h, i) => {
    const H = SPEC.cumhaz[i];
    if (cif) {
      const band = d => -Math.expm1(-Math.exp(eta + d + Math.log(H)));
      return {months: h, cif: incidence(H), lower: se === null ? null : band(-Z95 * se),
              upper: se === null ? null : band(Z95 * se), unstable: SPEC.unstable.includes(h)};
    }
    return {months: h, survival: surv(H), lower: se === null ? null : Math.exp(-Math.exp(eta + Z95 * se + Math.log(H))),
            upper: se === null ? null : Math.exp(-Math.exp(eta - Z95 * se + Math.log(H))),
            unstable: SPEC.unstable.includes(h)};
  });
  const risk = cif ? incidence(SPEC.risk_cumhaz) : eta;
  const flags = outsideFlags(inputs);
  const status = flags.length ? "outside the development data" : "scored";
  for (const h of horizons) {
    if (h.unstable) {
      flags.push(`${cif ? "CIF" : "S"}(${h.months}): fewer than ${SPEC.min_at_risk} training patients were ` +
        `followed to ${h.months} months; this prediction is unstable`);
    }
  }
  return {status, risk_score: risk, risk_group: status === "scored" ? riskGroup(risk) : null, horizons, flags,
          reason: status === "scored" ? null : "no risk group: outside the development data"};
}
window.riskmodelCalculate = calculate;
function show(result) {
  const out = document.getElementById("results");
  out.replaceChildren();
  const add = (tag, text, cls) => {
    const e = document.createElement(tag);
    e.textContent = text;
    if (cls) e.className = cls;
    out.appendChild(e);
    return e;
  };
  if (result.status === "invalid") {
    for (const p of result.problems) add("p", p, "problem");
    document.body.dataset.state = "refused";
    return;
  }
  add("p", `Status: ${result.status}`, "status");
  if (result.reason) add("p", result.reason, "reason");
  if (result.horizons) {
    const group = result.risk_group === null ? `none (${result.status})` : result.risk_group;
    add("p", `Risk group: ${group}`, "risk-group");
    const ev = SPEC.events;
    for (const h of result.horizons) {
      const band = h.lower === null ? "no band" : `95% band ${fmtP(h.lower)} – ${fmtP(h.upper)}`;
      const what = ev ? `CIF of ${ev.event} by ${h.months} months after the ${SPEC.model.time_origin} ` +
        `(${ev.competing} competing)` : `P(event-free at ${h.months} months after the ${SPEC.model.time_origin})`;
      add("p", `${what}: ${fmtP(ev ? h.cif : h.survival)} (${band})` +
        (h.unstable ? "; unstable: few training patients followed this long" : ""), "horizon");
    }
    if (ev) {
      add("p", `The CIF of the competing event (${ev.competing}) is not shown: it comes from a separate model ` +
        "(riskmodel serve gives both).", "note");
    }
    for (const f of result.flags) add("p", f, "flag");
  }
  document.body.dataset.state = "answered";
}
document.getElementById("patient").addEventListener("submit", event => {
  event.preventDefault();
  const inputs = {};
  for (const f of SPEC.fields) {
    const v = event.target.elements.namedItem(f.name).value.trim();
    inputs[f.name] = v === "" ? null : f.kind === "numeric" ? Number(v) : v;
  }
  show(calculate(inputs));
});
"""


def calculator_html(spec: dict[str, Any]) -> str:
    """The page of a calculator spec (:func:`riskmodel.serving.calculator.calculator_spec`)."""
    fields = [
        InputField(
            name=f["name"],
            column=f["name"],
            label=f["label"],
            kind=f["kind"],
            unit=f["unit"],
            required=True,
            levels=f["levels"],
            limits=None if f["limits"] is None else (f["limits"][0], f["limits"][1]),
            training=f["training"],
            note=f["note"],
        )
        for f in spec["fields"]
    ]
    m = spec["model"]
    title = f"{m['endpoint'].upper()} {m['family']} calculator ({m['experiment']})"
    kind = "Cox" if spec.get("outcome", "survival") == "survival" else "Fine-Gray"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p class='note'>A {kind} model as a formula, computed in this page: nothing is sent anywhere. "
        f"{html.escape(spec['development_note'])} A patient outside the development data gets no risk "
        "group.</p><form id='patient' novalidate>"
        + "".join(field_html(f) for f in fields)
        + "<button type='submit'>Calculate</button></form><div id='results' aria-live='polite'></div>"
        f"<script type='application/json' id='model'>{spec_json(spec)}</script>"
        f"<script>{CALCULATOR_SCRIPT}</script></body></html>\n"
    )


def spec_json(spec: dict[str, Any]) -> str:
    """The spec as JSON safe inside a <script> element (no NaN, no "</")."""
    return json.dumps(spec, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
