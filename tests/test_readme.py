"""The README's Python example runs, and prints what the README says it prints."""

from __future__ import annotations

import re
from contextlib import redirect_stdout
from io import StringIO

from tests.conftest import REPO


def test_python_example_runs_as_documented() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    code = next((re.match(r"(.*)", b, re.S) for b in blocks if "load_bundled()" in b), None)
    assert code is not None, "the cohort example is missing from README.md"
    out = StringIO()
    namespace: dict[str, object] = {}
    with redirect_stdout(out):
        exec(compile(code.group(1), "README.md", "exec"), namespace)
    promised = re.search(r"^# (LC: .*)$", code.group(1), re.M)
    assert promised is not None
    assert out.getvalue().strip() == promised.group(1)
    assert namespace["X"].shape == (26, 7)  # type: ignore[attr-defined]
