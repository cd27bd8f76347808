"""The web calculator as a FastAPI app: an HTML form generated from the models' inputs, and a JSON API.

* ``GET /``: the form (units, hard limits, categories, required fields, each model's training
  range), whose little script posts to the API and draws the answer;
* ``POST /api/predict``: one patient's inputs (JSON) → each model's answer
  (:func:`riskmodel.serving.answer.answer`);
* ``GET /api/inputs``: the fields and the models, as JSON;
* ``/openapi.json`` and ``/docs``: the API's schema, the request model generated from the inputs.

Safety: the app keeps no state between requests (the models are read-only); it logs no request
and no value (the server runs without an access log, and errors are answered, not logged); a
request body over :data:`MAX_BODY_BYTES` is refused before it is read whole; a refused request
names each field and its rule, without echoing the values; the Host header must be one the
server listens as (no DNS rebinding from a web page); answers are never cached.
"""

# no ``from __future__ import annotations`` here: FastAPI reads the request model from the
# endpoint's annotation, a class built at run time

import re
import warnings
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

from riskmodel.core.version import __version__
from riskmodel.errors import RiskModelError, RiskModelWarning
from riskmodel.scoring import RiskModel
from riskmodel.serving.answer import answer, model_info
from riskmodel.serving.form import InputField, input_fields, patient_frame, request_model
from riskmodel.serving.page import form_page
from riskmodel.serving.schemas import ModelAnswer, Prediction, ProblemReport

__all__ = ["MAX_BODY_BYTES", "NOTE", "BodyLimit", "create_app", "note_for", "warm_up"]

MAX_BODY_BYTES = 16_384  # one patient's inputs are a few hundred bytes
NOTE = (
    "Read the bands, the statuses and the model reports before using these predictions; a what-if is a model "
    "association, not a causal dose-response."
)


def note_for(models: Sequence[RiskModel]) -> str:
    """What the page and every answer say of the served models: how far each can be trusted, judged
    from its own development cohort (:meth:`RiskModel.development_note`), then :data:`NOTE`."""
    said: dict[str, list[str]] = {}
    for m in models:
        said.setdefault(m.development_note(), []).append(model_info(m)["label"])
    if len(said) == 1:
        return f"{next(iter(said))} {NOTE}"
    return " ".join(f"{', '.join(labels)}: {note}" for note, labels in said.items()) + f" {NOTE}"


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413, by its Content-Length or as
    it streams in, before the app reads it whole."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.limit)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> Response:
    report = ProblemReport.of([{"field": "body", "rule": f"over {limit} bytes; one patient's inputs are far smaller"}])
    return JSONResponse(report.model_dump(), status_code=413)


def _problems(exc: RequestValidationError, fields: Sequence[InputField]) -> list[dict[str, Any]]:
    labels = {f.name: f.label for f in fields}
    out = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        name = loc[0] if loc else "body"
        kind = err.get("type", "")
        if kind == "missing":
            rule = "required: give a value"
        elif kind == "extra_forbidden":
            rule = "not an input of the served models"
        elif kind == "json_invalid":
            name, rule = "body", "not valid JSON"
        else:
            rule = str(err.get("msg", "invalid")).replace("Input should be", "must be")
        shown = f"{name} ({labels[name]})" if name in labels and labels[name] != name else name
        out.append({"field": shown, "rule": rule})
    return out


def _checks(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """riskmodel's warnings about this patient's values (a D90 beyond the plausible range, a stage
    the features never saw), as flags in plain words: the answer is the only place they go."""
    out: list[str] = []
    for w in caught:
        if not issubclass(w.category, RiskModelWarning):
            continue
        for line in str(w.message).splitlines():
            line = line.strip()
            if not line or re.fullmatch(r"\w+: \d+ warnings?:", line):
                continue
            line = re.sub(r"^warning: patients, row \S+, column ", "", line).removeprefix("warning: ")
            out.append(re.sub(r"^(\w+), value '([^']*)': ", r"\1 \2 ", line))
    return list(dict.fromkeys(out))


def _one_answer(model: RiskModel, frame: Any, allow_extrapolation: bool, what_if_input: str) -> dict[str, Any]:
    """A model's answer; a failure is this model's ``error`` status, not the request's."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RiskModelWarning)
            out = answer(model, frame, allow_extrapolation=allow_extrapolation, what_if_input=what_if_input)
        out["flags"] = list(dict.fromkeys([*out["flags"], *_checks(caught)]))
        return out
    except RiskModelError as exc:
        reason = (str(exc).strip().splitlines() or ["cannot score"])[0].removeprefix("error: ")
    except Exception as exc:  # answered, never logged: a message may hold a patient's value
        reason = f"internal error ({type(exc).__name__}); the other models' answers stand"
    return {**model_info(model), "status": "error", "reason": reason, "flags": []}


def warm_up(models: Sequence[RiskModel], fields: Sequence[InputField], id_column: str) -> None:
    """Answer one made-up patient (mid training range, first seen level) once, so that the first
    real request does not pay for the libraries' first use (SHAP's import, numba's compilation)."""
    values: dict[str, Any] = {}
    for f in fields:
        ranges = [m.numeric_ranges[f.name] for m in models if f.name in m.numeric_ranges]
        seen = [c for m in models for c in m.categories.get(f.name, [])]
        if f.kind == "numeric":
            values[f.name] = float(sum(ranges[0]) / 2) if ranges else None
        else:
            values[f.name] = seen[0] if seen else next(iter(f.levels or []), None)
    frame = patient_frame(fields, values, id_column)
    for m in models:
        _one_answer(m, frame, False, "d90_gy")


def create_app(
    models: Sequence[RiskModel],
    *,
    allow_extrapolation: bool = False,
    what_if_input: str = "d90_gy",
    allowed_hosts: Sequence[str] = ("127.0.0.1", "localhost", "[::1]", "testserver"),
    warm: bool = False,
) -> FastAPI:
    """The calculator app for ``models`` (already verified and loaded); ``warm``: answer one made-up
    patient first (:func:`warm_up`)."""
    if not models:
        raise ValueError("the calculator needs at least one model")
    ids = {m.id_column for m in models}
    declared = {m.declaration is not None for m in models}
    if len(declared) > 1:
        raise RiskModelError("serve models of declared cohorts and of the built-in contract in separate servers")
    fields = input_fields(models)
    patient_model = request_model(fields)
    id_column = ids.pop() if len(ids) == 1 else models[0].id_column
    note = note_for(models)
    app = FastAPI(
        title="riskmodel calculator",
        version=__version__,
        description=f"{note} Models: " + "; ".join(model_info(m)["label"] for m in models) + ".",
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    page = form_page(fields, models, note)
    if warm:
        warm_up(models, fields, id_column)

    @app.exception_handler(RequestValidationError)
    async def refused(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(ProblemReport.of(_problems(exc, fields)).model_dump(), status_code=422)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"message": f"internal error ({type(exc).__name__})", "problems": []}, status_code=500)

    @app.middleware("http")
    async def no_store(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def form() -> HTMLResponse:
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src "
                "'unsafe-inline'; connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'"
            },
        )

    @app.get("/api/inputs", summary="The inputs the served models need, and the models")
    def inputs() -> dict[str, Any]:
        return {"fields": [f.as_json() for f in fields], "models": [model_info(m) for m in models], "note": note}

    @app.post(
        "/api/predict",
        response_model=Prediction,
        summary="Every served model's answer for one patient",
        responses={422: {"model": ProblemReport, "description": "A field is missing or breaks its rule."}},
    )
    def predict(patient: patient_model) -> Any:  # type: ignore[valid-type]
        try:
            frame = patient_frame(fields, patient.model_dump(), id_column)  # type: ignore[attr-defined]
            answers = [_one_answer(m, frame, allow_extrapolation, what_if_input) for m in models]
            return {"models": [ModelAnswer(**a).model_dump() for a in answers], "note": note}
        except Exception as exc:  # answered here, so no server log carries a traceback with a value in it
            body = {"message": f"internal error ({type(exc).__name__})", "problems": []}
            return JSONResponse(body, status_code=500)

    app.add_middleware(BodyLimit)
    return app
