"""``riskmodel serve``: verify every model folder in full, then run the calculator with uvicorn.

Each model is verified before anything of it is loaded (:func:`riskmodel.tracking.verify_model`:
the MLflow files against what riskmodel writes, the manifest's SHA-256 of every file, the schemas,
no pickle); one tampered folder stops the start, with one line per problem (exit code 2), and no
server is started. The server listens on a loopback address unless ``allow_remote``: it has no
authentication, and the form carries patients' values. Uvicorn runs without an access log (a URL
or a client address is not a patient's value, but nothing about a request is kept) and logs
warnings only; the app itself logs nothing (:mod:`riskmodel.serving.app`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from riskmodel.errors import UserInputError
from riskmodel.scoring import RiskModel
from riskmodel.tracking import verify_model
from riskmodel.tracking.ui import is_loopback

__all__ = ["check_host", "load_verified", "serve"]


def check_host(host: str, port: int, allow_remote: bool) -> None:
    """Refuse a port out of range, and a non-loopback host without ``allow_remote``."""
    if not 0 < port < 65536:
        raise UserInputError(f"--port {port}: give a port between 1 and 65535")
    if not is_loopback(host) and not allow_remote:
        raise UserInputError(
            f"--host {host}: not a loopback address, and the calculator has no authentication (anyone who reaches "
            "it can send patients' values through it); add --allow-remote to serve it anyway, behind your own "
            "authentication and TLS"
        )


def load_verified(uris: Sequence[str], tracking_uri: str | None = None) -> list[RiskModel]:
    """Every model verified in full and loaded; the first failure raises (one line per problem)."""
    if not uris:
        raise UserInputError("--model: give at least one model (a folder, runs:/<id>/model or models:/<name>/<v>)")
    return [verify_model(uri, tracking_uri=tracking_uri).model for uri in uris]


def serve(
    uris: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    allow_remote: bool = False,
    allow_extrapolation: bool = False,
    tracking_uri: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Verify and load the models, then serve the calculator until interrupted."""
    check_host(host, port, allow_remote)
    models = load_verified(uris, tracking_uri)
    import uvicorn

    from riskmodel.serving.app import create_app

    shown = f"[{host}]" if ":" in host else host
    hosts = ["127.0.0.1", "localhost", "[::1]", shown, host]
    app = create_app(
        models, allow_extrapolation=allow_extrapolation, allowed_hosts=["*"] if allow_remote else hosts, warm=True
    )
    if announce is not None:
        labels = ", ".join(f"{m.endpoint.upper()} {m.family}" for m in models)
        announce(f"riskmodel calculator for {labels} on http://{shown}:{port}/ (API docs: /docs; Ctrl-C to stop)")
        if not is_loopback(host):
            announce(f"warning: serving on {host}:{port} without authentication; put it behind your own")
    config: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": False,
        "log_level": "warning",
        "server_header": False,
        "limit_concurrency": 32,
        "timeout_keep_alive": 5,
    }
    uvicorn.run(app, **config)
