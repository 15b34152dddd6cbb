"""The calendar objects of a booking's whole life, as planning decides them and the composer renders
them, next to the `calendar.ics` download of each step (built from the same rules,
loket_runtime.ical), imported in order into a calendar application (tests/calendar_app.py).

At every step: one UID, a SEQUENCE that never goes down and goes up with every change, STATUS and
METHOD true to the booking's state, times in Europe/Brussels with their VTIMEZONE; and a CANCEL
e-mailed whenever an event the resident may hold stops being true."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest

from loket_contracts import events as ev
from loket_notifications.application.compose import Composer, ComposeSettings, calendar_of
from loket_notifications.application.ports import Contact, DeliveryRow, LocationInfo, ProductInfo
from loket_notifications.domain.keys import booking_key
from loket_notifications.domain.kinds import Kind, channel_of
from loket_notifications.domain.planning import BookingView, ReminderPolicy, decide
from loket_runtime import ical
from tests.calendar_app import CalendarApp, Parsed, check

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
START = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)  # 10:30 in Ghent
LENGTH = timedelta(minutes=45)
POLICY = ReminderPolicy()
UID = "booking-b1@loket.gent"


class Catalogue:
    async def product(self, product_id: str) -> ProductInfo | None:
        return ProductInfo("long-stay", {"nl": "Lang verblijf", "en": "Long stay", "fr": "Long séjour"}, [])

    async def location(self, location_id: str) -> LocationInfo | None:
        return LocationInfo("mc", "Loket Migratie, Stadskantoor Gent", "Woodrow Wilsonplein 1, 9000 Gent")

    def cached_product(self, product_id: str) -> ProductInfo | None:
        return None


class Contacts:
    async def contact(self, booking_id: str) -> Contact:
        return Contact("anna@example.org", "+32470000000", "en", "http://web/manage/b1?token=t", None, "Anna", "P")


@dataclass
class Sent:
    step: str
    via: str  # "email <kind>" or "download"
    ics: bytes


@dataclass
class Life:
    """One booking's events fed to planning; every e-mail rendered; the download after each step."""

    known: BookingView | None = None
    sent: list[Sent] = field(default_factory=list)
    mails: list[tuple[str, Kind]] = field(default_factory=list)  # (step, kind) of every e-mail
    composer: Composer = field(
        default_factory=lambda: Composer(Catalogue(), Contacts(), ComposeSettings(), clock=lambda: NOW)
    )

    def step(self, name: str, event: ev.Event, at: datetime = NOW) -> None:
        decision = decide(event, self.known, POLICY, at)
        self.known = decision.state
        for planned in decision.messages:
            if channel_of(planned.kind) != "email" or planned.kind in (Kind.REMINDER,):
                continue
            self.mails.append((name, planned.kind))
            row = delivery(planned.kind, planned.version, {**planned.context, "product_id": "p", "location_id": "mc"})
            message = message_from_bytes(asyncio.run(self.composer.render(row)).payload, policy=policy.default)
            for part in message.iter_attachments():  # type: ignore[attr-defined]
                if part.get_content_type() == "text/calendar":
                    ics = part.get_content()
                    ics = ics.encode() if isinstance(ics, str) else bytes(ics)
                    assert part.get_param("method") == check(ics).method  # the MIME part says the METHOD too
                    self.sent.append(Sent(name, f"email {planned.kind.value}", ics))
        download = self.download()
        if download is not None:
            self.sent.append(Sent(name, "download", download))

    def download(self) -> bytes | None:
        """What booking's `calendar.ics` answers now: the same rules, METHOD:PUBLISH unless ended."""
        if self.known is None:
            return None
        state = ical.event_state(self.known.status, self.known.sequence)
        assert state is not None
        end = self.known.end or self.known.start + LENGTH  # booking always knows the end
        appointment = ical.Appointment("b1", self.known.start, end, "Long stay", "Loket Migratie")
        return ical.build(appointment, state, ical.method_for(state.status, email=False), stamp=NOW)

    def objects(self, step: str | None = None, via: str | None = None) -> list[Parsed]:
        return [check(s.ics) for s in self.sent if (step is None or s.step == step) and (via is None or s.via == via)]


def delivery(kind: Kind, version: int, context: dict[str, Any]) -> DeliveryRow:
    return DeliveryRow(
        id="00000000-0000-0000-0000-000000000001",
        dedupe_key=booking_key("b1", kind.value, version),
        booking_id="b1",
        subscription_id=None,
        kind=kind.value,
        version=version,
        channel="email",
        language="en",
        context=context,
        status="sending",
        due_at=NOW,
        not_after=None,
        attempts=1,
        message_id=None,
        recipient=None,
        payload=None,
    )


BASE: dict[str, Any] = dict(booking_id="b1", location_id="mc", product_id="p", language="en")


def held(start: datetime = START) -> ev.BookingHeld:
    return ev.BookingHeld(
        **BASE, desk_id="d", start=start, end=start + LENGTH, hold_expires_at=NOW + timedelta(hours=1)
    )


def confirmed(start: datetime = START, by: str = "resident") -> ev.BookingConfirmed:
    return ev.BookingConfirmed(**BASE, desk_id="d", start=start, end=start + LENGTH, confirmed_by=by)


def rescheduled(old: datetime, new: datetime, sequence: int) -> ev.BookingRescheduled:
    return ev.BookingRescheduled(
        **BASE, request_id=f"r{sequence}", desk_id="d", old_start=old, start=new, end=new + LENGTH, sequence=sequence
    )


def cancelled(start: datetime, by: str = "resident") -> ev.BookingCancelled:
    return ev.BookingCancelled(
        **BASE, desk_id="d", start=start, end=start + LENGTH, cancelled_by=by, reason="x", cancelled_at=NOW
    )


def expired(start: datetime) -> ev.BookingExpired:
    return ev.BookingExpired(**BASE, start=start)


def rejected() -> ev.BookingRejected:
    return ev.BookingRejected(**BASE, start=START, reason="slot-taken")


def imported(life: Life) -> CalendarApp:
    """Every object in the order it was given out, into one calendar: none may be stale."""
    app = CalendarApp()
    for sent in life.sent:
        app.apply(sent.ics)
    assert not app.stale, app.stale
    sequences = [check(s.ics).sequence for s in life.sent]
    assert sequences == sorted(sequences), sequences
    return app


def the_event(app: CalendarApp) -> Any:
    assert list(app.events) == [UID]  # one event, never two
    return app.events[UID]


# --- whole lives ---------------------------------------------------------------------------------


def test_held_moved_confirmed_moved_cancelled_is_one_event_that_ends_cancelled() -> None:
    second, third = START + timedelta(days=1), START + timedelta(days=2, hours=3)
    life = Life()
    life.step("held", held())
    # held: the please-confirm asks for the confirmation and carries no invitation; the download
    # offers the held time, TENTATIVE
    assert life.mails == [("held", Kind.PLEASE_CONFIRM)]
    [download] = life.objects("held")
    assert (download.method, download.status, download.sequence, download.start) == ("PUBLISH", "TENTATIVE", 0, START)

    life.step("moved while held", rescheduled(START, second, 1))
    # a tentative event the resident may hold moved: the notice carries the update, still TENTATIVE
    [mail] = life.objects("moved while held", "email rescheduled")
    assert (mail.method, mail.status, mail.sequence, mail.start) == ("REQUEST", "TENTATIVE", 3, second)
    assert mail.attendee == "mailto:anna@example.org"
    assert life.known is not None and life.known.status == "held"  # moving a hold does not confirm it

    life.step("confirmed", confirmed(second))
    [mail] = life.objects("confirmed", "email confirmation")
    assert (mail.method, mail.status, mail.sequence, mail.start) == ("REQUEST", "CONFIRMED", 4, second)

    life.step("moved", rescheduled(second, third, 2))
    [mail] = life.objects("moved", "email rescheduled")
    assert (mail.method, mail.status, mail.sequence, mail.start) == ("REQUEST", "CONFIRMED", 7, third)

    life.step("cancelled", cancelled(third, by="staff"))
    [mail] = life.objects("cancelled", "email cancellation")
    assert (mail.method, mail.status, mail.sequence, mail.start) == ("CANCEL", "CANCELLED", 8, third)
    [download] = life.objects("cancelled", "download")
    assert (download.method, download.status, download.sequence) == ("CANCEL", "CANCELLED", 8)

    event = the_event(imported(life))
    assert (event.status, event.sequence, event.start, event.end) == ("CANCELLED", 8, third, third + LENGTH)
    # every object, e-mailed or downloaded, is about the one event and in Brussels time
    assert {o.uid for o in life.objects()} == {UID}
    assert all("Woodrow Wilsonplein 1" in o.location for o in life.objects("moved", "email rescheduled"))


def test_confirmed_at_once_moved_and_cancelled_by_the_resident() -> None:
    later = START + timedelta(hours=2)
    life = Life()
    life.step("confirmed", confirmed(by="calendar"))
    life.step("moved", rescheduled(START, later, 1))
    life.step("cancelled", cancelled(later))
    by_step = {(s.step, s.via): check(s.ics) for s in life.sent}
    assert by_step[("confirmed", "email confirmation")].sequence == 1
    assert by_step[("confirmed", "download")].sequence == 1  # the download and the e-mail agree
    assert by_step[("moved", "email rescheduled")].sequence == 4
    assert by_step[("cancelled", "email cancellation")].method == "CANCEL"
    assert the_event(imported(life)).status == "CANCELLED"


def test_a_hold_that_expires_cancels_the_tentative_event() -> None:
    life = Life()
    life.step("held", held())
    life.step("expired", expired(START))
    [mail] = life.objects("expired", "email expired")
    assert (mail.method, mail.status, mail.sequence, mail.start) == ("CANCEL", "CANCELLED", 2, START)
    assert mail.attendee == "mailto:anna@example.org"
    [download] = life.objects("expired", "download")
    assert (download.method, download.status) == ("CANCEL", "CANCELLED")
    assert the_event(imported(life)).status == "CANCELLED"


def test_a_hold_moved_then_expired_cancels_at_the_new_time() -> None:
    later = START + timedelta(days=1)
    life = Life()
    life.step("held", held())
    life.step("moved while held", rescheduled(START, later, 1))
    life.step("expired", expired(later))
    [mail] = life.objects("expired", "email expired")
    assert (mail.method, mail.sequence, mail.start) == ("CANCEL", 5, later)
    assert the_event(imported(life)).status == "CANCELLED"


def test_a_hold_cancelled_before_it_was_confirmed_is_cancelled_in_the_calendar_too() -> None:
    life = Life()
    life.step("held", held())
    life.step("cancelled", cancelled(START))
    [mail] = life.objects("cancelled", "email cancellation")
    assert (mail.method, mail.sequence) == ("CANCEL", 2)
    assert the_event(imported(life)).status == "CANCELLED"


def test_a_rejected_booking_never_had_an_event_and_gets_none() -> None:
    life = Life()
    life.step("rejected", rejected())
    assert life.mails == [("rejected", Kind.REJECTION)]
    [download] = life.objects()
    assert (download.method, download.status) == ("CANCEL", "CANCELLED")  # the download: no appointment
    app = imported(life)
    assert app.events == {}  # a CANCEL of nothing adds nothing


def test_a_cancellation_of_what_we_never_saw_decided_still_cancels() -> None:
    """Better a CANCEL too many than a ghost appointment."""
    life = Life()
    life.step("cancelled", cancelled(START))
    [mail] = life.objects("cancelled", "email cancellation")
    assert (mail.method, mail.sequence) == ("CANCEL", 2)


@pytest.mark.parametrize("status", ["cancelled", "expired", "rejected"])
def test_a_booking_that_ended_already_gets_no_second_cancel(status: str) -> None:
    known = BookingView("b1", "mc", "p", START, START + LENGTH, "en", status, 0)  # type: ignore[arg-type]
    decision = decide(cancelled(START), known, POLICY, NOW)
    assert decision.messages[0].context["ics"] is None
    assert calendar_of(Kind.CANCELLATION, delivery(Kind.CANCELLATION, 0, decision.messages[0].context)) is None


def test_messages_without_an_event_change_carry_no_object() -> None:
    decision = decide(confirmed(), None, POLICY, NOW)
    for planned in decision.messages:
        if planned.kind is Kind.CONFIRMATION:
            continue
        assert "ics" not in planned.context  # the reminders
        assert calendar_of(planned.kind, delivery(planned.kind, planned.version, planned.context)) is None
    decision = decide(held(), None, POLICY, NOW)
    assert [p.kind for p in decision.messages] == [Kind.PLEASE_CONFIRM] and "ics" not in decision.messages[0].context


def test_the_text_of_a_cancellation_carries_no_object() -> None:
    decision = decide(cancelled(START, by="staff"), None, POLICY, NOW)
    sms = [p for p in decision.messages if p.kind is Kind.CANCELLATION_SMS]
    assert sms and "ics" not in sms[0].context


def test_a_move_while_held_plans_no_reminders_until_confirmed() -> None:
    later = START + timedelta(days=1)
    known = decide(held(), None, POLICY, NOW).state
    decision = decide(rescheduled(START, later, 1), known, POLICY, NOW)
    assert [p.kind for p in decision.messages] == [Kind.RESCHEDULED]
    assert decision.state is not None and decision.state.status == "held"
    confirmation = decide(confirmed(later), decision.state, POLICY, NOW)
    assert {p.kind for p in confirmation.messages} >= {Kind.CONFIRMATION, Kind.REMINDER, Kind.REMINDER_SMS}


def test_messages_planned_before_planning_chose_objects_keep_theirs_with_a_sequence_never_lower() -> None:
    """Rows planned by the previous version carry `ics_sequence`/`had_ics` instead of `ics`."""
    context = {"start": START.isoformat(), "end": (START + LENGTH).isoformat()}
    assert calendar_of(Kind.CONFIRMATION, delivery(Kind.CONFIRMATION, 2, context)) == {
        "method": "REQUEST",
        "status": "CONFIRMED",
        "sequence": 7,  # was 2
    }
    cancel = calendar_of(Kind.CANCELLATION, delivery(Kind.CANCELLATION, 2, {**context, "ics_sequence": 3}))
    assert cancel == {"method": "CANCEL", "status": "CANCELLED", "sequence": 8}  # was 3
    assert calendar_of(Kind.CANCELLATION, delivery(Kind.CANCELLATION, 0, {**context, "had_ics": False})) is None
    assert calendar_of(Kind.EXPIRED, delivery(Kind.EXPIRED, 0, context)) is None


def test_times_as_the_events_carry_them_travel_as_brussels_time_with_the_vtimezone() -> None:
    """Booking events arrive with Brussels offsets (`...T10:30:00+01:00`); the old invitation turned
    that into `DTSTART;TZID="UTC+01:00"` with no VTIMEZONE, which calendars read as UTC or local time."""
    brussels = START.astimezone(ical.BRUSSELS)
    life = Life()
    life.step("confirmed", confirmed(brussels, by="calendar"))
    [sent] = [s for s in life.sent if s.via == "email confirmation"]
    assert b"DTSTART;TZID=Europe/Brussels:20261201T103000" in sent.ics and b"UTC+" not in sent.ics
    assert b"BEGIN:VTIMEZONE" in sent.ics
    assert check(sent.ics).start == START
