"""A cancellation the resident did not ask for (a catalogue change, a closure, a clerk) offers the
nearest free times the calendar found and the waiting list; one the resident made offers neither."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy

import pytest

from loket_contracts import events as ev
from loket_notifications.domain.kinds import Kind
from loket_notifications.domain.planning import ReminderPolicy, decide
from tests.unit.notifications.test_notifications_compose import START, composer, row

LATER = START + timedelta(days=1)
FREE = [ev.Slot(start=LATER, end=LATER + timedelta(minutes=20), location_id="counter")]
WAITLIST = {
    "nl": "schrijf u daar in op de wachtlijst",
    "en": "join the waiting list there",
    "fr": "inscrivez-vous-y sur la liste d'attente",
}


def cancelled(by: str, alternatives: list[ev.Slot]) -> ev.BookingCancelled:
    return ev.BookingCancelled(
        booking_id="b1",
        location_id="counter",
        product_id="residence-card",
        desk_id="d1",
        start=START,
        end=START + timedelta(minutes=20),
        cancelled_by=by,  # type: ignore[arg-type]
        reason="the desk closes",
        cancelled_at=START - timedelta(days=2),
        alternatives=alternatives,
    )


def test_the_calendars_free_times_reach_the_cancellations_context() -> None:
    decision = decide(cancelled("system", FREE), None, ReminderPolicy(), START - timedelta(days=2))
    (email,) = [m for m in decision.messages if m.kind is Kind.CANCELLATION]
    assert email.context["alternatives"] == [
        {"start": LATER.isoformat(), "end": (LATER + timedelta(minutes=20)).isoformat(), "location_id": "counter"}
    ]
    resident = decide(cancelled("resident", []), None, ReminderPolicy(), START - timedelta(days=2))
    assert "alternatives" not in resident.messages[0].context


@pytest.mark.parametrize("language", ["nl", "en", "fr"])
async def test_a_city_cancellation_offers_the_free_times_and_the_waiting_list(language: str) -> None:
    free = {"start": LATER.isoformat(), "end": (LATER + timedelta(minutes=20)).isoformat(), "location_id": "counter"}
    context = {"cancelled_by": "system", "reason": "the desk closes", "alternatives": [free]}
    rendered = await composer.render(row(Kind.CANCELLATION, language, **context))
    text = message_from_bytes(rendered.payload, policy=policy.default).get_body(("plain",)).get_content()
    assert "Migratieloket" in text and "date=" + LATER.date().isoformat() in text  # a link to that day
    assert WAITLIST[language] in text


async def test_a_residents_own_cancellation_offers_neither() -> None:
    rendered = await composer.render(row(Kind.CANCELLATION, "en", cancelled_by="resident", reason=""))
    text = message_from_bytes(rendered.payload, policy=policy.default).get_body(("plain",)).get_content()
    assert WAITLIST["en"] not in text and "still free" not in text
