"""The calculators in a real browser (Debian's Chromium driven by Playwright, no browser download):
`riskmodel serve` started as a process and its form filled in, submitted and read (a PD patient for
LC, D90 = 260 Gy, a missing required field); the offline Cox calculator's own JavaScript against
`riskmodel score` on 100 random patients, to 1e-9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from riskmodel.cohort import Cohort
from riskmodel.errors import UserInputError, own_warnings_silenced
from riskmodel.explain.whatif import cox_band
from riskmodel.scoring import RiskModel
from riskmodel.serving.calculator import calculator_spec, write_calculator
from tests.browser import CHROMIUM, chromium_browser, fill_form
from tests.conftest import REPO
from tests.serving_models import PATIENT, fit_bundled, fit_declared_spline

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]
# set to a folder (docs/img) to keep the screenshots for the README; by default they stay in tmp
SHOTS = os.environ.get("RISKMODEL_SCREENSHOTS")
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def folders(bundled: Cohort, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browser")
    return {ep: fit_bundled(bundled, root / ep, ep) for ep in ("lc", "os")}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium_browser() as chromium:
        yield chromium


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(folders: dict[str, Path]) -> Iterator[str]:
    """`riskmodel serve` in its own process group, ended with the group at the end."""
    port = _free_port()
    argv = [sys.executable, "-m", "riskmodel", "serve", "--model", str(folders["lc"]), "--model", str(folders["os"])]
    process = subprocess.Popen(
        [*argv, "--port", str(port)], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "api/inputs", timeout=2) as r:
                    assert r.status == 200
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"riskmodel serve did not start: {process.communicate()[1][-2000:]}")
                time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        logs = (process.stdout.read() if process.stdout else "") + (process.stderr.read() if process.stderr else "")
        assert "17.25" not in logs  # no patient value in the server's output
        assert "POST /api/predict" not in logs  # no access log


def _shot(page: Any, tmp: Path, name: str) -> None:
    page.screenshot(path=str(tmp / name), full_page=True)
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp / name, Path(SHOTS) / name)


def test_the_served_form_refuses_pd_for_lc_marks_260_gy_and_names_a_missing_field(
    browser: Any, server: str, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(server)
    fill_form(page, {**PATIENT, "response_3mo": "PD"})
    assert page.inner_text("section[data-endpoint=lc] .status") == "Status: refused"
    assert "local failure at the 3-month CT" in page.inner_text("section[data-endpoint=lc] .reason")
    assert page.inner_text("section[data-endpoint=os] .status") == "Status: scored"
    _shot(page, tmp_path, "calculator_pd_refused.png")

    fill_form(page, {**PATIENT, "d90_gy": 260})
    for endpoint in ("lc", "os"):
        section = f"section[data-endpoint={endpoint}]"
        assert page.inner_text(f"{section} .status") == "Status: outside the development data"
        assert page.inner_text(f"{section} .risk-group") == "Risk group: none (outside the development data)"
        assert page.locator(f"{section} path.extrapolated").count() == 1  # the what-if's dashed part
        assert "260" in page.inner_text(f"{section} ul.flags")  # the flag says which value is outside
    assert "D90 260 Gy" in page.inner_text("section[data-endpoint=lc] table.shap")
    _shot(page, tmp_path, "calculator_260gy_outside.png")

    fill_form(page, {**PATIENT, "d90_gy": None})
    assert "d90_gy (D90): required: give a value" in page.inner_text("#problems")
    assert page.get_attribute("#f-d90_gy", "aria-invalid") == "true"
    assert page.locator("section.model").count() == 0
    _shot(page, tmp_path, "calculator_missing_field.png")
    page.close()


def _random_patients(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "patient_id": [f"R{i:03d}" for i in range(n)],
            "t_stage": rng.choice(["T1", "T2", "T3"], n),
            "n_stage": rng.choice(["N0", "N1", "N2", "N3"], n, p=[0.3, 0.3, 0.3, 0.1]),
            "m_stage": rng.choice(["M0", "M1"], n),
            "recurrence_interval_months": np.round(rng.uniform(3, 40, n), 2),
            "lesion_volume_cm3": np.round(rng.uniform(2, 60, n), 2),
            "d90_gy": np.round(rng.uniform(80, 145, n), 1),
            "response_3mo": rng.choice(["CR", "PR", "SD", "PD"], n, p=[0.3, 0.3, 0.3, 0.1]),
        }
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riskmodel", *args], capture_output=True, text=True, timeout=300)


def test_the_offline_calculator_equals_riskmodel_score_on_100_random_patients(
    browser: Any, folders: dict[str, Path], tmp_path: Path
) -> None:
    page_file = tmp_path / "calc.html"
    made = _cli("calculator", "--model", str(folders["lc"]), "--out", str(page_file))
    assert made.returncode == 0, made.stderr
    patients = _random_patients(100, 20)
    patients.to_csv(tmp_path / "p.csv", index=False)
    scored = _cli(
        "score", "--model", str(folders["lc"]), "--patients", str(tmp_path / "p.csv"), "--out", str(tmp_path / "s.json")
    )
    assert scored.returncode == 0, scored.stderr
    want = {r["patient_id"]: r for r in json.loads((tmp_path / "s.json").read_text())}

    page = browser.new_page()
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
    page.goto(page_file.as_uri())
    inputs = patients.drop(columns="patient_id").to_dict(orient="records")
    got = page.evaluate("rows => rows.map(r => window.riskmodelCalculate(r))", inputs)

    model = RiskModel.load(folders["lc"])
    worst = 0.0
    for pid, js in zip(patients["patient_id"], got, strict=True):
        py = want[pid]
        assert js["status"] == py["status"], (pid, js, py)
        assert js.get("risk_group") == py.get("risk_group"), pid
        if "survival" not in py:
            assert js.get("reason") == py["reason"]
            continue
        diffs = [abs(js["risk_score"] - py["risk_score"])]
        diffs += [abs(h["survival"] - py["survival"][f"{h['months']:g}"]) for h in js["horizons"]]
        row = patients[patients["patient_id"] == pid]
        with own_warnings_silenced():  # an N3 patient: the ordinal stage's warning, reported by score
            Z = model.features.transform(model.validate_patients(row))
        band = cox_band(model.estimator, Z, model.horizons)
        assert band is not None
        diffs += [abs(h["lower"] - band[0][0, j]) for j, h in enumerate(js["horizons"])]
        diffs += [abs(h["upper"] - band[1][0, j]) for j, h in enumerate(js["horizons"])]
        worst = max(worst, *diffs)
    assert worst <= TOLERANCE, worst
    statuses = {r["status"] for r in want.values()}
    assert statuses == {"scored", "outside the development data", "refused"}

    fill_form(page, {**PATIENT, "d90_gy": 125.0})
    assert page.inner_text(".status") == "Status: scored"
    assert "P(event-free at 12 months after the 3-month landmark" in page.inner_text("#results")
    _shot(page, tmp_path, "calculator_offline.png")
    page.close()


def test_the_offline_calculator_carries_a_declared_spline_and_log_encoding(browser: Any, tmp_path: Path) -> None:
    model = RiskModel.load(fit_declared_spline(tmp_path / "declared"))
    assert {"rcs", "log", "table"} <= {r["kind"] for r in calculator_spec(model)["recipes"]}
    write_calculator(model, tmp_path / "calc.html")
    patients = _random_patients(60, 21).drop(columns=["recurrence_interval_months", "response_3mo"])
    patients["d90_gy"] = np.round(np.random.default_rng(3).uniform(40, 200, len(patients)), 1)  # past the knots
    with own_warnings_silenced():
        want = model.score(patients.astype(str))
    page = browser.new_page()
    page.goto((tmp_path / "calc.html").as_uri())
    got = page.evaluate(
        "rows => rows.map(r => window.riskmodelCalculate(r))", patients.drop(columns="patient_id").to_dict("records")
    )
    page.close()
    worst = 0.0
    for py, js in zip(want, got, strict=True):
        assert js["status"] == py["status"], (js, py)
        assert js.get("risk_group") == py.get("risk_group")
        if "survival" in py:
            worst = max(worst, abs(js["risk_score"] - py["risk_score"]))
            worst = max(worst, *[abs(h["survival"] - py["survival"][f"{h['months']:g}"]) for h in js["horizons"]])
    assert worst <= TOLERANCE, worst
    assert {r["status"] for r in want} >= {"scored", "outside the development data"}


def test_the_offline_calculator_refuses_a_forest_with_one_line(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as refused:
        write_calculator(RiskModel.load(folders["os"]), tmp_path / "c.html")
    assert "\n" not in str(refused.value)
    assert "use `riskmodel serve`" in str(refused.value)
    assert not (tmp_path / "c.html").exists()


def test_the_readme_screenshots_exist() -> None:
    assert (REPO / "docs" / "img" / "calculator_260gy_outside.png").is_file()
