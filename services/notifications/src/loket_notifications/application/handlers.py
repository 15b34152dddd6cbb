"""Consumer handlers: booking and calendar events become planned deliveries, in the consumer's transaction.

They never send anything themselves (a slow SMTP server must not hold a Kafka partition): they
write what is to be sent into `deliveries`, and the sender loop (application.sender) sends it.
Redelivered events change nothing: the consumer skips known event ids, and a delivery's
(booking, kind, version) key makes a second plan of the same message a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loket_contracts import events as ev
from loket_notifications.application.ports import CatalogueReader, NewDelivery, Store
from loket_notifications.domain import formatting as fmt
from loket_notifications.domain.keys import booking_key, notification_id, waitlist_key
from loket_notifications.domain.kinds import Kind, channel_of
from loket_notifications.domain.planning import ReminderPolicy, ReminderRule, decide, rules_from_config
from loket_runtime.consumer import Delivery, Handler, HandlerContext
from loket_runtime.logging import get_logger

log = get_logger(__name__)

BOOKING_EVENTS: tuple[type[ev.Event], ...] = (
    ev.BookingHeld,
    ev.BookingConfirmed,
    ev.BookingRejected,
    ev.BookingCancelled,
    ev.BookingRescheduled,
    ev.BookingExpired,
)


@dataclass
class PlanningSettings:
    policy: ReminderPolicy
    per_product: dict[str, tuple[ReminderRule, ...]]
    waitlist_notify_count: int = 3


class Planner:
    def __init__(
        self, store: Store, settings: PlanningSettings, catalogue: CatalogueReader, wake: Callable[[], None]
    ) -> None:
        self.store = store
        self.settings = settings
        self.catalogue = catalogue
        self.wake = wake

    def handlers(self) -> dict[str, Handler]:
        table: dict[str, Handler] = dict.fromkeys((e.TYPE for e in BOOKING_EVENTS), self.on_booking_event)
        table[ev.SlotReleased.TYPE] = self.on_slot_released
        return table

    def policy_for(self, product_id: str) -> ReminderPolicy:
        """Reminder rules per product: settings first, then the catalogue's (if it publishes them)."""
        rules = self.settings.per_product.get(product_id)
        if rules is None:
            product = self.catalogue.cached_product(product_id)
            if product is not None and product.reminders is not None:
                rules = rules_from_config(product.reminders)
        if rules is None:
            return self.settings.policy
        return ReminderPolicy(rules, self.settings.policy.grace, self.settings.policy.min_lead)

    async def on_booking_event(self, ctx: HandlerContext, delivery: Delivery) -> None:
        event: Any = delivery.event  # one of BOOKING_EVENTS: each has booking, location, product, language
        booking_id: str = event.booking_id
        known = await self.store.booking(ctx.conn, booking_id, lock=True)
        product_id: str = event.product_id
        decision = decide(event, known, self.policy_for(product_id), delivery.envelope.time)
        if decision.state is not None:
            await self.store.save_booking(ctx.conn, decision.state)
        if decision.void_below is not None:
            voided = await self.store.void_pending(
                ctx.conn,
                booking_id,
                decision.void_below,
                [k.value for k in decision.void_kinds],
                f"{event.TYPE}",
                delivery.envelope.time,
            )
            if voided:
                log.info("pending messages cancelled", booking_id=booking_id, count=voided, cause=event.TYPE)
        planned = []
        for message in decision.messages:
            key = booking_key(booking_id, message.kind.value, message.version)
            planned.append(
                NewDelivery(
                    id=str(notification_id(key)),
                    dedupe_key=key,
                    booking_id=booking_id,
                    subscription_id=None,
                    kind=message.kind.value,
                    version=message.version,
                    channel=channel_of(message.kind),
                    language=event.language,
                    context={**message.context, "product_id": product_id, "location_id": event.location_id},
                    due_at=message.due_at,
                    not_after=message.not_after,
                    skipped=message.skipped,
                )
            )
        added = await self.store.add_deliveries(ctx.conn, planned)
        log.info("messages planned", booking_id=booking_id, cause=event.TYPE, planned=added)
        ctx.after_commit.append(self.wake)

    async def on_slot_released(self, ctx: HandlerContext, delivery: Delivery) -> None:
        """Tell the first subscribers waiting for this product, place and day, once per released slot."""
        event = delivery.event
        assert isinstance(event, ev.SlotReleased)
        day = fmt.local_date(event.start)
        subscribers = await self.store.waitlist_matches(
            ctx.conn, list(event.products), event.location_id, day, self.settings.waitlist_notify_count
        )
        planned = []
        for sub in subscribers:
            key = waitlist_key(sub["id"], event.location_id, event.desk_id, event.start.isoformat())
            planned.append(
                NewDelivery(
                    id=str(notification_id(key)),
                    dedupe_key=key,
                    booking_id=None,
                    subscription_id=sub["id"],
                    kind=Kind.WAITLIST.value,
                    version=0,
                    channel="email",
                    language=sub["language"],
                    context={
                        "product_id": sub["product_id"],
                        "location_id": event.location_id,
                        "start": event.start.isoformat(),
                        "end": event.end.isoformat(),
                        "email": sub["email"],
                    },
                    # never announce a time before the calendar offers it again; pointless once it has begun
                    due_at=event.available_from,
                    not_after=event.start,
                )
            )
        if planned:
            added = await self.store.add_deliveries(ctx.conn, planned)
            log.info("waitlist told", location_id=event.location_id, start=event.start.isoformat(), planned=added)
            ctx.after_commit.append(self.wake)
