"""No secret is ever printed, logged, tagged or put on a command line (issue 17, part 2).

The password holds "/", "@", ":" and "%2F": the characters that make a naive URL parser show the
rest of a password as a path, a host or a port.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from riskmodel.core.redact import redact_logs, redact_text, redact_url

PASSWORD = "s3/cr@t:pa%2Fss#w"
# every piece a mis-split could show: the whole, its decoded and encoded forms, and its fragments
PIECES = ("'s3'", "s3/cr", "cr@t", "t:pa", "pa%2F", "2Fss", "pa/ss", "Fss#w", PASSWORD, quote(PASSWORD, safe=""))

SMALL = """name: secrettest
endpoints: [os]
evaluation: {n_splits: 3, n_repeats: 1, bootstrap: 0}
tune: {metric: uno_c, n_splits: 3, n_repeats: 1}
"""


PLAN_LINES = ("evaluation plan", "  ", "train: ")  # train's plan and progress lines on stderr


def assert_hidden(text: str) -> None:
    for piece in PIECES:
        assert piece not in text, (piece, text)


SHAPES = {
    "userinfo": (f"postgresql://ann:{PASSWORD}@db.example:5432/optuna", "postgresql://ann:***@db.example:5432/optuna"),
    "driver, IPv6, query": (
        f"postgresql+psycopg://ann:{PASSWORD}@[::1]:5432/optuna?sslmode=require",
        "postgresql+psycopg://ann:***@[::1]:5432/optuna?sslmode=require",
    ),
    "token as user": (f"https://{PASSWORD}@tracking.example/", "https://***@tracking.example/"),
    "empty user": (f"redis://:{PASSWORD}@cache:6379/0", "redis://***@cache:6379/0"),
    "encoded": (f"http://ann:{quote(PASSWORD, safe='')}@tracking:5000", "http://ann:***@tracking:5000"),
    "query password": (f"sqlite:////data/optuna.db?password={PASSWORD}", "sqlite:////data/optuna.db?password=***"),
    "query among others": (
        f"postgresql://db/x?user=ann&password={PASSWORD}&sslmode=require",
        "postgresql://db/x?user=ann&password=***&sslmode=require",
    ),
    "both places": (
        f"mysql://ann:{PASSWORD}@db/x?ssl_key=/k.pem&access_token={PASSWORD}",
        "mysql://ann:***@db/x?ssl_key=***&access_token=***",
    ),
    "no secret": ("http://tracking-host:5000/x?mode=ro", "http://tracking-host:5000/x?mode=ro"),
}


@pytest.mark.parametrize(("url", "shown"), SHAPES.values(), ids=SHAPES.keys())
def test_every_url_shape_is_shown_without_its_secret(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert_hidden(redact_url(url))


def test_an_error_quoting_pieces_of_a_mis_split_password_shows_none_of_them() -> None:
    url = f"postgresql://ann:{PASSWORD}@127.0.0.1:9/mlflow"
    # what SQLAlchemy and requests say about such a URL: a port or a host made of password pieces
    message = (
        f"invalid literal for int() with base 10: 'pa%2Fss#w@127.0.0.1:9'; failed to resolve host 's3'; "
        f"Invalid url: {url}/api"
    )
    shown = redact_text(message, url)
    assert_hidden(shown)
    assert "Invalid url: postgresql://ann:***@127.0.0.1:9/mlflow/api" in shown


def test_log_records_quoting_a_url_lose_its_secret() -> None:
    url = f"postgresql://ann:{PASSWORD}@db/x"
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        redact_logs(url)
        logging.getLogger("riskmodel.test").warning("store %s is slow (password %s)", url, PASSWORD)
        try:
            raise ConnectionError(f"cannot reach {url}")
        except ConnectionError:
            logging.getLogger("riskmodel.test").exception("failed")
    finally:
        root.removeHandler(handler)
    text = buffer.getvalue()
    assert "store postgresql://ann:***@db/x is slow" in text
    assert "ConnectionError" in text
    assert_hidden(text)


def _riskmodel(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", **env}
    return subprocess.run(
        [sys.executable, "-m", "riskmodel", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=300
    )


DOWN = {
    "train": (["train", "e.yaml", "--models", "cox"], f"postgresql://ann:{PASSWORD}@127.0.0.1:9/mlflow"),
    "score": (["score", "--model", "runs:/0123/model", "--patients", "p.csv"], f"http://ann:{PASSWORD}@127.0.0.1:9"),
    "models list": (["models", "list"], f"mysql+pymysql://127.0.0.1:9/db?password={PASSWORD}"),
    "ui": (["ui", "--port", "9"], f"postgresql://ann:{PASSWORD}@127.0.0.1:9/mlflow"),
}


@pytest.mark.parametrize(("args", "uri"), DOWN.values(), ids=DOWN.keys())
def test_a_store_that_is_down_is_one_line_without_its_password(tmp_path: Path, args: list[str], uri: str) -> None:
    (tmp_path / "e.yaml").write_text(SMALL)
    (tmp_path / "p.csv").write_text("patient_id,age_years\nN1,61\n")
    done = _riskmodel(args, tmp_path, MLFLOW_TRACKING_URI=uri)
    assert done.returncode == 2, done.stderr
    assert_hidden(done.stdout + done.stderr)
    # train's evaluation plan and progress (informational, printed before the store is reached) aside
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith(PLAN_LINES)]
    assert len(lines) == 1, done.stderr
    assert "***" in lines[0]
    assert "Traceback" not in done.stderr


def test_a_storage_that_is_down_is_one_line_without_its_password(tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_text(SMALL)
    storage = f"postgresql://ann:{PASSWORD}@127.0.0.1:9/optuna"
    args = ["tune", "e.yaml", "--trials", "1", "--model", "cox", "--storage", storage]
    done = _riskmodel(args, tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert done.returncode == 2, done.stderr
    assert_hidden(done.stdout + done.stderr)
    assert done.stderr.strip().splitlines()[-1].startswith("--storage: cannot open postgresql://ann:***@127.0.0.1:9")


def _store_text(uri: str) -> str:
    """Every experiment tag, run tag, param and run name of the store, as one text."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=10_000)
    assert runs
    return json.dumps(
        [e.tags for e in experiments] + [[r.data.tags, r.data.params, r.info.run_name] for r in runs], default=str
    )


@pytest.mark.slow
def test_train_with_a_password_in_the_tracking_uri_shows_it_nowhere(tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_text(SMALL)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db?password={PASSWORD}"
    args = ["train", "e.yaml", "--models", "cox", "--summary-json", "summary.json"]
    done = _riskmodel(args, tmp_path, MLFLOW_TRACKING_URI=uri)
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "summary.json").read_text()
    for text in (done.stdout, done.stderr, summary, _store_text(uri)):
        assert_hidden(text)
    assert f"in sqlite:///{tmp_path}/mlruns/mlflow.db?password=***;" in done.stdout
    assert json.loads(summary)["tracking_uri"].endswith("?password=***")


@pytest.mark.slow
def test_tune_tags_and_prints_its_storage_without_the_password(tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_text(SMALL)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    storage = f"sqlite:///{tmp_path}/optuna.db?password={PASSWORD}"
    args = ["tune", "e.yaml", "--trials", "1", "--model", "cox", "--storage", storage]
    done = _riskmodel(args, tmp_path, MLFLOW_TRACKING_URI=uri)
    assert done.returncode == 0, done.stderr
    stored = _store_text(uri)
    for text in (done.stdout, done.stderr, stored):
        assert_hidden(text)
    assert f'"riskmodel.optuna_storage": "sqlite:///{tmp_path}/optuna.db?password=***"' in stored
