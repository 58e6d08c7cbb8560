"""Headless Chromium (Debian's package) driven by Playwright, against the real API subprocess."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import unavailable

CHROMIUM = Path(os.environ.get("PHOENIX_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = (
    "install the browser tests' needs: `apt-get install -y chromium` and "
    "`pip install -e '.[test]'` (playwright); not `playwright install`: "
    "the system Chromium is used"
)
TIMEOUT_MS = 20_000


def _network_noise(text: str) -> bool:
    """The browser logs every non-2xx answer and refused connection; tests cause those on purpose."""
    return text.startswith(("Failed to load resource", "WebSocket connection to"))


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401 - only whether it imports
    except ImportError:
        return "playwright is not installed"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} does not exist"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One browser per test module; CI fails rather than skipping when it cannot start."""
    missing = _missing()
    if missing:
        unavailable(f"browser tests cannot run: {missing}; {INSTALL_HINT}")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab (own session storage); uncaught script errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    tab.on(
        "console",
        lambda msg: (
            errors.append(f"console: {msg.text}")
            if msg.type == "error" and not _network_noise(msg.text)
            else None
        ),
    )
    yield tab
    context.close()
    assert not errors, f"the dashboard raised script errors: {errors}"
