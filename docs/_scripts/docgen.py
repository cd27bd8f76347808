"""Helpers the docs run at build time (markdown-exec blocks import this module).

Every table, figure and console output on the tutorial and reference pages is produced here, by
running riskmodel itself, when ``mkdocs build`` runs; nothing is pasted. Tutorials work in one
temporary folder per build (MLflow store, salt and riskmodel home included), never in the
repository's ``mlruns/``.
"""

from __future__ import annotations

import atexit
import base64
import html
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import redirect_stdout
from functools import cache, wraps
from io import StringIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def returns_text(fn: Callable[..., Any]) -> Callable[..., str]:
    """The Markdown a helper prints, returned as a string for the page to print (markdown-exec
    captures the page's own ``print`` only, not a module's)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        buffer = StringIO()
        with redirect_stdout(buffer):
            fn(*args, **kwargs)
        return buffer.getvalue()

    return wrapper


_STATE: dict[str, Any] = {}


@cache
def workdir() -> Path:
    """The build's scratch folder (removed when the build ends)."""
    root = Path(tempfile.mkdtemp(prefix="riskmodel-docs-"))
    atexit.register(shutil.rmtree, root, True)
    (root / "home").mkdir()
    return root


def env() -> dict[str, str]:
    """The tutorials' environment: tracking store, riskmodel home and salt inside the scratch folder."""
    root = workdir()
    out = dict(os.environ)
    out.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlruns/mlflow.db",
        RISKMODEL_HOME=str(root / "home"),
        RISKMODEL_SALT="docs-build-salt",
        MPLBACKEND="Agg",
        COLUMNS="100",
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    (root / "mlruns").mkdir(exist_ok=True)
    return out


def folder(name: str) -> Path:
    """A tutorial's own folder inside the scratch folder."""
    path = workdir() / name
    path.mkdir(exist_ok=True)
    return path


@returns_text
def sh(command: str, cwd: Path, *, ok: tuple[int, ...] = (0,), keep: int | None = 60, show: bool = True) -> None:
    """Run a ``riskmodel ...`` command line as a reader would; its console block (the command and
    its output) is returned for the page to print. A non-zero exit the page does not expect fails
    the build."""
    argv = shlex.split(command)
    if argv[0] == "riskmodel":
        argv = [sys.executable, "-m", "riskmodel", *argv[1:]]
    proc = subprocess.run(argv, cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)
    output = (proc.stdout + proc.stderr).replace(str(workdir()), "…")
    if proc.returncode not in ok:
        raise RuntimeError(f"docs: `{command}` exited {proc.returncode}:\n{output[-3000:]}")
    if show:
        lines = output.rstrip().splitlines()
        if keep is not None and len(lines) > keep:
            lines = [*lines[:keep], f"… ({len(lines) - keep} more lines)"]
        shown = "\n".join(lines)
        print(f"```console\n$ {command}\n{shown}\n```\n")


def md_table(frame: Any, digits: int = 3, max_rows: int = 40) -> str:
    """A pandas DataFrame as a Markdown table (numbers to ``digits`` significant figures)."""

    def cell(value: Any) -> str:
        text = str(value)
        if isinstance(value, float):
            text = "" if value != value else f"{value:.{digits}g}"
        return text.replace("|", "\\|").replace("\n", " ")

    frame = frame.head(max_rows)
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows]) + "\n"


@returns_text
def csv_table(path: Path, columns: list[str] | None = None, digits: int = 3) -> None:
    """Print a CSV file riskmodel wrote as a Markdown table."""
    import pandas as pd

    frame = pd.read_csv(path)
    if columns:
        frame = frame[[c for c in columns if c in frame.columns]]
    print(md_table(frame, digits))


def images(page: Path) -> dict[str, str]:
    """The embedded images of a self-contained HTML page riskmodel wrote: alt text → data URI."""
    text = page.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for tag in re.findall(r"<img\b[^>]*>", text):
        alt = re.search(r'alt="([^"]*)"', tag)
        src = re.search(r'src="(data:image/[^"]+)"', tag)
        if alt and src:
            found.setdefault(html.unescape(alt.group(1)), src.group(1))
    return found


@returns_text
def show_image(page: Path, alt_contains: str, caption: str = "") -> None:
    """Print the first embedded image whose alt text contains ``alt_contains`` (fails if none)."""
    for alt, src in images(page).items():
        if alt_contains.lower() in alt.lower():
            print(f'<figure markdown><img alt="{html.escape(alt)}" src="{src}" style="max-width:100%">')
            print(f"<figcaption>{html.escape(caption or alt)}</figcaption></figure>\n")
            return
    raise RuntimeError(f"docs: no image with {alt_contains!r} in {page.name}: {sorted(images(page))}")


@returns_text
def show_file_image(path: Path, alt: str) -> None:
    """Print an image file (PNG or SVG) as an inline image."""
    kind = "svg+xml" if path.suffix == ".svg" else "png"
    data = base64.b64encode(path.read_bytes()).decode()
    print(f'<img alt="{html.escape(alt)}" src="data:image/{kind};base64,{data}" style="max-width:100%">\n')


@returns_text
def show_json(data: Any, keep: int = 40) -> None:
    """Print JSON as a code block (first ``keep`` lines)."""
    lines = json.dumps(data, indent=2, ensure_ascii=False).splitlines()
    if len(lines) > keep:
        lines = [*lines[:keep], "…"]
    print("```json\n" + "\n".join(lines) + "\n```\n")


@returns_text
def show_text(path: Path, language: str = "yaml", keep: int | None = None) -> None:
    """Print a text file riskmodel wrote as a code block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if keep is not None and len(lines) > keep:
        lines = [*lines[:keep], "…"]
    print(f"```{language}\n" + "\n".join(lines) + "\n```\n")


def state() -> dict[str, Any]:
    """Results shared between pages of one build (a model trained once, read by later pages)."""
    return _STATE


@returns_text
def html_section(page: Path, heading: str, *, images: bool = True) -> None:
    """Print the ``<h2>`` section of an HTML page riskmodel wrote whose title starts with ``heading``
    (its tables, text and, unless ``images`` is false, its figures), as raw HTML."""
    text = page.read_text(encoding="utf-8")
    start = text.find(f"<h2>{heading}")
    if start < 0:
        raise RuntimeError(f"docs: no section {heading!r} in {page.name}")
    end = text.find("<h2", start + 4)
    body = text[start : end if end > 0 else len(text)]
    body = re.sub(r"</?(section|body|html|main)\b[^>]*>", "", body)
    body = re.sub(r"<h2[^>]*>", "<h4>", body).replace("</h2>", "</h4>")
    if not images:
        body = re.sub(r"<img\b[^>]*>", "", body)
    body = re.sub(r"(<img\b)", r'\1 style="max-width:100%"', body)
    print(f'<div class="riskmodel-excerpt" markdown="0">\n{body}\n</div>\n')


def artifact(run_id: str, path: str) -> Path:
    """Download one artifact of a tutorial's MLflow run into the scratch folder."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env()["MLFLOW_TRACKING_URI"])
    target = folder("artifacts") / run_id
    target.mkdir(exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(target)))
