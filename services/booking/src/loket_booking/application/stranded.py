"""Bookings a catalogue change stranded: the calendar's allocator moved their reservation to another
desk (`reservation-moved`) or freed it (`reservation-withdrawn`). Both go into the booking's
history with who made the change and why; a withdrawal also cancels the booking (by the system,
with the admin's reason in the resident's language), which notifications tells the resident and
the allocator sees as any cancellation."""

from __future__ import annotations

from typing import Any

from loket_booking.application.service import BookingService
from loket_contracts import events as ev
from loket_runtime.consumer import Delivery, HandlerContext, PoisonMessage


def stranded_handlers(service: BookingService) -> dict[str, Any]:
    """Handlers for the booking-decisions consumer (topic `loket.calendar`)."""

    async def on_stranded(ctx: HandlerContext, delivery: Delivery) -> None:
        event = delivery.event
        assert isinstance(event, ev.ReservationMoved | ev.ReservationWithdrawn)
        booking = await service.booking_in_batch(ctx, event.booking_id)
        if booking is None:
            raise PoisonMessage(f"{event.TYPE} about booking {event.booking_id!r}, which does not exist")
        if isinstance(event, ev.ReservationMoved):
            events = booking.on_reservation_moved(event)
        else:
            events = booking.on_reservation_withdrawn(event, delivery.envelope.time)
        await service.record_decision(ctx, booking, events, delivery.envelope)

    return {ev.ReservationMoved.TYPE: on_stranded, ev.ReservationWithdrawn.TYPE: on_stranded}


__all__ = ["stranded_handlers"]
