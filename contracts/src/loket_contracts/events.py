"""Every event that crosses between services, one pydantic model per type and version.

Instants are UTC (`AwareDatetime`, serialised with the offset); wall-clock opening hours are
local times in Europe/Brussels. An event type never changes meaning: a new shape is a new
version with an upcaster (see `upcasting.py`), so an old event stays readable forever.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class Event(BaseModel):
    """Base of all event payloads. `TYPE` is the CloudEvents `type`; `VERSION` its schema version."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


Language = Literal["nl", "en", "fr"]
Actor = Literal["resident", "staff", "system"]


class Localized(BaseModel):
    model_config = ConfigDict(frozen=True)
    nl: str
    en: str
    fr: str


class TimeBlock(BaseModel):
    """A wall-clock block in Europe/Brussels, e.g. 09:00-12:30."""

    model_config = ConfigDict(frozen=True)
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-4]):[0-5]\d$")


class Slot(BaseModel):
    model_config = ConfigDict(frozen=True)
    start: AwareDatetime
    end: AwareDatetime
    location_id: str


# --- catalogue ------------------------------------------------------------------------------


class StrandedChoice(BaseModel):
    """What an administrator said to do with the active bookings a catalogue change leaves outside
    what the catalogue then allows (a removed desk, hours that no longer cover them, a product no
    longer served or offered, a duration that now runs into the next booking).

    `move`: each to another desk that serves it at the same time (the calendar's allocator decides;
    one with no free desk is cancelled); `cancel`: each is cancelled by the city; `refuse` (or no
    choice at all): the catalogue refused the change when it saw any, and the allocator moves or
    else cancels any booked in the meantime. `reason` is told to the resident in their language."""

    model_config = ConfigDict(frozen=True)
    action: Literal["refuse", "move", "cancel"] = "refuse"
    reason: Localized | None = None
    by: str = ""


class ProductDefined(Event):
    TYPE = "product-defined"
    product_id: str
    name: Localized
    description: Localized
    duration_minutes: int = Field(gt=0, le=480)
    documents: list[Localized] = []
    fee_eur: float = 0
    requires_confirmation: bool = False
    hold_minutes: int = 30
    min_notice_hours: int = 24
    max_days_ahead: int = 60
    max_active_per_person: int = 1
    eligibility: dict[str, object] = {}
    reminders: list[dict[str, object]] = []
    stranded: StrandedChoice | None = None


class ProductRetired(Event):
    TYPE = "product-retired"
    product_id: str


class LocationDefined(Event):
    TYPE = "location-defined"
    location_id: str
    name: str
    address: str
    products: list[str]
    slot_grid_minutes: int = Field(default=5, gt=0, le=120)
    stranded: StrandedChoice | None = None


class DeskDefined(Event):
    TYPE = "desk-defined"
    desk_id: str
    location_id: str
    name: str
    products: list[str]
    stranded: StrandedChoice | None = None


class DeskRemoved(Event):
    TYPE = "desk-removed"
    desk_id: str
    location_id: str
    stranded: StrandedChoice | None = None


class SchedulePublished(Event):
    """Weekly hours of one desk from `effective_from` on (until a later schedule takes over).

    `weekly` maps ISO weekday numbers ("1" = Monday ... "7" = Sunday) to blocks."""

    TYPE = "schedule-published"
    schedule_id: str
    desk_id: str
    location_id: str
    effective_from: date
    weekly: dict[str, list[TimeBlock]]
    stranded: StrandedChoice | None = None


class ClosureDeclared(Event):
    """A whole day closed: a public holiday, a local-government closing day, or ad hoc.

    `location_id` None closes every location."""

    TYPE = "closure-declared"
    closure_id: str
    location_id: str | None
    day: date
    kind: Literal["holiday", "local-closing-day", "ad-hoc"]
    reason: str


class ClosureLifted(Event):
    TYPE = "closure-lifted"
    closure_id: str
    location_id: str | None
    day: date


# --- booking -> calendar (topic keyed by location, so calendar sees them in order) -----------


class PersonName(BaseModel):
    """The only personal data that leaves the booking service: what the agenda shows."""

    model_config = ConfigDict(frozen=True)
    given_name: str
    family_name: str


class BookingRequested(Event):
    TYPE = "booking-requested"
    booking_id: str
    location_id: str
    product_id: str
    start: AwareDatetime
    end: AwareDatetime
    person: PersonName
    language: Language = "nl"
    requested_at: AwareDatetime


class BookingHeld(Event):
    """The slot is reserved but waits for the resident's confirmation link until `hold_expires_at`."""

    TYPE = "booking-held"
    booking_id: str
    location_id: str
    product_id: str
    desk_id: str
    start: AwareDatetime
    end: AwareDatetime
    hold_expires_at: AwareDatetime
    language: Language = "nl"


class BookingConfirmed(Event):
    TYPE = "booking-confirmed"
    booking_id: str
    location_id: str
    product_id: str
    desk_id: str
    start: AwareDatetime
    end: AwareDatetime
    confirmed_by: Literal["calendar", "resident"]
    language: Language = "nl"


class BookingRejected(Event):
    TYPE = "booking-rejected"
    booking_id: str
    location_id: str
    product_id: str
    start: AwareDatetime
    reason: str
    alternatives: list[Slot] = []
    language: Language = "nl"
    # The resident was answered in the request that made the booking (`409` with these
    # alternatives, a `Prefer: wait` request still waiting when the decision came): nothing to e-mail.
    told_in_response: bool = False


class BookingCancelled(Event):
    TYPE = "booking-cancelled"
    booking_id: str
    location_id: str
    product_id: str
    desk_id: str | None
    start: AwareDatetime
    end: AwareDatetime
    cancelled_by: Actor
    reason: str
    cancelled_at: AwareDatetime
    language: Language = "nl"
    # The nearest free times when the city cancelled for a reason of its own (a catalogue change),
    # offered to the resident as a rejection's are; empty when nobody looked or none were free.
    alternatives: list[Slot] = []


class RescheduleRequested(Event):
    TYPE = "reschedule-requested"
    booking_id: str
    request_id: str
    location_id: str
    product_id: str
    old_start: AwareDatetime
    new_start: AwareDatetime
    new_end: AwareDatetime
    requested_at: AwareDatetime


class BookingRescheduled(Event):
    TYPE = "booking-rescheduled"
    booking_id: str
    request_id: str
    location_id: str
    product_id: str
    desk_id: str
    old_start: AwareDatetime
    start: AwareDatetime
    end: AwareDatetime
    sequence: int
    language: Language = "nl"


class BookingExpired(Event):
    TYPE = "booking-expired"
    booking_id: str
    location_id: str
    product_id: str
    start: AwareDatetime
    language: Language = "nl"


class AttendanceRecorded(Event):
    """Staff recorded what happened at the counter: checked in, no-show, or completed."""

    TYPE = "attendance-recorded"
    booking_id: str
    location_id: str
    start: AwareDatetime
    outcome: Literal["checked_in", "no_show", "completed"]
    by: str


# --- calendar decisions ---------------------------------------------------------------------


class SlotReserved(Event):
    TYPE = "slot-reserved"
    booking_id: str
    location_id: str
    product_id: str
    desk_id: str
    start: AwareDatetime
    end: AwareDatetime
    hold_expires_at: AwareDatetime | None = None


RejectionReason = Literal[
    "slot-taken",
    "outside-hours",
    "closed",
    "not-offered",
    "outside-window",
    "unknown-product",
    "unknown-location",
    "off-grid",
]


class SlotRejected(Event):
    TYPE = "slot-rejected"
    booking_id: str
    location_id: str
    product_id: str
    start: AwareDatetime
    reason: RejectionReason
    alternatives: list[Slot] = []


class RescheduleReserved(Event):
    """The new time is reserved; the old one is released in the same decision."""

    TYPE = "reschedule-reserved"
    booking_id: str
    request_id: str
    location_id: str
    product_id: str
    desk_id: str
    old_start: AwareDatetime
    start: AwareDatetime
    end: AwareDatetime


class RescheduleRejected(Event):
    TYPE = "reschedule-rejected"
    booking_id: str
    request_id: str
    location_id: str
    new_start: AwareDatetime
    reason: RejectionReason
    alternatives: list[Slot] = []


class HoldExpired(Event):
    TYPE = "hold-expired"
    booking_id: str
    location_id: str
    desk_id: str
    start: AwareDatetime
    end: AwareDatetime


class SlotReleased(Event):
    """A desk-time is free again and offered from `available_from` (after the hold-back)."""

    TYPE = "slot-released"
    location_id: str
    desk_id: str
    start: AwareDatetime
    end: AwareDatetime
    products: list[str]
    available_from: AwareDatetime
    cause: Literal["cancelled", "expired", "rescheduled"]


class ReservationMoved(Event):
    """A catalogue change left the reservation outside what the catalogue allows, and the allocator
    moved it to another desk at the same start (`end` follows the product's duration now)."""

    TYPE = "reservation-moved"
    booking_id: str
    location_id: str
    product_id: str
    from_desk_id: str
    desk_id: str
    start: AwareDatetime
    end: AwareDatetime
    change: str  # the catalogue change, e.g. "desk-removed desk:mc-3"
    why: str  # what the change broke: desk-removed, outside-hours, not-served, not-offered, ...
    by: str  # the administrator who made the change
    reason: Localized | None = None


class ReservationWithdrawn(Event):
    """A catalogue change left the reservation outside what the catalogue allows, and it was freed
    (the administrator chose to cancel, or no desk was free at that time): booking cancels it."""

    TYPE = "reservation-withdrawn"
    booking_id: str
    location_id: str
    product_id: str
    desk_id: str
    start: AwareDatetime
    end: AwareDatetime
    change: str
    why: str
    by: str
    reason: Localized | None = None
    alternatives: list[Slot] = []  # the nearest free times, searched once the reservation was freed


# --- notifications --------------------------------------------------------------------------


class NotificationSent(Event):
    TYPE = "notification-sent"
    notification_id: str
    booking_id: str | None
    kind: str
    channel: Literal["email", "sms"]
    attempts: int
    sent_at: AwareDatetime


class NotificationFailed(Event):
    TYPE = "notification-failed"
    notification_id: str
    booking_id: str | None
    kind: str
    channel: Literal["email", "sms"]
    attempts: int
    error: str
    failed_at: AwareDatetime


EVENT_TYPES: dict[str, type[Event]] = {
    model.TYPE: model
    for model in (
        ProductDefined,
        ProductRetired,
        LocationDefined,
        DeskDefined,
        DeskRemoved,
        SchedulePublished,
        ClosureDeclared,
        ClosureLifted,
        BookingRequested,
        BookingHeld,
        BookingConfirmed,
        BookingRejected,
        BookingCancelled,
        RescheduleRequested,
        BookingRescheduled,
        BookingExpired,
        AttendanceRecorded,
        SlotReserved,
        SlotRejected,
        RescheduleReserved,
        RescheduleRejected,
        HoldExpired,
        SlotReleased,
        ReservationMoved,
        ReservationWithdrawn,
        NotificationSent,
        NotificationFailed,
    )
}
