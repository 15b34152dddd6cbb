"""A resident leaves the waiting list from the link of a waitlist e-mail."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import asyncpg
import httpx
from playwright.sync_api import expect

from loket_runtime import clock
from tests.browser.conftest import Pages, assert_accessible, shot
from tests.conftest import RunningStack


def subscribe(live: RunningStack, email: str = "x@example.org") -> tuple[str, str]:
    today = clock.today()
    r = httpx.post(
        f"{live.base_url}/api/v1/waitlist",
        json={
            "product": "residence-card",
            "location": "migration-counter",
            "from": today.isoformat(),
            "to": (today + timedelta(days=14)).isoformat(),
            "email": email,
            "language": "nl",
        },
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"]), str(r.json()["unsubscribe_token"])


def unsubscribed(live: RunningStack, subscription: str) -> bool:
    """Whether the notifications service marked the subscription as unsubscribed. asyncpg runs in a
    thread of its own: Playwright's sync API keeps an event loop running in this one."""

    async def query() -> bool:
        conn = await asyncpg.connect(live.dsn("notifications"))
        try:
            at = await conn.fetchval("SELECT unsubscribed_at FROM waitlist WHERE id = $1", uuid.UUID(subscription))
        finally:
            await conn.close()
        return at is not None

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, query()).result(timeout=30)


def test_a_resident_unsubscribes_from_the_waitlist_e_mail_link(pages: Pages, live: RunningStack) -> None:
    subscription, token = subscribe(live)
    assert not unsubscribed(live, subscription)
    url = f"/waitlist/unsubscribe?id={subscription}&token={token}"

    page = pages.new()
    page.goto(url)
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    expect(page.get_by_role("heading", level=1)).to_have_text("Uitschrijven van de wachtlijst")
    expect(page.locator("#unsubscribe-ask")).to_contain_text("Wilt u geen e-mails meer krijgen voor deze wachtlijst?")
    shot(page, "waitlist-1-ask")
    assert_accessible(page, "waitlist-1-ask")

    page.get_by_role("button", name="Ja, schrijf me uit").click()
    result = page.locator("#unsubscribe-result")
    expect(result).to_have_text("U bent uitgeschreven. U krijgt geen e-mails meer voor deze wachtlijst.")
    expect(result).to_have_attribute("data-outcome", "done")
    expect(result).to_be_focused()
    expect(page.get_by_role("button", name="Ja, schrijf me uit")).to_have_count(0)
    shot(page, "waitlist-2-done")
    assert_accessible(page, "waitlist-2-done")

    assert unsubscribed(live, subscription)

    # A language switch shows the outcome again rather than asking a second time.
    page.get_by_label("Taal").select_option("en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Leave the waiting list")
    expect(result).to_have_text("You are unsubscribed. You will no longer receive e-mails for this waiting list.")

    # The same link opened once more: the service's DELETE is idempotent (204 again), so the
    # resident is told, again, that they are unsubscribed.
    later = pages.new()
    later.goto(f"{url}&lang=nl")
    later.get_by_role("button", name="Ja, schrijf me uit").click()
    expect(later.locator("#unsubscribe-result")).to_have_attribute("data-outcome", "done")


def test_a_wrong_or_incomplete_unsubscribe_link_is_explained(pages: Pages, live: RunningStack) -> None:
    subscription, _token = subscribe(live, email="y@example.org")

    page = pages.new()
    page.goto(f"/waitlist/unsubscribe?id={subscription}&token=not-the-token&lang=fr")
    expect(page.get_by_role("heading", level=1)).to_have_text("Quitter la liste d'attente")
    page.get_by_role("button", name="Oui, me désinscrire").click()
    result = page.locator("#unsubscribe-result")
    expect(result).to_have_attribute("data-outcome", "gone")
    expect(result).to_contain_text("Nous ne trouvons pas cette inscription")
    expect(result).to_be_focused()
    shot(page, "waitlist-3-wrong-token-fr")
    assert_accessible(page, "waitlist-3-wrong-token-fr")
    assert not unsubscribed(live, subscription)

    # An unknown subscription (e.g. the data was erased meanwhile), in Dutch.
    page = pages.new()
    page.goto(f"/waitlist/unsubscribe?id={uuid.uuid4()}&token=abc&lang=nl")
    page.get_by_role("button", name="Ja, schrijf me uit").click()
    expect(page.locator("#unsubscribe-result")).to_have_text(
        "We vinden deze inschrijving niet: u bent al uitgeschreven of de link klopt niet. "
        "U krijgt er geen e-mails meer voor."
    )

    page = pages.new()
    page.goto(f"/waitlist/unsubscribe?id={uuid.uuid4()}&lang=en")
    expect(page.locator("#unsubscribe-result")).to_have_text(
        "This link is incomplete. Please check the link in your e-mail."
    )
    expect(page.get_by_role("button")).to_have_count(0)
    page.get_by_role("link", name="Book an appointment").last.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Book an appointment")
    assert_accessible(page, "waitlist-4-incomplete-en")
