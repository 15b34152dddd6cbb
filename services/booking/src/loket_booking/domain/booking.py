"""The booking aggregate: its states, the transitions allowed, and the events each one records.

States: requested -> held -> confirmed, requested -> confirmed, requested -> rejected,
held -> expired, confirmed -> cancelled | checked_in | no_show, checked_in -> completed, and a
reschedule of a held or confirmed booking (the old time stands until the new one is reserved).
Methods return the new events (an empty list when the event was applied already) or raise
`TransitionRefused`; `apply` folds an event into the state. No I/O, no clock: `now` is passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from loket_contracts import events as ev
from loket_runtime.i18n import Text, tr

ACTIVE = ("requested", "held", "confirmed")
# Told to a resident whose booking a catalogue change cancelled when the admin gave no reason.
STRANDED_REASON = {
    "nl": "De balie kan je op dat moment niet meer ontvangen.",
    "en": "The counter can no longer receive you at that time.",
    "fr": "Le guichet ne peut plus vous recevoir à ce moment-là.",
}


def told(reason: ev.Localized | None, language: str) -> str:
    """The admin's reason in the resident's language (the default when none was given)."""
    if reason is None:
        return STRANDED_REASON.get(language, STRANDED_REASON["nl"])
    return str(getattr(reason, language, reason.nl))


# A status as the refusals below say it ("This booking is cancelled"); the English is the status's own name.
STATUS_SAID: dict[str, Text] = {
    "new": tr("new"),
    "requested": tr("requested"),
    "held": tr("held"),
    "confirmed": tr("confirmed"),
    "rejected": tr("rejected"),
    "expired": tr("expired"),
    "cancelled": tr("cancelled"),
    "checked_in": tr("checked in"),
    "no_show": tr("no show"),
    "completed": tr("completed"),
}


class TransitionRefused(Exception):
    """A command the booking's state does not allow; `message` is a `Text` for the person asking,
    `code` the problem type the API answers with."""

    def __init__(self, message: str, code: str = "transition-refused", status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status  # the booking's status when the refused transition was asked for


@dataclass
class Booking:
    id: str
    status: str = "new"
    location_id: str = ""
    product_id: str = ""
    start: datetime | None = None
    end: datetime | None = None
    desk_id: str | None = None
    hold_expires_at: datetime | None = None
    language: str = "nl"
    given_name: str = ""
    family_name: str = ""
    version: int = 0
    sequence: int = 0
    pending_reschedule: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    alternatives: list[ev.Slot] = field(default_factory=list)  # offered with the rejection

    @property
    def _said(self) -> Text:
        return STATUS_SAID[self.status]

    # --- folding events ------------------------------------------------------------------

    def apply(self, event: ev.Event, at: datetime) -> None:
        self.version += 1
        entry: dict[str, Any] = {"event": event.TYPE, "at": at}
        match event:
            case ev.BookingRequested():
                self.status = "requested"
                self.location_id, self.product_id = event.location_id, event.product_id
                self.start, self.end, self.language = event.start, event.end, event.language
                self.given_name, self.family_name = event.person.given_name, event.person.family_name
            case ev.BookingHeld():
                self.status, self.desk_id, self.hold_expires_at = "held", event.desk_id, event.hold_expires_at
                self.start, self.end = event.start, event.end
            case ev.BookingConfirmed():
                self.status, self.desk_id, self.hold_expires_at = "confirmed", event.desk_id, None
                entry["by"] = event.confirmed_by
            case ev.BookingRejected():
                self.status = "rejected"
                self.alternatives = list(event.alternatives)
                entry["reason"] = event.reason
            case ev.BookingExpired():
                self.status = "expired"
            case ev.BookingCancelled():
                self.status = "cancelled"
                entry |= {"by": event.cancelled_by, "reason": event.reason}
                self.pending_reschedule = None
            case ev.RescheduleRequested():
                self.pending_reschedule = event.request_id
                entry["new_start"] = event.new_start
            case ev.BookingRescheduled():
                self.start, self.end, self.desk_id = event.start, event.end, event.desk_id
                self.sequence = event.sequence
                self.pending_reschedule = None
                entry |= {"from": event.old_start, "to": event.start}
            case ev.RescheduleRejected():
                self.pending_reschedule = None
                entry |= {"reason": event.reason, "new_start": event.new_start}
            case ev.AttendanceRecorded():
                self.status = event.outcome
                entry["by"] = event.by
            case ev.ReservationMoved():
                self.desk_id, self.end = event.desk_id, event.end
                entry |= {
                    "by": event.by,
                    "from_desk": event.from_desk_id,
                    "desk": event.desk_id,
                    "why": event.why,
                    "change": event.change,
                    "reason": told(event.reason, self.language) if event.reason else None,
                }
            case ev.ReservationWithdrawn():
                entry |= {
                    "by": event.by,
                    "desk": event.desk_id,
                    "why": event.why,
                    "change": event.change,
                    "reason": told(event.reason, self.language),
                }
        self.history.append(entry)

    # --- decisions from the calendar -----------------------------------------------------

    def on_slot_reserved(self, decision: ev.SlotReserved) -> list[ev.Event]:
        if self.status != "requested":
            return []  # applied already, or the resident cancelled meanwhile (calendar saw that too)
        if decision.hold_expires_at is not None:
            return [
                ev.BookingHeld(
                    booking_id=self.id,
                    location_id=self.location_id,
                    product_id=self.product_id,
                    desk_id=decision.desk_id,
                    start=decision.start,
                    end=decision.end,
                    hold_expires_at=decision.hold_expires_at,
                    language=self.language,
                )
            ]  # type: ignore[arg-type]
        return [self._confirmed(decision.desk_id, "calendar")]

    def on_slot_rejected(self, decision: ev.SlotRejected, told_in_response: bool = False) -> list[ev.Event]:
        """`told_in_response`: the request that made the booking answers the rejection itself."""
        if self.status != "requested":
            return []
        return [
            ev.BookingRejected(
                booking_id=self.id,
                location_id=self.location_id,
                product_id=self.product_id,
                start=decision.start,
                reason=decision.reason,
                alternatives=decision.alternatives,
                language=self.language,
                told_in_response=told_in_response,
            )
        ]  # type: ignore[arg-type]

    def on_hold_expired(self, _: ev.HoldExpired) -> list[ev.Event]:
        if self.status != "held":
            return []
        assert self.start is not None
        return [
            ev.BookingExpired(
                booking_id=self.id,
                location_id=self.location_id,
                product_id=self.product_id,
                start=self.start,
                language=self.language,
            )
        ]  # type: ignore[arg-type]

    def on_reschedule_reserved(self, decision: ev.RescheduleReserved) -> list[ev.Event]:
        if self.pending_reschedule != decision.request_id:
            return []
        assert self.start is not None
        return [
            ev.BookingRescheduled(
                booking_id=self.id,
                request_id=decision.request_id,
                location_id=self.location_id,
                product_id=self.product_id,
                desk_id=decision.desk_id,
                old_start=self.start,
                start=decision.start,
                end=decision.end,
                sequence=self.sequence + 1,
                language=self.language,
            )
        ]  # type: ignore[arg-type]

    def on_reschedule_rejected(self, decision: ev.RescheduleRejected) -> list[ev.Event]:
        if self.pending_reschedule != decision.request_id:
            return []
        return [decision]

    def on_reservation_moved(self, decision: ev.ReservationMoved) -> list[ev.Event]:
        """A catalogue change moved the reservation to another desk (same start): kept in the history."""
        if self.status not in ("held", "confirmed"):
            return []
        if self.desk_id == decision.desk_id and self.end == decision.end:
            return []  # applied already
        return [decision]

    def on_reservation_withdrawn(self, decision: ev.ReservationWithdrawn, now: datetime) -> list[ev.Event]:
        """A catalogue change freed the reservation: the booking is cancelled by the city, with the
        admin's reason in the resident's language (the history keeps who and why)."""
        if self.status not in ("held", "confirmed"):
            return []  # cancelled, expired or attended meanwhile: nothing left to cancel
        cancelled = self.cancel("system", told(decision.reason, self.language), now, timedelta(0))
        # the calendar's nearest free times travel with the cancellation, for the resident's message
        return [decision, *(e.model_copy(update={"alternatives": decision.alternatives}) for e in cancelled)]

    # --- commands --------------------------------------------------------------------------

    def confirm(self, now: datetime) -> list[ev.Event]:
        if self.status == "confirmed":
            return []
        if self.status != "held":
            raise TransitionRefused(
                tr("This booking is %(status)s: it cannot be confirmed.", status=self._said), status=self.status
            )
        assert self.hold_expires_at is not None and self.desk_id is not None
        if now >= self.hold_expires_at:
            raise TransitionRefused(tr("The time to confirm has run out; the slot was released."), "hold-expired")
        return [self._confirmed(self.desk_id, "resident")]

    def cancel(self, by: str, reason: str, now: datetime, resident_deadline: timedelta) -> list[ev.Event]:
        if self.status == "cancelled":
            return []
        if self.status not in ACTIVE:
            raise TransitionRefused(
                tr("This booking is %(status)s: it cannot be cancelled.", status=self._said), status=self.status
            )
        assert self.start is not None and self.end is not None
        if by == "resident" and now > self.start - resident_deadline:
            hours = resident_deadline.total_seconds() / 3600
            raise TransitionRefused(
                tr(
                    "Online cancellation closes %(hours)s hours before the appointment; "
                    "please call or e-mail the counter.",
                    hours=f"{hours:g}",
                ),
                "cancel-deadline",
            )
        return [
            ev.BookingCancelled(
                booking_id=self.id,
                location_id=self.location_id,
                product_id=self.product_id,
                desk_id=self.desk_id,
                start=self.start,
                end=self.end,
                cancelled_by=by,
                reason=reason,
                cancelled_at=now,
                language=self.language,
            )
        ]  # type: ignore[arg-type]

    def request_reschedule(
        self, request_id: str, new_start: datetime, new_end: datetime, now: datetime, resident_deadline: timedelta
    ) -> list[ev.Event]:
        if self.status not in ("held", "confirmed"):
            raise TransitionRefused(
                tr("This booking is %(status)s: it cannot be rescheduled.", status=self._said), status=self.status
            )
        if self.pending_reschedule is not None:
            raise TransitionRefused(tr("Another reschedule of this booking is being decided."), "reschedule-pending")
        assert self.start is not None
        if now > self.start - resident_deadline:
            raise TransitionRefused(tr("Online rescheduling closes before the appointment."), "cancel-deadline")
        if new_start == self.start:
            raise TransitionRefused(tr("The booking is already at that time."), "same-time")
        return [
            ev.RescheduleRequested(
                booking_id=self.id,
                request_id=request_id,
                location_id=self.location_id,
                product_id=self.product_id,
                old_start=self.start,
                new_start=new_start,
                new_end=new_end,
                requested_at=now,
            )
        ]

    def record_attendance(self, outcome: str, by: str, now: datetime, checkin_early: timedelta) -> list[ev.Event]:
        allowed = {"checked_in": ("confirmed",), "no_show": ("confirmed",), "completed": ("checked_in",)}
        if self.status == outcome:
            return []
        if self.status not in allowed[outcome]:
            refusals = {
                "checked_in": tr("This booking is %(status)s: it cannot be marked checked in.", status=self._said),
                "no_show": tr("This booking is %(status)s: it cannot be marked no show.", status=self._said),
                "completed": tr("This booking is %(status)s: it cannot be marked completed.", status=self._said),
            }
            raise TransitionRefused(refusals[outcome], status=self.status)
        assert self.start is not None
        if outcome == "checked_in" and now < self.start - checkin_early:
            minutes = int(checkin_early.total_seconds() // 60)
            raise TransitionRefused(
                tr("Check-in opens %(minutes)s minutes before the appointment.", minutes=minutes), "too-early"
            )
        if outcome == "no_show" and now < self.start:
            raise TransitionRefused(tr("A resident can only be marked absent after the start time."), "too-early")
        return [
            ev.AttendanceRecorded(
                booking_id=self.id, location_id=self.location_id, start=self.start, outcome=outcome, by=by
            )
        ]  # type: ignore[arg-type]

    def _confirmed(self, desk_id: str, by: str) -> ev.BookingConfirmed:
        assert self.start is not None and self.end is not None
        return ev.BookingConfirmed(
            booking_id=self.id,
            location_id=self.location_id,
            product_id=self.product_id,
            desk_id=desk_id,
            start=self.start,
            end=self.end,
            confirmed_by=by,
            language=self.language,
        )  # type: ignore[arg-type]
