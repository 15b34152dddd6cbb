"""The one registry of Kafka topics: partitions, key, retention, cleanup, and what flows there."""

from __future__ import annotations

from dataclasses import dataclass, field

from loket_contracts import events as ev

FOREVER = -1


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    partitions: int
    cleanup_policy: str
    retention_ms: int
    producer: str
    description: str
    events: tuple[type[ev.Event], ...] = field(default=())

    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}


CATALOGUE = Topic(
    name="loket.catalogue",
    key="entity id, e.g. product:residence-card",
    partitions=3,
    cleanup_policy="compact",
    retention_ms=FOREVER,
    producer="catalogue",
    description="Current state of every product, location, desk, schedule and closure. Compacted: "
    "a fresh consumer reads it from offset 0 to rebuild its whole read model.",
    events=(
        ev.ProductDefined,
        ev.ProductRetired,
        ev.LocationDefined,
        ev.DeskDefined,
        ev.DeskRemoved,
        ev.SchedulePublished,
        ev.ClosureDeclared,
        ev.ClosureLifted,
    ),
)

BOOKINGS = Topic(
    name="loket.bookings",
    key="location_id",
    partitions=6,
    cleanup_policy="delete",
    retention_ms=FOREVER,
    producer="booking",
    description="The booking lifecycle. Keyed by location so the calendar's single writer per "
    "location sees a booking's request, confirmation, reschedule and cancellation in order.",
    events=(
        ev.BookingRequested,
        ev.BookingHeld,
        ev.BookingConfirmed,
        ev.BookingRejected,
        ev.BookingCancelled,
        ev.RescheduleRequested,
        ev.BookingRescheduled,
        ev.BookingExpired,
        ev.AttendanceRecorded,
    ),
)

CALENDAR = Topic(
    name="loket.calendar",
    key="location_id",
    partitions=6,
    cleanup_policy="delete",
    retention_ms=FOREVER,
    producer="calendar",
    description="Capacity decisions of the calendar: reservations, rejections, expiries, releases.",
    events=(
        ev.SlotReserved,
        ev.SlotRejected,
        ev.RescheduleReserved,
        ev.RescheduleRejected,
        ev.HoldExpired,
        ev.SlotReleased,
        ev.ReservationMoved,
        ev.ReservationWithdrawn,
    ),
)

NOTIFICATIONS = Topic(
    name="loket.notifications",
    key="booking_id",
    partitions=3,
    cleanup_policy="delete",
    retention_ms=90 * 24 * 3600 * 1000,
    producer="notifications",
    description="Delivery outcome of every e-mail and SMS.",
    events=(ev.NotificationSent, ev.NotificationFailed),
)

DEAD_LETTERS = Topic(
    name="loket.dead-letters",
    key="consumer group",
    partitions=1,
    cleanup_policy="delete",
    retention_ms=30 * 24 * 3600 * 1000,
    producer="any consumer",
    description="Records a consumer could not handle, with the original headers, body and the error.",
)

ALL_TOPICS: tuple[Topic, ...] = (CATALOGUE, BOOKINGS, CALENDAR, NOTIFICATIONS, DEAD_LETTERS)


def topic_of(event_type: str) -> Topic:
    for topic in ALL_TOPICS:
        if any(model.TYPE == event_type for model in topic.events):
            return topic
    raise LookupError(f"no topic carries {event_type!r}")
