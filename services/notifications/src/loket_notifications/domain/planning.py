"""Which messages a booking event triggers, and when reminders are due.

`decide` takes one booking event and what we knew of the booking before, and returns what we
know after, the messages to send, and which messages not sent yet are void (those of a time the
booking no longer has: a reminder of a cancelled booking, a please-confirm of an expired hold)
(the booking was cancelled, expired or moved). It is pure: replaying events gives the same plan.

It also decides which calendar object each e-mail carries (`context["ics"]`: METHOD, STATUS and
SEQUENCE from `loket_runtime.ical`, the builder booking's `calendar.ics` download uses too):
- held: none; the please-confirm asks for the confirmation (an invitation would invite an RSVP
  that confirms nothing). The download offers the held time as TENTATIVE.
- confirmed: the invitation, REQUEST CONFIRMED.
- moved: REQUEST at the new time, CONFIRMED, or TENTATIVE when moved while held (the resident
  may hold the downloaded tentative event).
- cancelled or expired: CANCEL, whenever the resident may hold an event: once it was held or
  confirmed (the download offers one from the hold on), and when we know nothing of it.
- rejected: none; a booking not decided yet has no event anywhere.

A rejection the resident already saw on screen (`told_in_response`: the request that made the
booking was answered 409 with the alternatives) is not e-mailed: its message is planned as
skipped, with the reason (`TOLD_IN_RESPONSE`), so ops see why nothing went out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from loket_contracts import events as ev
from loket_notifications.domain.kinds import Channel, Kind
from loket_runtime import ical

BookingStatus = Literal["held", "confirmed", "rejected", "cancelled", "expired"]


@dataclass(frozen=True)
class BookingView:
    """What notifications knows of a booking, built from its events (no personal data)."""

    booking_id: str
    location_id: str
    product_id: str
    start: datetime
    end: datetime | None
    language: str
    status: BookingStatus
    sequence: int = 0  # reschedules so far: the version of its messages (the ICS SEQUENCE derives from it)


@dataclass(frozen=True)
class ReminderRule:
    channel: Channel
    before: timedelta

    @property
    def kind(self) -> Kind:
        return Kind.REMINDER if self.channel == "email" else Kind.REMINDER_SMS


DEFAULT_REMINDERS = (ReminderRule("email", timedelta(hours=24)), ReminderRule("sms", timedelta(hours=2)))


@dataclass(frozen=True)
class ReminderPolicy:
    rules: tuple[ReminderRule, ...] = DEFAULT_REMINDERS
    grace: timedelta = timedelta(hours=12)  # a reminder missed by downtime is still sent this late ...
    min_lead: timedelta = timedelta(minutes=15)  # ... but never this close to (or after) the start


def rules_from_config(items: list[dict[str, Any]]) -> tuple[ReminderRule, ...]:
    """Rules from configuration, e.g. [{"channel": "sms", "hours_before": 2}] ("minutes_before" also works)."""
    rules = []
    for item in items:
        channel: Channel = "sms" if item.get("channel") == "sms" else "email"
        minutes = float(item["minutes_before"]) if "minutes_before" in item else float(item["hours_before"]) * 60
        rules.append(ReminderRule(channel, timedelta(minutes=minutes)))
    return tuple(rules)


@dataclass(frozen=True)
class Planned:
    kind: Kind
    version: int
    due_at: datetime
    not_after: datetime | None = None  # past this instant the message is pointless: skipped
    context: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # recorded as skipped with this reason, never sent


@dataclass(frozen=True)
class Decision:
    state: BookingView | None
    messages: list[Planned]
    void_below: int | None = None  # cancel pending messages of `void_kinds` with a version below this
    void_kinds: tuple[Kind, ...] = ()


TOLD_IN_RESPONSE = "told in the response: the booking request was answered 409 with the alternatives"

# Not sent yet when the booking was cancelled or expired: no longer true, so not sent at all.
VOID_ON_END = (Kind.PLEASE_CONFIRM, Kind.CONFIRMATION, Kind.RESCHEDULED, Kind.REMINDER, Kind.REMINDER_SMS)
# Not sent yet when the booking moved: about the old time (the new notice says it all).
VOID_ON_MOVE = (Kind.CONFIRMATION, Kind.RESCHEDULED, Kind.REMINDER, Kind.REMINDER_SMS)


def reminders(view: BookingView, policy: ReminderPolicy, decided_at: datetime) -> list[Planned]:
    """The reminders of the booking's current time. A reminder already due when the booking was
    decided is not planned (the confirmation just told them); one missed by our own downtime is
    planned and sent late, within the grace period (see `not_after`)."""
    planned = []
    for rule in policy.rules:
        due = view.start - rule.before
        if due <= decided_at:
            continue
        not_after = min(due + policy.grace, view.start - policy.min_lead)
        if not_after <= due:
            continue
        planned.append(Planned(rule.kind, view.sequence, due, not_after, _when(view)))
    return planned


def _when(view: BookingView) -> dict[str, Any]:
    return {"start": view.start.isoformat(), "end": view.end.isoformat() if view.end else None}


def calendar_object(status: BookingStatus, reschedules: int) -> dict[str, Any]:
    """The calendar object an e-mail carries for the booking's event as it now stands."""
    state = ical.event_state(status, reschedules)
    assert state is not None, status
    return {"method": ical.method_for(state.status, email=True), "status": state.status, "sequence": state.sequence}


# The resident may hold an event of the booking (an invitation, a downloaded file) once it is held or
# confirmed; when we know nothing of it, better a CANCEL too many than a ghost appointment.
MAY_HOLD_AN_EVENT = (None, "held", "confirmed")


def _view(event: Any, status: BookingStatus, known: BookingView | None, end: datetime | None) -> BookingView:
    return BookingView(
        booking_id=event.booking_id,
        location_id=event.location_id,
        product_id=event.product_id,
        start=event.start,
        end=end,
        language=event.language,
        status=status,
        sequence=known.sequence if known else 0,
    )


def _slots(slots: list[ev.Slot]) -> list[dict[str, str]]:
    """Free times as a message's context keeps them (JSON): ISO instants and the location."""
    return [{"start": s.start.isoformat(), "end": s.end.isoformat(), "location_id": s.location_id} for s in slots]


def decide(event: ev.Event, known: BookingView | None, policy: ReminderPolicy, decided_at: datetime) -> Decision:
    """What one booking event means for the resident's messages."""
    if isinstance(event, ev.BookingHeld):
        # No calendar object: see the module's docstring.
        view = _view(event, "held", known, event.end)
        context = {**_when(view), "hold_expires_at": event.hold_expires_at.isoformat()}
        return Decision(view, [Planned(Kind.PLEASE_CONFIRM, view.sequence, decided_at, event.hold_expires_at, context)])

    if isinstance(event, ev.BookingConfirmed):
        view = _view(event, "confirmed", known, event.end)
        context = {**_when(view), "ics": calendar_object("confirmed", view.sequence)}
        confirmation = Planned(Kind.CONFIRMATION, view.sequence, decided_at, view.start, context)
        return Decision(view, [confirmation, *reminders(view, policy, decided_at)])

    if isinstance(event, ev.BookingRejected):
        view = _view(event, "rejected", known, None)
        context = {
            **_when(view),
            "reason": event.reason,
            "alternatives": _slots(event.alternatives),
        }
        skipped = TOLD_IN_RESPONSE if event.told_in_response else None
        return Decision(view, [Planned(Kind.REJECTION, view.sequence, decided_at, None, context, skipped)])

    if isinstance(event, ev.BookingCancelled):
        view = _view(event, "cancelled", known, event.end)
        context = {**_when(view), "cancelled_by": event.cancelled_by, "reason": event.reason}
        if event.alternatives:  # the city cancelled and the calendar looked for other times
            context["alternatives"] = _slots(event.alternatives)
        calendar = {"ics": calendar_object("cancelled", view.sequence) if _may_hold(known) else None}
        messages = [Planned(Kind.CANCELLATION, view.sequence, decided_at, None, {**context, **calendar})]
        if event.cancelled_by != "resident" and view.start > decided_at:
            # the resident did not do it themselves: worth a text, as long as the appointment is ahead
            messages.append(Planned(Kind.CANCELLATION_SMS, view.sequence, decided_at, view.start, context))
        return Decision(view, messages, void_below=view.sequence + 1, void_kinds=VOID_ON_END)

    if isinstance(event, ev.BookingRescheduled):
        base = known or _view(event, "confirmed", None, event.end)
        status: BookingStatus = "held" if base.status == "held" else "confirmed"  # moving does not confirm
        view = replace(
            base,
            location_id=event.location_id,
            product_id=event.product_id,
            start=event.start,
            end=event.end,
            language=event.language,
            status=status,
            sequence=event.sequence,  # the booking's own count of reschedules
        )
        context = {
            **_when(view),
            "old_start": event.old_start.isoformat(),
            "ics": calendar_object(status, view.sequence),
        }
        notice = Planned(Kind.RESCHEDULED, view.sequence, decided_at, view.start, context)
        # A held booking's reminders are planned when it is confirmed (a reminder goes only to a confirmed one).
        planned = reminders(view, policy, decided_at) if status == "confirmed" else []
        return Decision(view, [notice, *planned], void_below=view.sequence, void_kinds=VOID_ON_MOVE)

    if isinstance(event, ev.BookingExpired):
        view = _view(event, "expired", known, known.end if known else None)
        calendar = {"ics": calendar_object("expired", view.sequence) if _may_hold(known) else None}
        return Decision(
            view,
            [Planned(Kind.EXPIRED, view.sequence, decided_at, None, {**_when(view), **calendar})],
            void_below=view.sequence + 1,
            void_kinds=VOID_ON_END,
        )

    return Decision(known, [])


def _may_hold(known: BookingView | None) -> bool:
    return (known.status if known else None) in MAY_HOLD_AN_EVENT


def reminder_still_valid(view: BookingView | None, version: int) -> bool:
    """A reminder is sent only for a confirmed booking still at the time it was planned for."""
    return view is not None and view.status == "confirmed" and view.sequence == version
