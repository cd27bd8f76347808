"""Running an R script from a test: the script written beside its data, its output read back.

The tests that call R skip when ``HAS_R`` is False (Rscript not on PATH).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

HAS_R = shutil.which("Rscript") is not None


def rscript(folder: Path, name: str, script: str, *args: str, timeout: float = 120) -> str:
    """Write ``script`` to ``folder/name``, run it with ``args`` and return its standard output
    (the test fails with R's standard error when the script does)."""
    path = folder / name
    path.write_text(script, encoding="utf-8")
    run = subprocess.run(["Rscript", str(path), *args], capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr
    return run.stdout


def r_cases(stdout: str) -> dict[str, dict[str, np.ndarray]]:
    """Lines ``case<TAB>key<TAB>value<TAB>…`` (a trailing tab allowed) as {case: {key: values}}."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for line in stdout.splitlines():
        case, key, *values = line.rstrip("\t").split("\t")
        out.setdefault(case, {})[key] = np.array([float(v) for v in values if v.strip()])
    return out
