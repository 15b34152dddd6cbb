"""Notifications against the real parts: PostgreSQL, Kafka, the stack's SMTP server and SMS sink.

The service runs in-process (its real lifespan: migrations, consumer, outbox relay, sender loop),
so a test can stop and start it to play a crash or downtime. The booking service's contact
endpoint and the catalogue API are served by a small fake over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiosmtpd.controller import Controller
from fastapi import FastAPI, Header, HTTPException
from icalendar import Calendar

from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_contracts.topics import BOOKINGS, CALENDAR, NOTIFICATIONS
from loket_notifications.application.ports import DeliveryRow
from loket_notifications.domain.keys import booking_key, message_id, notification_id
from loket_notifications.entrypoints.app import NotificationSettings, build_app
from loket_runtime.auth import Principal
from loket_runtime.kafka import ensure_topics
from loket_runtime.problems import Problem
from loket_stack.kafka import KafkaBroker
from loket_stack.postgres import EmbeddedPostgres
from loket_stack.sinks import MailFolder, sms_app
from tests.conftest import free_ports

REPO = Path(__file__).resolve().parents[2]
_ports = free_ports(450)  # this module's own servers; test_stack_up's start at + 600


def _free_port() -> int:
    return next(_ports)


PG_PORT, KAFKA_PORT, KAFKA_CONTROLLER_PORT = _free_port(), _free_port(), _free_port()
SMTP_PORT, SMS_PORT, FAKE_PORT = _free_port(), _free_port(), _free_port()
DOMAIN = "loket.gent"
PUBLIC = "http://public.test"
ZONE = ZoneInfo("Europe/Brussels")

PRODUCTS = [
    {
        "id": "residence-card",
        "name": {"nl": "Verblijfskaart", "en": "Residence card", "fr": "Carte de séjour"},
        "description": {"nl": "-", "en": "-", "fr": "-"},
        "duration_minutes": 20,
        "documents": [
            {"nl": "Paspoort", "en": "Passport", "fr": "Passeport"},
            {"nl": "Pasfoto", "en": "Passport photo", "fr": "Photo d'identité"},
        ],
        "fee_eur": 25,
        "requires_confirmation": False,
    },
    {
        "id": "long-stay",
        "name": {"nl": "Inschrijving lang verblijf", "en": "Long stay registration", "fr": "Inscription long séjour"},
        "description": {"nl": "-", "en": "-", "fr": "-"},
        "duration_minutes": 45,
        "documents": [{"nl": "Visum", "en": "Visa", "fr": "Visa"}],
        "fee_eur": 0,
        "requires_confirmation": True,
    },
]
LOCATIONS = [
    {
        "id": "migration-counter",
        "name": "Migratieloket",
        "address": "Woodrow Wilsonplein 1, 9000 Gent",
        "products": ["residence-card", "long-stay"],
    },
    {
        "id": "sc-zuid",
        "name": "Dienstencentrum Zuid",
        "address": "Zuidparklaan 1, 9000 Gent",
        "products": ["residence-card"],
    },
]
CONTACTS: dict[str, dict[str, Any]] = {}
CONTACTS_DOWN_UNTIL = [0.0]  # time.monotonic() until which booking's contact endpoint answers 503
CONTACT_BATCHES: list[int] = []  # how many contacts each call to booking asked for
_phone = itertools.count(100000)

pytestmark = pytest.mark.timeout(170)


# --- infrastructure ---------------------------------------------------------------------------


def _fake_services() -> FastAPI:
    """The catalogue's public API and the booking service's internal contact endpoint."""
    app = FastAPI()

    @app.get("/api/v1/products")
    async def products() -> list[dict[str, Any]]:
        return PRODUCTS

    @app.get("/api/v1/locations")
    async def locations() -> list[dict[str, Any]]:
        return LOCATIONS

    @app.get("/internal/bookings/{booking_id}/contact")
    async def contact(booking_id: str, x_internal_token: str = Header()) -> dict[str, Any]:
        if x_internal_token != "test-internal":
            raise HTTPException(401)
        if time.monotonic() < CONTACTS_DOWN_UNTIL[0]:
            raise HTTPException(503)  # booking is down (behind the gateway: 502/503)
        if booking_id not in CONTACTS:
            raise HTTPException(404)
        return CONTACTS[booking_id]

    @app.post("/internal/bookings/contacts")
    async def contacts(body: dict[str, list[str]], x_internal_token: str = Header()) -> dict[str, Any]:
        if x_internal_token != "test-internal":
            raise HTTPException(401)
        if time.monotonic() < CONTACTS_DOWN_UNTIL[0]:
            raise HTTPException(503)
        CONTACT_BATCHES.append(len(body["ids"]))
        return {"contacts": {i: CONTACTS[i] for i in body["ids"] if i in CONTACTS}}

    return app


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running in a thread
        pass


def _serve_in_thread(app: FastAPI, port: int) -> _Server:
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"server on {port} did not start")
        time.sleep(0.05)
    return server


@dataclass
class Infra:
    root: Path
    dsn: str
    bootstrap: str
    mail_dir: Path
    sms_file: Path
    pg: EmbeddedPostgres | None = None
    kafka: KafkaBroker | None = None


@pytest.fixture(scope="module")
def infra() -> Iterator[Infra]:
    root = Path(tempfile.mkdtemp(prefix="loket-notifications-it-"))
    pg = EmbeddedPostgres(root / "pg", PG_PORT)
    kafka = KafkaBroker(
        root / "kafka",
        KAFKA_PORT,
        KAFKA_CONTROLLER_PORT,
        root / "logs",
        cache_dir=REPO / ".cache" / "kafka",
        heap="384m",
    )
    smtp = Controller(MailFolder(root / "mail"), hostname="127.0.0.1", port=SMTP_PORT)
    servers: list[_Server] = []
    try:
        pg.start()
        pg.create_databases(["loket_notifications"])
        kafka.start(timeout=90)
        # in a thread of its own: asyncio.run here would unset the event loop of the test session
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, ensure_topics(kafka.bootstrap)).result()
        smtp.start()
        servers.append(_serve_in_thread(sms_app(root / "sms.jsonl"), SMS_PORT))
        servers.append(_serve_in_thread(_fake_services(), FAKE_PORT))
        yield Infra(root, pg.dsn("loket_notifications"), kafka.bootstrap, root / "mail", root / "sms.jsonl", pg, kafka)
    finally:
        for server in servers:
            server.should_exit = True
        with contextlib.suppress(Exception):
            smtp.stop()
        with contextlib.suppress(Exception):
            kafka.stop()
        with contextlib.suppress(Exception):
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


class FakeVerifier:
    async def verify(self, token: str) -> Principal:
        if token != "ops-token":
            raise Problem(403, "Forbidden", "not ops")
        return Principal("ops-user", frozenset({"ops"}), frozenset({"*"}))


class SimulatedCrash(BaseException):
    """The process dies here: nothing after this point runs (not an Exception: nobody catches it)."""


@dataclass
class Service:
    """The notifications service in this process, started and stopped like a process would be."""

    infra: Infra
    app: FastAPI | None = None
    client: httpx.AsyncClient | None = None
    _lifespan: Any = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> NotificationSettings:
        values: dict[str, Any] = dict(
            database_url=self.infra.dsn,
            kafka_bootstrap=self.infra.bootstrap,
            smtp_port=SMTP_PORT,
            sms_url=f"http://127.0.0.1:{SMS_PORT}/sms",
            catalogue_url=f"http://127.0.0.1:{FAKE_PORT}",
            booking_url=f"http://127.0.0.1:{FAKE_PORT}",
            internal_token="test-internal",
            public_base_url=PUBLIC,
            message_domain=DOMAIN,
            retry_base_seconds=0.4,
            retry_max_attempts=5,
            retry_max_seconds=1.5,  # an outage of minutes, played in seconds: many tries, each capped
            send_lease_seconds=2,
            send_poll_seconds=0.2,
            outbox_poll_seconds=0.2,
            waitlist_notify_count=3,
            log_level="WARNING",
        )
        values.update(overrides)
        return NotificationSettings(**values)

    async def start(
        self, crash_point: Callable[[str, DeliveryRow], Awaitable[None]] | None = None, **overrides: Any
    ) -> None:
        assert self.app is None, "already running"
        self.app = build_app(self.settings(**overrides), crash_point=crash_point)
        self.app.state.jwt_verifier = FakeVerifier()
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test")

    async def stop(self) -> None:
        if self.app is None:
            return
        assert self.client is not None
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)
        self.app = self.client = None

    @property
    def pool(self) -> Any:
        assert self.app is not None
        return self.app.state.runtime.pool

    async def delivery(self, booking_id: str, kind: str, version: int = 0) -> dict[str, Any] | None:
        return await self.app.state.store.delivery(self.pool, booking_key(booking_id, kind, version))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
async def service(infra: Infra) -> AsyncIterator[Service]:
    svc = Service(infra)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


@pytest.fixture(scope="module")
async def producer(infra: Infra) -> AsyncIterator[AIOKafkaProducer]:
    prod = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, enable_idempotence=True)
    await prod.start()
    try:
        yield prod
    finally:
        await prod.stop()


# --- helpers ----------------------------------------------------------------------------------


def new_booking(language: str = "en", email: bool = True, phone: bool = True) -> str:
    booking_id = str(notification_id(f"test/{time.time_ns()}/{next(_phone)}"))
    CONTACTS[booking_id] = {
        "email": f"{booking_id[:8]}@example.org" if email else None,
        "phone": f"+32470{next(_phone)}" if phone else None,
        "language": language,
        "manage_url": f"{PUBLIC}/manage/{booking_id}?token=secret-{booking_id[:4]}",
        "confirm_url": f"{PUBLIC}/confirm/{booking_id}?token=secret-{booking_id[:4]}",
        "given_name": "Ana",
        "family_name": "Peeters",
    }
    return booking_id


async def publish(producer: AIOKafkaProducer, event: ev.Event, event_id: str | None = None) -> Envelope:
    topic = CALENDAR if isinstance(event, ev.SlotReleased) else BOOKINGS
    extra = {"id": event_id} if event_id else {}
    envelope = Envelope(
        type=event.TYPE,
        source="test",
        subject=getattr(event, "booking_id", None),
        data=event.model_dump(mode="json"),
        **extra,
    )
    await producer.send_and_wait(
        topic.name,
        value=envelope.kafka_value(),
        key=event.location_id.encode(),  # type: ignore[attr-defined]
        headers=envelope.kafka_headers(),
    )
    return envelope


def mails(infra: Infra, booking_id: str, kind: str, version: int = 0) -> list[EmailMessage]:
    mid = message_id(booking_key(booking_id, kind, version), DOMAIN).strip("<>")
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
        for p in sorted(infra.mail_dir.glob(f"*-{mid}.eml"))
    ]


def mails_to(infra: Infra, address: str) -> list[EmailMessage]:
    found = []
    for path in sorted(infra.mail_dir.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["To"] == address:
            found.append(message)
    return found  # type: ignore[return-value]


def texts_to(infra: Infra, phone: str) -> list[dict[str, Any]]:
    if not infra.sms_file.exists():
        return []
    lines = [json.loads(line) for line in infra.sms_file.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["to"] == phone]


async def eventually(check: Callable[[], Any], timeout: float = 20, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def body_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()  # type: ignore[no-any-return]


def body_html(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return part.get_content()  # type: ignore[no-any-return]


def calendar_of(message: EmailMessage) -> Calendar | None:
    for part in message.iter_attachments():
        if part.get_content_type() == "text/calendar":
            content = part.get_content()
            return Calendar.from_ical(content if isinstance(content, (bytes, str)) else bytes(content))
    return None


async def notification_events(infra: Infra) -> list[dict[str, Any]]:
    """Every event on loket.notifications so far (read from the start, no group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(NOTIFICATIONS.name, p) for p in range(NOTIFICATIONS.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    env = Envelope.from_kafka(record.headers, record.value)
                    found.append({"type": env.type, **env.data})
        return found
    finally:
        await consumer.stop()


async def events_for(infra: Infra, nid: str, timeout: float = 15) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]]:
        return [e for e in await notification_events(infra) if e["notification_id"] == nid]

    return await eventually(check, timeout=timeout, interval=0.3)  # type: ignore[no-any-return]


def nid_of(booking_id: str, kind: str, version: int = 0) -> str:
    return str(notification_id(booking_key(booking_id, kind, version)))


def later(**delta: float) -> datetime:
    return (datetime.now(UTC) + timedelta(**delta)).replace(microsecond=0)


# --- every kind in every language -------------------------------------------------------------

LANGUAGES = ("nl", "en", "fr")
KINDS = (
    "please-confirm",
    "confirmation",
    "rejection",
    "cancellation",
    "rescheduled",
    "expired",
    "reminder",
    "reminder-sms",
)


def confirmed(
    booking: str,
    start: datetime,
    language: str,
    by: str = "calendar",
    location: str = "migration-counter",
    product: str = "residence-card",
) -> ev.BookingConfirmed:
    """A confirmed 20-minute appointment at desk d1."""
    return ev.BookingConfirmed(
        booking_id=booking,
        location_id=location,
        product_id=product,
        desk_id="d1",
        start=start,
        end=start + timedelta(minutes=20),
        confirmed_by=by,
        language=language,  # type: ignore[arg-type]
    )


def held(
    booking: str, start: datetime, language: str, expires: datetime, location: str = "migration-counter"
) -> ev.BookingHeld:
    """A 45-minute long-stay appointment held at desk d1 until `expires`."""
    return ev.BookingHeld(
        booking_id=booking,
        location_id=location,
        product_id="long-stay",
        desk_id="d1",
        start=start,
        end=start + timedelta(minutes=45),
        hold_expires_at=expires,
        language=language,  # type: ignore[arg-type]
    )


@dataclass
class Matrix:
    bookings: dict[tuple[str, str], str]
    start: datetime
    new_start: datetime


@pytest.fixture(scope="module")
async def matrix(service: Service, producer: AIOKafkaProducer) -> Matrix:
    """One booking story per kind and language. The confirmed one is then moved, then cancelled by
    staff, each step once the previous message went out (a message not sent yet when the booking
    moves on is void: that is tested with downtime below)."""
    start = later(days=3)
    new_start = start + timedelta(days=1)
    bookings: dict[tuple[str, str], str] = {}
    loc, product = "migration-counter", "residence-card"
    for lang in LANGUAGES:
        b = bookings[("please-confirm", lang)] = new_booking(lang)
        await publish(
            producer,
            held(b, start, lang, expires=later(minutes=30), location=loc),
        )
        # confirmed (twice: a redelivery with a new event id); moved and cancelled below
        b = new_booking(lang)
        for kind in ("confirmation", "rescheduled", "cancellation"):
            bookings[(kind, lang)] = b
        first = confirmed(b, start, lang, by="calendar", location=loc, product=product)
        await publish(producer, first)
        await publish(producer, first)
        b = bookings[("rejection", lang)] = new_booking(lang)
        await publish(
            producer,
            ev.BookingRejected(
                booking_id=b,
                location_id=loc,
                product_id=product,
                start=start,
                reason="slot-taken",
                alternatives=[
                    ev.Slot(
                        start=start + timedelta(minutes=30), end=start + timedelta(minutes=50), location_id="sc-zuid"
                    )
                ],
                language=lang,
            ),
        )
        b = bookings[("expired", lang)] = new_booking(lang)
        await publish(
            producer,
            held(b, start, lang, expires=later(minutes=30), location=loc),
        )
        await publish(
            producer,
            ev.BookingExpired(booking_id=b, location_id=loc, product_id="long-stay", start=start, language=lang),
        )
        # reminders due a few seconds from now: e-mail 24 h before, SMS 2 h before
        b = bookings[("reminder", lang)] = new_booking(lang)
        r_start = later(hours=24, seconds=4)
        await publish(
            producer,
            confirmed(b, r_start, lang, by="resident", location=loc, product=product),
        )
        b = bookings[("reminder-sms", lang)] = new_booking(lang)
        s_start = later(hours=2, seconds=4)
        await publish(
            producer,
            confirmed(b, s_start, lang, by="resident", location=loc, product=product),
        )
    for step, version in (("confirmation", 0), ("rescheduled", 1)):
        for lang in LANGUAGES:
            b = bookings[(step, lang)]
            await eventually(lambda b=b, step=step, version=version: mails(service.infra, b, step, version))
            if step == "confirmation":
                event: ev.Event = ev.BookingRescheduled(
                    booking_id=b,
                    request_id="r1",
                    location_id=loc,
                    product_id=product,
                    desk_id="d2",
                    old_start=start,
                    start=new_start,
                    end=new_start + timedelta(minutes=20),
                    sequence=1,
                    language=lang,
                )
            else:
                event = ev.BookingCancelled(
                    booking_id=b,
                    location_id=loc,
                    product_id=product,
                    desk_id="d2",
                    start=new_start,
                    end=new_start + timedelta(minutes=20),
                    cancelled_by="staff",
                    reason="Closed for a public holiday",
                    cancelled_at=datetime.now(UTC),
                    language=lang,
                )
            await publish(producer, event)
    return Matrix(bookings, start, new_start)


WORDS = {  # a phrase only that kind's message has, per language
    ("please-confirm", "nl"): "Bevestig uw afspraak",
    ("please-confirm", "en"): "Please confirm your appointment",
    ("please-confirm", "fr"): "Confirmez votre rendez-vous",
    ("confirmation", "nl"): "Uw afspraak is bevestigd",
    ("confirmation", "en"): "Your appointment is confirmed",
    ("confirmation", "fr"): "Votre rendez-vous est confirmé",
    ("rejection", "nl"): "kon niet worden ingepland",
    ("rejection", "en"): "We could not book",
    ("rejection", "fr"): "n'a pas pu être réservé",
    ("cancellation", "nl"): "is geannuleerd",
    ("cancellation", "en"): "has been cancelled",
    ("cancellation", "fr"): "est annulé",
    ("rescheduled", "nl"): "is verplaatst",
    ("rescheduled", "en"): "has been moved",
    ("rescheduled", "fr"): "est déplacé",
    ("expired", "nl"): "is vervallen",
    ("expired", "en"): "has expired",
    ("expired", "fr"): "a expiré",
    ("reminder", "nl"): "Herinnering",
    ("reminder", "en"): "Reminder",
    ("reminder", "fr"): "Rappel",
    ("reminder-sms", "nl"): "herinnering",
    ("reminder-sms", "en"): "reminder",
    ("reminder-sms", "fr"): "rappel",
}
DATES = {"nl": "december", "en": "December", "fr": "décembre"}
MONTHS = {
    "nl": [
        "januari",
        "februari",
        "maart",
        "april",
        "mei",
        "juni",
        "juli",
        "augustus",
        "september",
        "oktober",
        "november",
        "december",
    ],
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    "fr": [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
}
EARLY = {
    "nl": "Kom niet vroeger dan 10 minuten",
    "en": "don't come earlier than 10 minutes",
    "fr": "Ne venez pas plus de 10 minutes avant",
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
async def test_each_kind_in_each_language(infra: Infra, matrix: Matrix, kind: str, language: str) -> None:
    booking = matrix.bookings[(kind, language)]
    version = 1 if kind in ("rescheduled", "cancellation") else 0  # cancelled after the move: version 1
    if kind == "reminder-sms":
        phone = CONTACTS[booking]["phone"]
        texts = await eventually(lambda: texts_to(infra, phone), timeout=25)
        assert len(texts) == 1
        body = texts[0]["body"]
        assert WORDS[(kind, language)] in body
        assert len(body) <= 160 and "10 min" in body
        return
    found = await eventually(lambda: mails(infra, booking, kind, version), timeout=25)
    await asyncio.sleep(0.3)
    found = mails(infra, booking, kind, version)
    assert len(found) == 1, f"{kind}/{language}: {len(found)} messages"
    message = found[0]
    text, html = body_text(message), body_html(message)
    assert WORDS[(kind, language)] in message["Subject"] + text
    assert message["To"] == CONTACTS[booking]["email"]
    assert message["Content-Language"] == language
    assert f'lang="{language}"' in html
    month = MONTHS[language][
        (matrix.new_start if kind in ("cancellation", "rescheduled") else matrix.start).astimezone(ZONE).month - 1
    ]
    if kind not in ("reminder",):
        assert month in text
    if kind in ("please-confirm", "confirmation", "rescheduled", "reminder"):
        assert EARLY[language] in text
        assert CONTACTS[booking]["manage_url"] in text
        assert "Woodrow Wilsonplein 1" in text  # the address, from the catalogue
    if kind in ("confirmation", "rescheduled", "reminder"):
        assert {"nl": "Paspoort", "en": "Passport", "fr": "Passeport"}[language] in text
    if kind == "please-confirm":
        assert CONTACTS[booking]["confirm_url"] in text
        assert {"nl": "Visum", "en": "Visa", "fr": "Visa"}[language] in text
    if kind == "rejection":
        assert "Dienstencentrum Zuid" in text  # the alternative, with its place
        assert f"{PUBLIC}/?product=residence-card&location=sc-zuid&date=" in text
    if kind == "cancellation":
        assert "Closed for a public holiday" in text
        assert {"nl": "medewerker", "en": "member of staff", "fr": "membre du personnel"}[language] in text


async def test_ics_follows_the_booking_through_confirm_move_cancel(infra: Infra, matrix: Matrix) -> None:
    booking = matrix.bookings[("confirmation", "en")]
    calendars = {}
    for kind, version in (("confirmation", 0), ("rescheduled", 1), ("cancellation", 1)):
        found = await eventually(lambda k=kind, v=version: mails(infra, booking, k, v))
        cal = calendar_of(found[0])
        assert cal is not None, kind
        calendars[kind] = cal
    events = {kind: cal.walk("VEVENT")[0] for kind, cal in calendars.items()}
    assert {str(e["UID"]) for e in events.values()} == {f"booking-{booking}@{DOMAIN}"}
    assert calendars["confirmation"]["METHOD"] == "REQUEST"
    assert events["confirmation"]["SEQUENCE"] == 1  # 3 x reschedules + 1 once confirmed (loket_runtime.ical)
    assert events["confirmation"].decoded("DTSTART") == matrix.start
    assert calendars["rescheduled"]["METHOD"] == "REQUEST"
    assert events["rescheduled"]["SEQUENCE"] == 4
    assert events["rescheduled"].decoded("DTSTART") == matrix.new_start
    assert calendars["cancellation"]["METHOD"] == "CANCEL"
    assert events["cancellation"]["SEQUENCE"] == 5  # + 2 once it ended
    assert str(events["cancellation"]["STATUS"]) == "CANCELLED"
    assert "Woodrow Wilsonplein 1" in str(events["confirmation"]["LOCATION"])


async def test_staff_cancellation_also_texts(infra: Infra, matrix: Matrix) -> None:
    booking = matrix.bookings[("cancellation", "fr")]
    texts = await eventually(lambda: texts_to(infra, CONTACTS[booking]["phone"]))
    assert len(texts) == 1 and "annul" in texts[0]["body"]


async def test_redelivered_confirmation_sends_once_and_moved_reminders_are_void(
    service: Service, infra: Infra, matrix: Matrix
) -> None:
    booking = matrix.bookings[("confirmation", "nl")]
    await eventually(lambda: mails(infra, booking, "cancellation", 1))
    assert len(mails(infra, booking, "confirmation")) == 1  # published twice, sent once
    for kind in ("reminder", "reminder-sms"):
        for version in (0, 1):
            row = await service.delivery(booking, kind, version)
            assert row is not None and row["status"] == "cancelled", (kind, version)


async def test_ops_api_lists_deliveries(service: Service, infra: Infra, matrix: Matrix) -> None:
    booking = matrix.bookings[("confirmation", "en")]
    await eventually(lambda: mails(infra, booking, "cancellation", 1))
    assert service.client is not None
    unauthenticated = await service.client.get("/api/v1/ops/notifications", params={"booking": booking})
    assert unauthenticated.status_code == 401
    response = await service.client.get(
        "/api/v1/ops/notifications", params={"booking": booking}, headers={"Authorization": "Bearer ops-token"}
    )
    assert response.status_code == 200
    rows = response.json()["notifications"]
    by_kind = {(r["kind"], r["version"]): r for r in rows}
    sent = by_kind[("confirmation", 0)]
    assert sent["status"] == "sent" and sent["channel"] == "email" and sent["sent_at"]
    assert sent["recipient"].endswith("@example.org") and "***" in sent["recipient"]
    assert by_kind[("reminder", 1)]["status"] == "cancelled"
    events = await events_for(infra, nid_of(booking, "confirmation"))
    assert [e["type"] for e in events] == ["notification-sent"]
    assert events[0]["booking_id"] == booking and events[0]["channel"] == "email"


# --- failures, retries, crashes, downtime -----------------------------------------------------


async def test_smtp_refusing_then_accepting_delivers_once(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    async with httpx.AsyncClient() as client:
        refused = await client.post(
            f"http://127.0.0.1:{SMS_PORT}/control/refuse", params={"channel": "smtp", "seconds": 2}
        )
        assert refused.status_code == 200
    booking = new_booking("nl")
    start = later(days=2)
    await publish(
        producer,
        confirmed(booking, start, "nl", by="calendar", location="sc-zuid", product="residence-card"),
    )

    async def sent() -> dict[str, Any] | None:
        row = await service.delivery(booking, "confirmation")
        return row if row and row["status"] == "sent" else None

    row = await eventually(sent, timeout=20)
    assert row["attempts"] >= 2, "the first attempt fell in the refusal window"
    assert "451" in (row["last_error"] or "")
    await asyncio.sleep(0.5)
    assert len(mails(infra, booking, "confirmation")) == 1
    events = await events_for(infra, nid_of(booking, "confirmation"))
    assert [e["type"] for e in events] == ["notification-sent"]
    assert events[0]["attempts"] == row["attempts"]


async def test_sms_gateway_down_for_longer_than_every_try_still_delivers(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    """Issue 15, part 3: an outage of another part is waited out, never counted towards giving up
    (before: failed after 5 tries here, and the resident was never told)."""
    booking = new_booking("en")
    async with httpx.AsyncClient() as client:
        await client.post(f"http://127.0.0.1:{SMS_PORT}/control/refuse", params={"channel": "sms", "seconds": 12})
    try:
        start = later(days=1)
        await publish(
            producer,
            ev.BookingCancelled(
                booking_id=booking,
                location_id="sc-zuid",
                product_id="residence-card",
                desk_id="d1",
                start=start,
                end=start + timedelta(minutes=20),
                cancelled_by="system",
                reason="Closure",
                cancelled_at=datetime.now(UTC),
                language="en",
            ),
        )

        async def finished() -> dict[str, Any] | None:
            row = await service.delivery(booking, "cancellation-sms")
            return row if row and row["status"] not in ("pending", "sending") else None

        row = await eventually(finished, timeout=30)
        assert row["status"] == "sent", row["last_error"]
        assert row["attempts"] > 5 and row["faults"] == 0, "more tries than max_attempts, none counted"
        assert "503" in (row["last_error"] or "")
        events = await events_for(infra, nid_of(booking, "cancellation-sms"))
        assert [e["type"] for e in events] == ["notification-sent"]
        assert len(texts_to(infra, CONTACTS[booking]["phone"])) == 1
    finally:
        async with httpx.AsyncClient() as client:
            await client.post(f"http://127.0.0.1:{SMS_PORT}/control/refuse", params={"channel": "sms", "seconds": 0})


async def test_booking_down_for_longer_than_every_try_the_confirmation_still_goes(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    """Issue 15, part 3: booking's contact endpoint unreachable for longer than max_attempts tries
    (an outage of ten minutes, with the retry schedule made short): the confirmation goes once it is back."""
    booking = new_booking("en")
    CONTACTS_DOWN_UNTIL[0] = time.monotonic() + 12
    try:
        await publish(producer, confirmed(booking, later(days=3), "en", location="sc-zuid"))

        async def finished() -> dict[str, Any] | None:
            row = await service.delivery(booking, "confirmation")
            return row if row and row["status"] not in ("pending", "sending") else None

        row = await eventually(finished, timeout=40)
    finally:
        CONTACTS_DOWN_UNTIL[0] = 0.0
    assert row["status"] == "sent", row["last_error"]
    assert row["attempts"] > 5 and row["faults"] == 0
    assert "503" in (row["last_error"] or "")
    assert len(mails(infra, booking, "confirmation")) == 1
    events = await events_for(infra, nid_of(booking, "confirmation"))
    assert [e["type"] for e in events] == ["notification-sent"]


async def test_ops_list_every_failed_message_and_resend_one(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    """A permanent fault (here: booking does not know the booking, as after an erasure) fails at
    once with the reason; ops see it among the failed ones and, once it is dealt with, resend it."""
    booking = new_booking("en")
    contact = CONTACTS.pop(booking)
    await publish(producer, confirmed(booking, later(days=3), "en", location="sc-zuid"))

    async def failed() -> dict[str, Any] | None:
        row = await service.delivery(booking, "confirmation")
        return row if row and row["status"] == "failed" else None

    row = await eventually(failed)
    assert "unknown" in row["last_error"]
    assert service.client is not None
    ops = {"Authorization": "Bearer ops-token"}
    nid = nid_of(booking, "confirmation")
    assert (await service.client.get("/api/v1/ops/notifications/failed")).status_code == 401
    listed = (await service.client.get("/api/v1/ops/notifications/failed", headers=ops, params={"limit": 500})).json()
    mine = [n for n in listed["notifications"] if n["id"] == nid]
    assert mine and mine[0]["booking"] == booking and "unknown" in mine[0]["error"]
    first = (await service.client.get("/api/v1/ops/notifications/failed", headers=ops, params={"limit": 1})).json()
    assert len(first["notifications"]) == 1 and first["next"]
    second = await service.client.get(
        "/api/v1/ops/notifications/failed", headers=ops, params={"limit": 1, "before": first["next"]}
    )
    assert second.status_code == 200
    assert all(n["id"] != first["notifications"][0]["id"] for n in second.json()["notifications"])
    bad = await service.client.get("/api/v1/ops/notifications/failed", headers=ops, params={"before": "x"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")

    CONTACTS[booking] = contact  # the cause is dealt with
    resent = await service.client.post(f"/api/v1/ops/notifications/{nid}/resend", headers=ops)
    assert resent.status_code == 202 and resent.json()["was"] == "failed"

    async def sent() -> dict[str, Any] | None:
        row = await service.delivery(booking, "confirmation")
        return row if row and row["status"] == "sent" else None

    await eventually(sent)
    assert len(mails(infra, booking, "confirmation")) == 1
    again = await service.client.post(f"/api/v1/ops/notifications/{uuid.uuid4()}/resend", headers=ops)
    assert again.status_code == 404
    assert (await service.client.post(f"/api/v1/ops/notifications/{nid}/resend")).status_code == 401
    events = await events_for(infra, nid)

    async def both() -> list[str]:
        types = [e["type"] for e in await notification_events(infra) if e["notification_id"] == nid]
        return types if len(types) >= 2 else []

    assert await eventually(both) == ["notification-failed", "notification-sent"]
    assert events


async def test_unknown_booking_fails_at_once_and_no_address_is_skipped(
    service: Service, producer: AIOKafkaProducer
) -> None:
    unknown = new_booking("en")
    del CONTACTS[unknown]
    no_email = new_booking("en", email=False)
    start = later(days=4)
    for booking in (unknown, no_email):
        await publish(
            producer,
            confirmed(booking, start, "en", by="calendar", location="sc-zuid", product="residence-card"),
        )

    async def finished(booking: str) -> dict[str, Any] | None:
        row = await service.delivery(booking, "confirmation")
        return row if row and row["status"] not in ("pending", "sending") else None

    failed = await eventually(lambda: finished(unknown))
    assert failed["status"] == "failed" and failed["attempts"] == 1 and "unknown" in failed["last_error"]
    skipped = await eventually(lambda: finished(no_email))
    assert skipped["status"] == "skipped" and "no e-mail" in skipped["last_error"]


async def test_crash_between_send_and_record_gives_one_email(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    """Crash right after the SMTP server accepted the message (before 'sent' is recorded), and, for a
    second message, right before sending. After a restart each is delivered; the first may be sent
    again, but with the same Message-ID: one e-mail as the resident's mailbox sees it."""
    after_send, before_send = new_booking("en"), new_booking("fr")
    crashed: list[str] = []

    def crash_at(stage: str, booking: str) -> Callable[[str, DeliveryRow], Awaitable[None]]:
        async def crash_point(at: str, row: DeliveryRow) -> None:
            if at == stage and row.booking_id == booking:
                crashed.append(booking)
                raise SimulatedCrash(stage)

        return crash_point

    start = later(days=5)
    for booking, stage in ((after_send, "sent"), (before_send, "rendered")):
        await service.stop()
        await service.start(crash_point=crash_at(stage, booking))
        await publish(
            producer,
            confirmed(booking, start, "en", by="calendar", location="migration-counter", product="residence-card"),
        )
        await eventually(lambda b=booking: b in crashed)
        row = await service.delivery(booking, "confirmation")
        assert row is not None and row["status"] == "sending" and row["payload"] is not None
        # accepted by the server before the crash, or not sent at all
        assert len(mails(infra, booking, "confirmation")) == (1 if stage == "sent" else 0)
    await service.stop()
    await service.start()  # the restart: leases run out, both are sent

    for booking in (after_send, before_send):

        async def sent(b: str = booking) -> dict[str, Any] | None:
            row = await service.delivery(b, "confirmation")
            return row if row and row["status"] == "sent" else None

        row = await eventually(sent, timeout=15)
        assert row["attempts"] == 2
        events = await events_for(infra, nid_of(booking, "confirmation"))
        assert [e["type"] for e in events] == ["notification-sent"]
    assert len(mails(infra, before_send, "confirmation")) == 1
    copies = mails(infra, after_send, "confirmation")
    assert {m["Message-ID"] for m in copies} == {message_id(booking_key(after_send, "confirmation", 0), DOMAIN)}
    assert len({body_text(m) for m in copies}) == 1  # byte-identical content: the same message


async def test_reminder_due_during_downtime_is_sent_late(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    booking = new_booking("nl")
    start = later(hours=24, seconds=3)
    await publish(
        producer,
        confirmed(booking, start, "nl", by="calendar", location="migration-counter", product="residence-card"),
    )
    row = await eventually(lambda: service.delivery(booking, "reminder"))
    assert row["status"] == "pending"
    await service.stop()  # down while the reminder falls due
    # meanwhile another booking is confirmed and cancelled: its confirmation is no longer true
    gone = new_booking("fr")
    gone_start = later(days=2)
    common = dict(
        booking_id=gone,
        location_id="migration-counter",
        product_id="residence-card",
        desk_id="d1",
        start=gone_start,
        end=gone_start + timedelta(minutes=20),
        language="fr",
    )
    await publish(producer, ev.BookingConfirmed(confirmed_by="calendar", **common))  # type: ignore[arg-type]
    await publish(
        producer, ev.BookingCancelled(cancelled_by="resident", reason="", cancelled_at=datetime.now(UTC), **common)
    )  # type: ignore[arg-type]
    due = start - timedelta(hours=24)
    await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 2)
    assert mails(infra, booking, "reminder") == []
    await service.start()
    found = await eventually(lambda: mails(infra, booking, "reminder"), timeout=15)
    assert "Herinnering" in found[0]["Subject"]
    await eventually(lambda: mails(infra, gone, "cancellation"))
    assert mails(infra, gone, "confirmation") == []
    voided = await service.delivery(gone, "confirmation")
    assert voided is not None and voided["status"] == "cancelled"

    async def sent() -> dict[str, Any] | None:
        row = await service.delivery(booking, "reminder")
        return row if row and row["status"] == "sent" else None

    row = await eventually(sent)
    assert row["sent_at"] > due + timedelta(seconds=1.5)  # late, but sent


async def test_cancelled_booking_gets_no_reminder(service: Service, infra: Infra, producer: AIOKafkaProducer) -> None:
    booking = new_booking("en")
    start = later(hours=24, seconds=2)
    await publish(
        producer,
        confirmed(booking, start, "en", by="calendar", location="migration-counter", product="residence-card"),
    )
    await publish(
        producer,
        ev.BookingCancelled(
            booking_id=booking,
            location_id="migration-counter",
            product_id="residence-card",
            desk_id="d1",
            start=start,
            end=start + timedelta(minutes=20),
            cancelled_by="resident",
            reason="",
            cancelled_at=datetime.now(UTC),
            language="en",
        ),
    )
    await eventually(lambda: mails(infra, booking, "cancellation"))
    await asyncio.sleep(max(0.0, (start - timedelta(hours=24) - datetime.now(UTC)).total_seconds()) + 1.5)
    assert mails(infra, booking, "reminder") == []
    row = await service.delivery(booking, "reminder")
    assert row is not None and row["status"] == "cancelled"


# --- waitlist ---------------------------------------------------------------------------------


async def test_waitlist_subscribers_told_once_when_a_slot_frees(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    assert service.client is not None
    slot_start = later(days=6).replace(hour=9, minute=0)
    day = slot_start.astimezone(ZONE).date()
    subscribers = []
    for i, (lang, location) in enumerate(
        (("nl", "migration-counter"), ("en", None), ("fr", "migration-counter"), ("en", None))
    ):
        email = f"wait{i}-{time.time_ns()}@example.org"
        response = await service.client.post(
            "/api/v1/waitlist",
            json={
                "product": "residence-card",
                "location": location,
                "from": day.isoformat(),
                "to": (day + timedelta(days=2)).isoformat(),
                "email": email,
                "language": lang,
            },
        )
        assert response.status_code == 201, response.text
        subscribers.append(response.json() | {"email": email})
    # not matching: another place, another day, another product
    for body in ({"location": "sc-zuid"}, {"from": (day + timedelta(days=1)).isoformat()}, {"product": "long-stay"}):
        response = await service.client.post(
            "/api/v1/waitlist",
            json={
                "product": "residence-card",
                "from": day.isoformat(),
                "to": (day + timedelta(days=2)).isoformat(),
                "email": f"other-{time.time_ns()}@example.org",
                "language": "en",
                **body,
            },
        )
        assert response.status_code == 201
    bad = await service.client.post(
        "/api/v1/waitlist",
        json={"product": "nope", "from": day.isoformat(), "to": day.isoformat(), "email": "x@example.org"},
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "product"

    released = ev.SlotReleased(
        location_id="migration-counter",
        desk_id="d1",
        start=slot_start,
        end=slot_start + timedelta(minutes=20),
        products=["residence-card"],
        available_from=datetime.now(UTC),
        cause="cancelled",
    )
    await publish(producer, released)
    await publish(producer, released)  # the same release, republished under a new event id
    for sub, lang, word in zip(
        subscribers[:3], ("nl", "en", "fr"), ("vrijgekomen", "become free", "libéré"), strict=True
    ):
        found = await eventually(lambda s=sub: mails_to(infra, s["email"]))
        message = found[0]
        assert message["Content-Language"] == lang and word in message["Subject"]
        text = body_text(message)
        assert f"{PUBLIC}/?product=residence-card&location=migration-counter&date={day.isoformat()}" in text
        assert f"id={sub['id']}&token={sub['unsubscribe_token']}" in text
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    await asyncio.sleep(1.0)
    for sub in subscribers[:3]:
        assert len(mails_to(infra, sub["email"])) == 1  # told once per released slot
    assert mails_to(infra, subscribers[3]["email"]) == []  # only the first three

    # unsubscribe: wrong token 404, right token 204; then a new release skips them
    first = subscribers[0]
    wrong = await service.client.delete(f"/api/v1/waitlist/{first['id']}", params={"token": "nope"})
    assert wrong.status_code == 404
    ok = await service.client.delete(f"/api/v1/waitlist/{first['id']}", params={"token": first["unsubscribe_token"]})
    assert ok.status_code == 204
    second_slot = slot_start + timedelta(hours=1)
    await publish(
        producer,
        ev.SlotReleased(
            location_id="migration-counter",
            desk_id="d1",
            start=second_slot,
            end=second_slot + timedelta(minutes=20),
            products=["residence-card"],
            available_from=datetime.now(UTC),
            cause="expired",
        ),
    )
    await eventually(lambda: len(mails_to(infra, subscribers[3]["email"])) == 1)  # moved up into the first three
    assert len(mails_to(infra, first["email"])) == 1


async def test_waitlist_input_rules(service: Service) -> None:
    assert service.client is not None
    today = datetime.now(ZONE).date()
    body = {
        "product": "residence-card",
        "location": "",
        "from": today.isoformat(),
        "to": (today + timedelta(days=30)).isoformat(),
        "email": f"many-{time.time_ns()}@example.org",
    }
    first = await service.client.post("/api/v1/waitlist", json=body)
    assert first.status_code == 201 and first.json()["location"] is None  # "" from a form: any location
    assert first.headers["location"] == f"/api/v1/waitlist/{first.json()['id']}"
    for field_name, value in (
        ("to", (today - timedelta(days=1)).isoformat()),
        ("email", "not-an-address"),
        ("location", "atlantis"),
        ("to", (today + timedelta(days=200)).isoformat()),
    ):
        bad = await service.client.post("/api/v1/waitlist", json=body | {field_name: value})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == field_name, (field_name, bad.text)
    for _ in range(9):
        assert (await service.client.post("/api/v1/waitlist", json=body)).status_code == 201
    too_many = await service.client.post("/api/v1/waitlist", json=body)
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "email"
    sub = first.json()
    one_click = await service.client.post(
        f"/api/v1/waitlist/{sub['id']}/unsubscribe", params={"token": sub["unsubscribe_token"]}
    )
    assert one_click.status_code == 204
    assert (await service.client.post("/api/v1/waitlist", json=body)).status_code == 201  # room again


# --- several instances -----------------------------------------------------------------------


async def test_two_instances_share_the_work_without_duplicates(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    second = Service(infra)
    await second.start(instance_id="it-2")
    try:
        assert second.app is not None
        consumer = second.app.state.runtime.consumers[0]
        await eventually(lambda: consumer.assigned, timeout=20)  # the group rebalanced over both
        start = later(days=8)
        bookings = [new_booking("en") for _ in range(12)]
        for i, booking in enumerate(bookings):  # spread over the partitions (keyed by location)
            await publish(
                producer,
                confirmed(booking, start, "en", by="calendar", location=f"loc-{i}", product="residence-card"),
            )
        for booking in bookings:
            await eventually(lambda b=booking: mails(infra, b, "confirmation"))
        await asyncio.sleep(1.0)
        assert all(len(mails(infra, b, "confirmation")) == 1 for b in bookings)
        claimed_by = {(await service.delivery(b, "confirmation") or {}).get("claimed_by") for b in bookings}
        assert service.app is not None
        assert claimed_by <= {service.app.state.runtime.settings.instance_id, "it-2"}
    finally:
        await second.stop()


# --- a storm: one SMTP connection, contacts in batches, rejections told on screen ---------------


def rejected(booking: str, start: datetime, told_in_response: bool = False) -> ev.BookingRejected:
    return ev.BookingRejected(
        booking_id=booking,
        location_id="migration-counter",
        product_id="residence-card",
        start=start,
        reason="slot-taken",
        alternatives=[
            ev.Slot(start=start + timedelta(minutes=20), end=start + timedelta(minutes=40), location_id="sc-zuid")
        ],
        language="en",
        told_in_response=told_in_response,
    )  # type: ignore[arg-type]


def message_ids(folder: Path) -> list[str]:
    """The Message-ID of every e-mail the server kept, one entry per copy received."""
    return [str(message_from_bytes(p.read_bytes(), policy=policy.default)["Message-ID"]) for p in folder.glob("*.eml")]


async def storm(producer: AIOKafkaProducer, count: int) -> list[str]:
    """`count` rejections of new bookings, as a storm's refusals decided after the requests were answered."""
    bookings = [new_booking("en") for _ in range(count)]
    start = later(days=4)
    for booking in bookings:
        await publish(producer, rejected(booking, start))
    return bookings


async def all_sent(service: Service, bookings: list[str], timeout: float = 60) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        rows = [await service.delivery(b, "rejection") for b in bookings]
        done = all(r is not None and r["status"] == "sent" for r in rows)
        return rows if done else None  # type: ignore[return-value]

    return await eventually(check, timeout=timeout, interval=0.3)  # type: ignore[no-any-return]


async def test_a_storm_of_messages_goes_over_one_smtp_connection_with_contacts_in_batches(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    await service.stop()
    await service.start()  # a fresh transport: no connection yet
    assert service.app is not None
    transport = service.app.state.sender.mail
    CONTACT_BATCHES.clear()
    bookings = await storm(producer, 60)
    rows = await all_sent(service, bookings)
    assert all(r["attempts"] == 1 for r in rows)
    expected = {message_id(booking_key(b, "rejection", 0), DOMAIN) for b in bookings}
    received = [mid for mid in message_ids(infra.mail_dir) if mid in expected]
    assert sorted(received) == sorted(expected)  # every one, once
    assert transport.connections_opened == 1, "one connection for every message"
    assert sum(CONTACT_BATCHES) == 60 and len(CONTACT_BATCHES) < 60, CONTACT_BATCHES  # contacts asked in batches


class DropsConnections(MailFolder):
    """The stack's mail folder behind a server that drops the connection every `every` messages,
    in the middle of the next message's envelope (before DATA): abruptly (no answer at all), or
    saying so first (421, as a server does on shutdown or after an idle timeout)."""

    def __init__(self, folder: Path, every: int) -> None:
        super().__init__(folder)
        self.every = every
        self.recipients = 0
        self.drops = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        self.recipients += 1
        if self.recipients % self.every == 0:
            self.drops += 1
            if self.drops % 2:
                server.transport.close()  # gone without a word
                return "250 OK"  # never reaches the client
            asyncio.get_running_loop().call_soon(server.transport.close)  # after the answer is written
            return "421 4.3.2 Service shutting down"
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_a_dropped_smtp_connection_mid_batch_loses_and_doubles_nothing(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    folder = infra.root / "mail-dropping"
    handler = DropsConnections(folder, every=7)
    port = _free_port()
    server = Controller(handler, hostname="127.0.0.1", port=port)
    server.start()
    try:
        await service.stop()
        await service.start(smtp_port=port)
        assert service.app is not None
        transport = service.app.state.sender.mail
        bookings = await storm(producer, 40)
        rows = await all_sent(service, bookings)
        expected = {message_id(booking_key(b, "rejection", 0), DOMAIN) for b in bookings}
        received = message_ids(folder)
        assert sorted(received) == sorted(expected), "every message exactly once"
        assert handler.drops >= 5
        assert transport.connections_opened == 1 + handler.drops  # each drop: one new connection, at once
        assert all(r["attempts"] == 1 for r in rows), "sent again on the new connection, not retried later"
    finally:
        await service.stop()
        server.stop()
        await service.start()


async def test_a_rejection_told_on_screen_is_not_e_mailed_and_ops_see_why(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    told, not_told = new_booking("en"), new_booking("en")
    start = later(days=6)
    await publish(producer, rejected(told, start, told_in_response=True))
    await publish(producer, rejected(not_told, start, told_in_response=False))
    await eventually(lambda: mails(infra, not_told, "rejection"), timeout=20)
    row = await eventually(lambda: service.delivery(told, "rejection"))
    assert row["status"] == "skipped" and row["attempts"] == 0 and row["finished_at"] is not None
    assert "told in the response" in row["last_error"]
    assert mails(infra, told, "rejection") == []
    assert service.client is not None
    listed = await service.client.get(
        "/api/v1/ops/notifications", params={"booking": told}, headers={"Authorization": "Bearer ops-token"}
    )
    (shown,) = listed.json()["notifications"]
    assert (shown["kind"], shown["status"]) == ("rejection", "skipped") and "told in the response" in shown["error"]


async def test_housekeeping_reports_backlog_and_forgets_old_contents(service: Service, matrix: Matrix) -> None:
    assert service.app is not None
    store = service.app.state.store
    booking = matrix.bookings[("confirmation", "nl")]

    async def sent() -> bool:
        return ((await service.delivery(booking, "confirmation")) or {}).get("status") == "sent"

    await eventually(sent)
    now = datetime.now(UTC)
    open_count, late = await store.backlog(service.pool, now, timedelta(minutes=5))
    assert open_count > 0 and late == 0  # future reminders are open; nothing is overdue
    assert (await service.delivery(booking, "confirmation") or {})["payload"] is not None
    assert await store.forget(service.pool, now + timedelta(days=31), timedelta(days=30)) > 0
    row = await service.delivery(booking, "confirmation")
    assert row is not None and row["status"] == "sent" and row["payload"] is None and row["recipient"] is None


# --- the process the runner starts ------------------------------------------------------------


async def test_runs_as_a_process_with_settings_from_the_environment(infra: Infra) -> None:
    """`python -m loket_notifications` with LOKET_* variables: migrates, consumes, serves /readyz.
    Its own database and consumer group; SMTP and SMS point nowhere, so it sends nothing."""
    admin = await asyncpg.connect(infra.dsn)
    try:
        await admin.execute('CREATE DATABASE "loket_notifications_smoke"')
    finally:
        await admin.close()
    smoke_dsn = infra.dsn.rsplit("/", 1)[0] + "/loket_notifications_smoke"
    port, nowhere = _free_port(), _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOKET_")},
        "LOKET_DATABASE_URL": smoke_dsn,
        "LOKET_KAFKA_BOOTSTRAP": infra.bootstrap,
        "LOKET_HTTP_PORT": str(port),
        "LOKET_CONSUMER_GROUP": "notifications-smoke",
        "LOKET_SMTP_HOST": "127.0.0.1",
        "LOKET_SMTP_PORT": str(nowhere),
        "LOKET_SMS_URL": f"http://127.0.0.1:{nowhere}/sms",
        "LOKET_CATALOGUE_URL": f"http://127.0.0.1:{FAKE_PORT}",
        "LOKET_BOOKING_URL": f"http://127.0.0.1:{FAKE_PORT}",
        "LOKET_PUBLIC_BASE_URL": PUBLIC,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loket_notifications",
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:

            async def ready() -> dict[str, Any] | None:
                try:
                    response = await client.get("/readyz")
                except httpx.HTTPError:
                    return None
                body = response.json()
                assigned = body.get("consumers", {}).get("notifications-smoke", [])
                return body if response.status_code == 200 and len(assigned) == 12 else None

            body = await eventually(ready, timeout=40, interval=0.3)
            assert body["database"] == "ok"
        conn = await asyncpg.connect(smoke_dsn)
        try:
            known = await eventually(lambda: conn.fetchval("SELECT count(*) FROM bookings"), timeout=20)
            assert known > 0  # it read the booking events from the start
        finally:
            await conn.close()
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=15)


# --- a part down: honest answers (last: it stops PostgreSQL and Kafka) ---------------------------


async def test_postgres_down_answers_503_problem_json_and_readyz_fails(
    service: Service, infra: Infra, producer: AIOKafkaProducer
) -> None:
    """Issue 15, part 5: with PostgreSQL unreachable a request gets 503 problem+json with
    Retry-After (before: `500 text/plain`; a pooled connection the server dropped raised asyncpg's
    InternalClientError), `/readyz` fails while it is down, and all is as before once it is back."""
    assert service.client is not None and infra.pg is not None and infra.kafka is not None
    ops = {"Authorization": "Bearer ops-token"}
    assert (await service.client.get("/readyz")).status_code == 200
    infra.pg.stop()
    try:
        for method, path, kwargs in (
            ("GET", "/api/v1/ops/notifications", {"params": {"booking": "b-1"}, "headers": ops}),
            ("GET", "/api/v1/ops/notifications/failed", {"headers": ops}),
            ("POST", "/api/v1/waitlist", {"json": _waitlist_body()}),
        ):
            response = await service.client.request(method, path, **kwargs)  # type: ignore[arg-type]
            assert response.status_code == 503, (path, response.status_code, response.text[:300])
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) > 0
            assert response.json()["type"].endswith("/unavailable")
        ready = await service.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"] != "ok"
    finally:
        infra.pg.start()
    await eventually(lambda: _ready(service), timeout=30, interval=0.5)
    # Kafka down fails /readyz too: tests/unit/runtime/test_readiness_kafka.py (a broker
    # stopped and started under this module's in-process service hangs its shutdown).


def _waitlist_body() -> dict[str, Any]:
    day = datetime.now(ZONE).date() + timedelta(days=3)
    return {"product": "residence-card", "from": day.isoformat(), "to": day.isoformat(), "email": "w@example.org"}


async def _ready(service: Service) -> bool:
    assert service.client is not None
    return (await service.client.get("/readyz")).status_code == 200
