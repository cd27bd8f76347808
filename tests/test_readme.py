"""The README is a front door: its two quickstart commands come first (``.ci/run`` runs the second
verbatim), it stays short, and every link it gives leads to a file in the repository. The Python
cohort example it used to carry now lives in the docs (docs/guide/data.md), and still runs and
prints what the page says it prints."""

from __future__ import annotations

import re
from contextlib import redirect_stdout
from io import StringIO

from tests.conftest import REPO

QUICKSTART = [
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && riskmodel train",
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && pytest',
]


def test_the_readme_opens_with_the_two_quickstart_commands() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)\n```", text, re.S)
    assert blocks[:2] == QUICKSTART
    assert text.index("```bash") < text.index("\n## ")  # before any section


def test_the_readme_is_short_and_its_links_resolve() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 120
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local, "the README links into the docs"
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, missing


def test_python_example_runs_as_documented() -> None:
    text = (REPO / "docs" / "guide" / "data.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    code = next((re.match(r"(.*)", b, re.S) for b in blocks if "load_bundled()" in b), None)
    assert code is not None, "the cohort example is missing from docs/guide/data.md"
    out = StringIO()
    namespace: dict[str, object] = {}
    with redirect_stdout(out):
        exec(compile(code.group(1), "docs/guide/data.md", "exec"), namespace)
    promised = re.search(r"^# (LC: .*)$", code.group(1), re.M)
    assert promised is not None
    assert out.getvalue().strip() == promised.group(1)
    assert namespace["X"].shape == (26, 7)  # type: ignore[attr-defined]
