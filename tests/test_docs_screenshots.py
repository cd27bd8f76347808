"""The README's screenshots of a statistics report and a patient page, taken in a real browser
(Debian's Chromium driven by Playwright, no browser download). Set ``RISKMODEL_SCREENSHOTS=docs/img``
to keep them for the README; by default they stay in tmp. Each page must also lay out every image
it holds, so a screenshot of a broken page cannot be taken silently."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from riskmodel.cohort import Cohort
from riskmodel.reporting import write_patient_reports
from riskmodel.scoring import RiskModel
from tests.browser import CHROMIUM
from tests.conftest import REPO
from tests.serving_models import PATIENT, fit_bundled

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]
SHOTS = os.environ.get("RISKMODEL_SCREENSHOTS")


def _shoot(page_file: Path, png: Path, scroll_to: str | None = None) -> None:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            broken = page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length")
            total = page.evaluate("document.images.length")
            assert total > 0, f"{page_file.name} has no image"
            assert broken == 0, f"{page_file.name}: {broken} of {total} images did not load"
            if scroll_to:  # the part worth showing, e.g. the first section's curves
                page.evaluate(f"document.querySelector({scroll_to!r}).scrollIntoView()")
            page.screenshot(path=str(png))
        finally:
            browser.close()
    assert png.stat().st_size > 10_000
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(SHOTS) / png.name)


def test_a_statistics_report_screenshot(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "riskmodel", "report", "--out", str(tmp_path / "report"), "--endpoints", "os"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    _shoot(tmp_path / "report" / "report.html", tmp_path / "report.png", scroll_to="h2")


def test_a_patient_page_screenshot(bundled: Cohort, tmp_path: Path) -> None:
    model = RiskModel.load(fit_bundled(bundled, tmp_path / "lc", "lc"))
    patient = pd.DataFrame([{"patient_id": "P-001", **PATIENT}])
    pages = write_patient_reports([model], patient, tmp_path / "pages")
    assert len(pages) == 1
    _shoot(pages[0], tmp_path / "patient_page.png")


def test_the_readme_shows_the_screenshots_it_names() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for name in ("report.png", "patient_page.png", "calculator_260gy_outside.png"):
        assert f"docs/img/{name}" in text
        assert (REPO / "docs" / "img" / name).is_file(), name
