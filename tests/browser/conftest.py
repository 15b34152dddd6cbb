"""Browser tests: Playwright for Python driving Debian's Chromium (headless) against the live stack.

Chromium comes from `deploy/local/install-browser.sh` (apt), never from `playwright install`;
axe-core from `web/node_modules` (`npm ci --prefix web`). Screenshots and axe reports of every
step go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from loket_runtime import clock
from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, free_slots, open_day

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts" / "browser"
AXE = REPO / "web" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("LOKET_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser(live: RunningStack) -> Iterator[Any]:
    """One Chromium per module. Playwright's sync API runs an event loop in this thread while it is
    open, so the stack (which uses asyncio.run) starts first, and the browser is closed at the end
    of each module so that the asyncio tests after these find no loop running."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: run deploy/local/install-browser.sh")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class Pages:
    """Opens pages on the stack's origin; records JavaScript errors, which fail the test."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    def new(self, viewport: tuple[int, int] = (1280, 900), locale: str = "nl-BE") -> Any:
        context = self.browser.new_context(
            base_url=self.base_url,
            viewport={"width": viewport[0], "height": viewport[1]},
            locale=locale,
            timezone_id="Europe/Brussels",
        )
        context.set_default_timeout(TIMEOUT_MS)
        if clock.offset_from_environment():
            # The stack runs as if it were another day (`make test-dates`): so does the page, whose
            # "today" (the first day it offers, the date picker) comes from the browser's clock.
            context.clock.install(time=clock.now())
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser: Any, live: RunningStack) -> Iterator[Pages]:
    opened = Pages(browser, live.base_url)
    yield opened
    opened.close()
    assert not opened.errors, f"JavaScript errors on the page: {opened.errors}"


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot into tests/artifacts/browser/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_accessible(page: Any, name: str) -> list[dict[str, Any]]:
    """Run axe-core (WCAG 2.0/2.1 A and AA rules) on the page: no serious or critical violation."""
    assert AXE.exists(), f"axe-core missing at {AXE}: run `npm ci --prefix web`"
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {
                runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
                resultTypes: ['violations'],
            });
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                           nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
        }"""
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.axe.json").write_text(json.dumps(result, indent=2))
    serious = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not serious, f"axe found serious/critical violations on {name}: {json.dumps(serious, indent=2)}"
    return result


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def book_first_free(live: RunningStack, product: str, location: str, **overrides: Any) -> dict[str, Any]:
    """Book the first free time of `product` at `location` through the API, as any frontend would
    (a day from two days ahead, see `open_day`); the answer must be 201."""
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        day = open_day(client, product, location, min_free=1)
        start = free_slots(client, product, location, day)[0]["start"]
        booked = client.post(
            "/api/v1/bookings", json=booking_body(product, location, start, **overrides), headers={"Prefer": "wait=5"}
        )
    assert booked.status_code == 201, booked.text
    return dict(booked.json())
