"""Notifications service: consumes booking and calendar events, sends e-mail and SMS, serves delivery
status (ops) and the waitlist API."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Response
from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict, Field

from loket_contracts.topics import BOOKINGS, CALENDAR
from loket_notifications.adapters.http import BookingContacts, CatalogueClient, HttpSmsGateway
from loket_notifications.adapters.postgres import PostgresStore
from loket_notifications.adapters.smtp import SmtpTransport
from loket_notifications.application.compose import Composer, ComposeSettings
from loket_notifications.application.handlers import Planner, PlanningSettings
from loket_notifications.application.ports import (
    CatalogueReader,
    ContactDirectory,
    MailTransport,
    SmsGateway,
    TransientError,
)
from loket_notifications.application.sender import CrashPoint, Sender, SenderSettings
from loket_notifications.domain.formatting import local_date
from loket_notifications.domain.keys import token_matches, waitlist_token
from loket_notifications.domain.planning import ReminderPolicy, ReminderRule, rules_from_config
from loket_notifications.domain.retry import RetryPolicy
from loket_notifications.entrypoints.ops import install_ops_routes, masked_recipient, utc_iso
from loket_runtime.auth import Principal, require_role
from loket_runtime.clock import now as clock_now
from loket_runtime.i18n import tr
from loket_runtime.inputs import Day
from loket_runtime.logging import get_logger
from loket_runtime.problems import Problem, field_problem
from loket_runtime.service import ServiceRuntime, create_app
from loket_runtime.settings import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"
log = get_logger(__name__)
BACKLOG = Gauge("loket_notifications_backlog", "Messages not sent yet: all open, and overdue by 5 minutes", ["state"])
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class NotificationSettings(ServiceSettings):
    service_name: str = "notifications"
    http_port: int = 8104
    database_url: str = "postgresql://postgres@127.0.0.1:5433/loket_notifications"
    consumer_group: str = "notifications"
    # e-mail
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout_seconds: float = 15
    smtp_connections: int = 1  # kept open and reused (adapters/smtp.py)
    mail_from: str = "afspraken@loket.gent"
    mail_from_name: str = "Stad Gent - Loket"
    message_domain: str = "loket.gent"  # right-hand side of Message-IDs (ICS UIDs: loket_runtime.ical)
    # SMS provider (HTTP POST {"to", "body"})
    sms_url: str = "http://127.0.0.1:8105/sms"
    sms_token: str | None = None
    sms_sender: str | None = None
    # other services
    catalogue_url: str = "http://127.0.0.1:8101"
    catalogue_cache_seconds: float = 300
    booking_url: str = "http://127.0.0.1:8102"
    internal_token: str = "local-internal-token"
    # reminders (minutes before the start; 0 switches a channel off), per product as JSON:
    # LOKET_REMINDERS_PER_PRODUCT='{"card-pickup": [{"channel": "sms", "hours_before": 3}]}'
    reminder_email_minutes_before: float = 24 * 60
    reminder_sms_minutes_before: float = 2 * 60
    reminders_per_product: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    reminder_grace_minutes: float = 12 * 60
    reminder_min_lead_minutes: float = 15
    # sending
    retry_max_attempts: int = 8
    retry_base_seconds: float = 5
    retry_max_seconds: float = 600
    send_lease_seconds: float = 60
    # A claimed batch is composed at once: its contacts come in one call to booking, its rendered
    # bytes and outcomes are written in one statement each, its e-mails go over one SMTP connection.
    send_batch_size: int = 100
    send_concurrency: int = 100
    send_poll_seconds: float = 1.0
    # Messages run behind the decisions, never in their way: when booking and notifications both
    # want the CPU, the kernel gives it to booking (`nice`, applied by `python -m loket_notifications`).
    niceness: int = 10
    # housekeeping: rendered messages (names, addresses) are dropped this long after they finished
    retention_days: float = 30
    housekeeping_seconds: float = 30
    # waitlist
    waitlist_notify_count: int = 3
    waitlist_secret: str = "local-waitlist-secret"
    waitlist_max_days: int = 92
    waitlist_max_per_email: int = 10


class WaitlistIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    product: str
    location: str | None = None
    from_: Day = Field(alias="from")
    to: Day
    email: str
    language: Literal["nl", "en", "fr"] = "nl"


class WaitlistOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: str
    product: str
    location: str | None
    from_: date = Field(serialization_alias="from")
    to: date
    language: str
    unsubscribe_token: str
    links: dict[str, str]


def reminder_policy(settings: NotificationSettings) -> ReminderPolicy:
    rules = []
    if settings.reminder_email_minutes_before > 0:
        rules.append(ReminderRule("email", timedelta(minutes=settings.reminder_email_minutes_before)))
    if settings.reminder_sms_minutes_before > 0:
        rules.append(ReminderRule("sms", timedelta(minutes=settings.reminder_sms_minutes_before)))
    return ReminderPolicy(
        tuple(rules),
        grace=timedelta(minutes=settings.reminder_grace_minutes),
        min_lead=timedelta(minutes=settings.reminder_min_lead_minutes),
    )


def build_app(
    settings: NotificationSettings | None = None,
    *,
    contacts: ContactDirectory | None = None,
    catalogue: CatalogueReader | None = None,
    mail: MailTransport | None = None,
    sms: SmsGateway | None = None,
    clock: Callable[[], datetime] | None = None,
    crash_point: CrashPoint | None = None,
) -> FastAPI:
    settings = settings or NotificationSettings()
    clock = clock or clock_now
    runtime = ServiceRuntime(settings, MIGRATIONS)
    store = PostgresStore()
    catalogue = catalogue or CatalogueClient(settings.catalogue_url, settings.catalogue_cache_seconds)
    contacts = contacts or BookingContacts(settings.booking_url, settings.internal_token)
    mail = mail or SmtpTransport(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_username,
        settings.smtp_password,
        settings.smtp_starttls,
        settings.smtp_tls,
        settings.smtp_timeout_seconds,
        settings.smtp_connections,
    )
    sms = sms or HttpSmsGateway(settings.sms_url, settings.sms_token, settings.sms_sender)
    compose_settings = ComposeSettings(
        public_base_url=settings.public_base_url.rstrip("/"),
        mail_from=settings.mail_from,
        mail_from_name=settings.mail_from_name,
        message_domain=settings.message_domain,
        waitlist_secret=settings.waitlist_secret,
    )
    composer = Composer(catalogue, contacts, compose_settings, clock)
    sender = Sender(
        pool=None,
        store=store,
        composer=composer,
        mail=mail,
        sms=sms,
        clock=clock,
        crash_point=crash_point,
        settings=SenderSettings(
            mail_from=settings.mail_from,
            retry=RetryPolicy(settings.retry_max_attempts, settings.retry_base_seconds, settings.retry_max_seconds),
            lease=timedelta(seconds=settings.send_lease_seconds),
            batch_size=settings.send_batch_size,
            concurrency=settings.send_concurrency,
            poll_seconds=settings.send_poll_seconds,
            instance_id=settings.instance_id,
        ),
    )
    planner = Planner(
        store,
        PlanningSettings(
            policy=reminder_policy(settings),
            per_product={k: rules_from_config(v) for k, v in settings.reminders_per_product.items()},
            waitlist_notify_count=settings.waitlist_notify_count,
        ),
        catalogue,
        sender.wake,
    )
    runtime.consume(
        settings.consumer_group,
        [BOOKINGS.name, CALENDAR.name],
        planner.handlers(),
        client_id=f"{settings.consumer_group}-{settings.instance_id}",
    )

    async def send_loop(rt: ServiceRuntime) -> None:
        sender.pool = rt.pool
        try:
            await sender.run()
        finally:
            if isinstance(mail, SmtpTransport):
                await asyncio.shield(mail.aclose())

    async def housekeeping(rt: ServiceRuntime) -> None:
        while True:
            now = clock()
            open_count, late_count = await store.backlog(rt.pool, now, timedelta(minutes=5))
            BACKLOG.labels("open").set(open_count)
            BACKLOG.labels("late").set(late_count)
            if late_count:
                log.warning("messages overdue by more than 5 minutes", count=late_count)
            forgotten = await store.forget(rt.pool, now, timedelta(days=settings.retention_days))
            if forgotten:
                log.info("old message contents dropped", count=forgotten)
            await asyncio.sleep(settings.housekeeping_seconds)

    runtime.add_task(send_loop)
    runtime.add_task(housekeeping)
    app = create_app(runtime, "Loket notifications", openapi_url="/openapi.json")
    app.state.sender = sender
    app.state.store = store
    app.state.settings = settings

    @app.get(
        "/api/v1/ops/notifications",
        tags=["operations"],
        summary="Every message planned for a booking: kind, channel, status, attempts, when sent",
    )
    async def list_notifications(
        principal: Annotated[Principal, require_role("ops")],
        booking: Annotated[str, Query(min_length=1, max_length=200)],
    ) -> dict[str, Any]:
        rows = await store.list_for_booking(runtime.pool, booking)
        return {
            "booking": booking,
            "notifications": [
                {
                    "id": str(r["id"]),
                    "kind": r["kind"],
                    "channel": r["channel"],
                    "version": r["version"],
                    "status": r["status"],
                    "attempts": r["attempts"],
                    "recipient": masked_recipient(r["recipient"]),
                    "message_id": r["message_id"],
                    "created_at": utc_iso(r["created_at"]),
                    "due_at": utc_iso(r["due_at"]),
                    "next_attempt_at": utc_iso(r["next_attempt_at"]) if r["status"] == "pending" else None,
                    "sent_at": utc_iso(r["sent_at"]),
                    "finished_at": utc_iso(r["finished_at"]),
                    "error": r["last_error"],
                }
                for r in rows
            ],
        }

    install_ops_routes(app, runtime, store, sender, clock)

    @app.post(
        "/api/v1/waitlist",
        status_code=201,
        tags=["waitlist"],
        response_model=WaitlistOut,
        response_model_by_alias=True,
        summary="Be told by e-mail when a time frees up for a product (at a location, or any) in a date range",
    )
    async def subscribe(body: WaitlistIn, response: Response) -> WaitlistOut:
        body.location = body.location or None  # "" from a form means any location
        today = local_date(clock())
        if body.to < body.from_:
            raise field_problem("to", tr("must not be before from"))
        if body.to < today:
            raise field_problem("to", tr("must not be in the past"))
        if (body.to - max(body.from_, today)).days >= settings.waitlist_max_days:
            raise field_problem("to", tr("wait for at most %(days)s days at once", days=settings.waitlist_max_days))
        if not EMAIL.match(body.email) or len(body.email) > 254:
            raise field_problem("email", tr("not a valid e-mail address; use e.g. name@example.org"))
        try:
            product = await catalogue.product(body.product)
            location = await catalogue.location(body.location) if body.location else None
            checked = True
        except TransientError:
            checked = False  # the catalogue is down: accept, a wrong id simply never matches
            product = location = None
        if checked and product is None:
            raise field_problem("product", tr("unknown product %(product)r", product=body.product))
        if checked and body.location and location is None:
            raise field_problem("location", tr("unknown location %(location)r", location=body.location))
        if await store.active_subscriptions(runtime.pool, body.email) >= settings.waitlist_max_per_email:
            raise field_problem(
                "email", tr("too many waitlist subscriptions for this address; unsubscribe from one first")
            )
        subscription_id = str(uuid.uuid4())
        await store.subscribe(
            runtime.pool, subscription_id, body.product, body.location, body.from_, body.to, body.email, body.language
        )
        token = waitlist_token(settings.waitlist_secret, subscription_id)
        unsubscribe = f"/api/v1/waitlist/{subscription_id}?token={token}"
        response.headers["Location"] = f"/api/v1/waitlist/{subscription_id}"
        return WaitlistOut(
            id=subscription_id,
            product=body.product,
            location=body.location,
            from_=body.from_,
            to=body.to,
            language=body.language,
            unsubscribe_token=token,
            links={"unsubscribe": unsubscribe},
        )

    async def _unsubscribe(subscription_id: str, token: str) -> Response:
        try:
            uuid.UUID(subscription_id)
        except ValueError:
            raise Problem(404, tr("Not found"), tr("No such waitlist subscription.")) from None
        if not token_matches(settings.waitlist_secret, subscription_id, token):
            raise Problem(404, tr("Not found"), tr("No such waitlist subscription."))
        if not await store.unsubscribe(runtime.pool, subscription_id, clock()):
            raise Problem(404, tr("Not found"), tr("No such waitlist subscription."))
        return Response(status_code=204)

    @app.delete(
        "/api/v1/waitlist/{subscription_id}",
        status_code=204,
        tags=["waitlist"],
        summary="Unsubscribe (the token came with the subscription and in every e-mail)",
    )
    async def unsubscribe(subscription_id: str, token: Annotated[str, Query()]) -> Response:
        return await _unsubscribe(subscription_id, token)

    @app.post(
        "/api/v1/waitlist/{subscription_id}/unsubscribe",
        status_code=204,
        tags=["waitlist"],
        summary="One-click unsubscribe (RFC 8058 List-Unsubscribe-Post)",
    )
    async def unsubscribe_one_click(subscription_id: str, token: Annotated[str, Query()]) -> Response:
        return await _unsubscribe(subscription_id, token)

    return app
