"""Open an HTML file in headless Chromium and count the images a real browser laid out."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium_browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (no browser download), headless, for one test module."""
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def fill_form(
    page: Any, values: dict[str, Any], until: str = "body[data-state=answered], body[data-state=refused]"
) -> None:
    """Fill a calculator form as a user would (a level chosen, a number typed, None left empty),
    submit it and wait for the page's state ``until`` (by default: answered or refused)."""
    for name, value in values.items():
        if isinstance(value, str):
            page.select_option(f"#f-{name}", value)
        else:
            page.fill(f"#f-{name}", "" if value is None else str(value))
    page.click("button[type=submit]")
    page.wait_for_selector(until, timeout=30_000)


def headless(scratch: Path, budget_ms: int, *mode: str) -> list[str]:
    """A headless Chromium command with its own profile in ``scratch``, quiet on the network, that
    lets the page run ``budget_ms`` of virtual time; ``mode`` adds the output flags and the URL."""
    assert CHROMIUM is not None
    return [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={scratch / 'profile'}",
        f"--virtual-time-budget={budget_ms}",
        *mode,
    ]


def rendered_images(page: Path, scratch: Path) -> tuple[int, int]:
    """(images decoded with a non-zero size, images in the page) after the page's load event."""
    probe = page.read_text(encoding="utf-8").replace(
        "</body>",
        "<script>window.addEventListener('load', () => { const imgs = [...document.images];"
        " document.title = 'images ' + imgs.filter(i => i.complete && i.naturalWidth > 0 && i.width > 0).length"
        " + '/' + imgs.length; });</script></body>",
    )
    copy = scratch / "probe.html"
    copy.write_text(probe, encoding="utf-8")
    cmd = headless(scratch, 5000, "--dump-dom", copy.as_uri())
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    match = re.search(r"<title>images (\d+)/(\d+)</title>", dom)
    assert match is not None, dom[:500]
    loaded, total = map(int, match.groups())
    return loaded, total
