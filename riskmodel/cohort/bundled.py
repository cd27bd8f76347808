"""Where the bundled cohort file is, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLED_FILENAME", "bundled_cohort_path"]

BUNDLED_FILENAME = "reconstructed_cohort.csv"


def bundled_cohort_path() -> Path:
    """The bundled cohort: inside an installed wheel (``riskmodel/_data``), else the checkout's ``data/``."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "_data" / BUNDLED_FILENAME
    return installed if installed.exists() else package.parent / "data" / BUNDLED_FILENAME
