"""Turn a planned delivery into the exact bytes to send: an e-mail (text + HTML + ICS) or an SMS.

Rendering happens once, right before the first attempt (so a changed address or catalogue text
is picked up), and the result is stored: every retry sends the same bytes with the same Message-ID.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, formataddr
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from loket_notifications.application.ports import (
    CatalogueReader,
    Contact,
    ContactDirectory,
    DeliveryRow,
    LocationInfo,
    PermanentError,
    ProductInfo,
    Rendered,
)
from loket_notifications.application.texts import text
from loket_notifications.domain import formatting as fmt
from loket_notifications.domain import mime, sms
from loket_notifications.domain.keys import message_id, waitlist_token
from loket_notifications.domain.kinds import UPCOMING, WITH_ICS, Kind
from loket_runtime import ical
from loket_runtime.clock import now as clock_now
from loket_runtime.memo import memoized


class NoRecipient(PermanentError):
    """The resident left no address for this channel: nothing to send (not an error of ours)."""


@dataclass(frozen=True)
class ComposeSettings:
    public_base_url: str = "http://127.0.0.1:8000"
    mail_from: str = "afspraken@loket.gent"
    mail_from_name: str = "Stad Gent - Loket"
    message_domain: str = "loket.gent"
    waitlist_secret: str = "local-waitlist-secret"


@dataclass
class Content:
    language: str
    subject: str
    greeting: str
    org: str
    signoff: str
    auto: str
    paragraphs: list[str] = field(default_factory=list)
    details: list[tuple[str, str]] = field(default_factory=list)
    documents_title: str = ""
    documents: list[str] = field(default_factory=list)
    alternatives_title: str = ""
    alternatives: list[tuple[str, str]] = field(default_factory=list)
    early: str | None = None
    actions: list[tuple[str, str]] = field(default_factory=list)
    footer_links: list[tuple[str, str]] = field(default_factory=list)
    colon: str = ": "  # between a label and its value: French puts a (no-break) space before it


# Built and compiled once: auto_reload off, so no file is looked at again per message.
_ENV = Environment(
    loader=PackageLoader("loket_notifications", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=False,
    keep_trailing_newline=True,
    auto_reload=False,
)
_TEXT = _ENV.get_template("email.txt")
_HTML = _ENV.get_template("email.html")


# A storm's messages name the same few starts and links again and again: written once each.
_when = memoized(fmt.when)
_long_date = memoized(fmt.long_date)


def _link(base: str, product: str | None, location: str | None, day: str | None) -> str:
    query = {k: v for k, v in (("product", product), ("location", location), ("date", day)) if v}
    return f"{base}/?{urlencode(query)}"


_booking_link = memoized(_link)


def _boundary() -> str:
    """A MIME boundary no text of ours contains (random)."""
    return f"=_loket_{uuid.uuid4().hex}"


def with_language(url: str, language: str) -> str:
    """`url` with `lang=<language>` in its query (in place of any it had), e.g.
    `.../manage/b1?token=t` -> `.../manage/b1?token=t&lang=fr`."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "lang"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("lang", language)])))


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)


class Composer:
    def __init__(
        self,
        catalogue: CatalogueReader,
        contacts: ContactDirectory,
        settings: ComposeSettings,
        clock: Callable[[], datetime] = clock_now,
    ) -> None:
        self.catalogue = catalogue
        self.contacts = contacts
        self.settings = settings
        self.clock = clock

    # --- links ---------------------------------------------------------------------------

    async def _offer_alternatives(self, content: Content, ctx: dict[str, Any], language: str, title: str) -> None:
        """The free times in the message's context (a rejection's, or a cancellation by the city's),
        each a link to the booking page on that day, under `title`; nothing when there are none."""
        for alt in ctx.get("alternatives", []):
            alt_start = _dt(alt["start"])
            alt_location = await self.catalogue.location(alt["location_id"])
            alt_loc = alt_location.name if alt_location else alt["location_id"]
            label = f"{_when(alt_start, language)} - {alt_loc}"
            link = self.booking_link(ctx.get("product_id"), alt["location_id"], fmt.local_date(alt_start).isoformat())
            content.alternatives.append((label, link))
        if content.alternatives:
            content.alternatives_title = title

    def booking_link(self, product: str | None, location: str | None, day: str | None = None) -> str:
        return _booking_link(self.settings.public_base_url, product, location, day)

    def manage_link(self, booking_id: str, contact: Contact) -> str:
        return contact.manage_url or f"{self.settings.public_base_url}/bookings/{booking_id}"

    def unsubscribe_links(self, subscription_id: str) -> tuple[str, str]:
        token = waitlist_token(self.settings.waitlist_secret, subscription_id)
        query = urlencode({"id": subscription_id, "token": token})
        page = f"{self.settings.public_base_url}/waitlist/unsubscribe?{query}"
        one_click = f"{self.settings.public_base_url}/api/v1/waitlist/{subscription_id}/unsubscribe?token={token}"
        return page, one_click

    # --- rendering -----------------------------------------------------------------------

    async def render(self, row: DeliveryRow) -> Rendered:
        kind = Kind(row.kind)
        ctx = row.context
        product = await self.catalogue.product(ctx["product_id"]) if ctx.get("product_id") else None
        location = await self.catalogue.location(ctx["location_id"]) if ctx.get("location_id") else None
        if kind is Kind.WAITLIST:
            contact = Contact(email=ctx.get("email"), phone=None, language=row.language)
        else:
            assert row.booking_id is not None
            contact = await self.contacts.contact(row.booking_id)
        language = row.language if row.language in ("nl", "en", "fr") else (contact.language or "nl")
        if row.channel == "sms":
            if not contact.phone:
                raise NoRecipient("no phone number")
            manage = self.manage_link(row.booking_id or "", contact) if row.booking_id else None
            body = self.sms_text(kind, language, ctx, location, manage)
            return Rendered(contact.phone, body, None, body.encode())
        if not contact.email:
            raise NoRecipient("no e-mail address")
        content = await self.content(kind, language, row, contact, product, location)
        mid = message_id(row.dedupe_key, self.settings.message_domain)
        headers = self.headers(content, contact.email, mid)
        if kind is Kind.WAITLIST:
            _, one_click = self.unsubscribe_links(row.subscription_id or "")
            headers += [("List-Unsubscribe", f"<{one_click}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
        headers.append(("Content-Language", language))
        parts = mime.multipart(
            "alternative",
            [mime.text_part("plain", _TEXT.render(m=content)), mime.text_part("html", _HTML.render(m=content))],
            _boundary(),
        )
        calendar = calendar_of(kind, row)
        if calendar is not None:
            ics = self.ics(calendar, language, row, contact, product, location)
            attachment = mime.text_part(
                "calendar", ics, params={"method": calendar["method"]}, filename="appointment.ics"
            )
            parts = mime.multipart("mixed", [parts, attachment], _boundary())
        return Rendered(contact.email, content.subject, mid, mime.message(headers, parts))

    def sms_text(
        self, kind: Kind, language: str, ctx: dict[str, Any], location: LocationInfo | None, manage: str | None
    ) -> str:
        start = _dt(ctx["start"])
        where = location.name if location else ctx.get("location_id", "")
        key = "sms.reminder" if kind is Kind.REMINDER_SMS else "sms.cancellation"
        essential = text(language, key, when=fmt.when_short(start, language), location=where)
        return sms.compose(essential, [manage] if manage else [])

    async def content(
        self,
        kind: Kind,
        language: str,
        row: DeliveryRow,
        contact: Contact,
        product: ProductInfo | None,
        location: LocationInfo | None,
    ) -> Content:
        ctx = row.context

        def t(key: str, **kw: object) -> str:
            return text(language, key, **kw)

        start = _dt(ctx["start"])
        when = _when(start, language)
        values = {
            "when": when,
            "date": _long_date(start, language),
            "product": product.name.get(language, product.id) if product else ctx.get("product_id", ""),
            "location": location.name if location else ctx.get("location_id", ""),
        }
        name = " ".join(p for p in (contact.given_name, contact.family_name) if p)
        content = Content(
            language=language,
            subject=t(f"{kind.value}.subject", **values),
            greeting=t("greeting", name=name) if name else t("greeting_anonymous"),
            org=t("org"),
            signoff=t("signoff"),
            auto=t("auto"),
            colon=t("colon"),
        )
        manage = self.manage_link(row.booking_id, contact) if row.booking_id else None

        if kind is Kind.PLEASE_CONFIRM:
            hold_until = t("brussels_time", when=_when(_dt(ctx["hold_expires_at"]), language))
            content.paragraphs.append(t("please-confirm.intro", hold_until=hold_until))
            content.actions.append((t("please-confirm.action"), contact.confirm_url or manage or ""))
        elif kind is Kind.CONFIRMATION:
            content.paragraphs.append(t("confirmation.intro"))
        elif kind is Kind.REJECTION:
            content.paragraphs.append(t("rejection.intro", **values))
            await self._offer_alternatives(content, ctx, language, t("rejection.alternatives"))
            if not content.alternatives:
                content.paragraphs.append(t("rejection.none"))
            content.actions.append((t("book_again"), self.booking_link(ctx.get("product_id"), ctx.get("location_id"))))
        elif kind is Kind.CANCELLATION:
            by = ctx.get("cancelled_by", "system")
            content.paragraphs.append(t(f"cancellation.by.{by}", **values))
            if ctx.get("reason"):
                content.paragraphs.append(t("cancellation.reason", reason=ctx["reason"]))
            if by != "resident":
                content.paragraphs.append(t("cancellation.sorry"))
                # the city cancelled: the nearest free times (when the calendar looked) and the waitlist
                await self._offer_alternatives(content, ctx, language, t("rejection.alternatives"))
                content.paragraphs.append(t("cancellation.waitlist"))
            content.actions.append((t("book_again"), self.booking_link(ctx.get("product_id"), ctx.get("location_id"))))
        elif kind is Kind.RESCHEDULED:
            old_when = _when(_dt(ctx["old_start"]), language)
            content.paragraphs.append(t("rescheduled.intro", old_when=old_when, when=when))
        elif kind is Kind.EXPIRED:
            content.paragraphs.append(t("expired.intro", **values))
            content.actions.append((t("book_again"), self.booking_link(ctx.get("product_id"), ctx.get("location_id"))))
        elif kind is Kind.REMINDER:
            content.paragraphs.append(t("reminder.intro", **values))
        elif kind is Kind.WAITLIST:
            content.paragraphs.append(t("waitlist-slot.intro", **values))
            day = fmt.local_date(start).isoformat()
            content.actions.append(
                (t("waitlist-slot.action"), self.booking_link(ctx.get("product_id"), ctx.get("location_id"), day))
            )
            page, _ = self.unsubscribe_links(row.subscription_id or "")
            content.footer_links.append((t("waitlist-slot.unsubscribe"), page))

        if kind not in (Kind.REJECTION, Kind.WAITLIST):
            content.details.append((t("label_when"), t("brussels_time", when=when)))
            if location:
                content.details.append((t("label_where"), f"{location.name}, {location.address}"))
            if product:
                content.details.append((t("label_product"), product.name.get(language, product.id)))
        if kind in UPCOMING:
            if product and product.fee_eur:
                content.details.append((t("label_fee"), fmt.money(product.fee_eur, language)))
            if product and product.documents:
                content.documents_title = t("documents")
                content.documents = [d.get(language) or next(iter(d.values()), "") for d in product.documents]
            content.early = t("early")
        if manage and kind in UPCOMING:
            content.actions.append((t("manage"), manage))
        if row.booking_id:
            content.details.append((t("label_booking"), row.booking_id))
        # Every link opens its page in the message's language (the web app reads `lang` first).
        content.actions = [(label, with_language(url, language)) for label, url in content.actions]
        content.alternatives = [(label, with_language(url, language)) for label, url in content.alternatives]
        content.footer_links = [(label, with_language(url, language)) for label, url in content.footer_links]
        return content

    def headers(self, content: Content, recipient: str, mid: str) -> list[tuple[str, str]]:
        """The message's own header fields (the MIME ones come with its parts)."""
        return [
            ("Subject", content.subject),
            ("From", formataddr((self.settings.mail_from_name, self.settings.mail_from))),
            ("To", recipient),  # as SMTP carries it: adapters.smtp rewrites it per domain.addresses
            ("Date", format_datetime(self.clock())),
            ("Message-ID", mid),
            ("Auto-Submitted", "auto-generated"),
        ]

    def ics(
        self,
        calendar: dict[str, Any],
        language: str,
        row: DeliveryRow,
        contact: Contact,
        product: ProductInfo | None,
        location: LocationInfo | None,
    ) -> str:
        """The calendar object planning chose for this message (`loket_runtime.ical` builds it)."""
        ctx = row.context
        start = _dt(ctx["start"])
        end = _dt(ctx["end"]) if ctx.get("end") else start
        state = ical.EventState(calendar["status"], int(calendar["sequence"]))
        method: ical.Method = calendar["method"]
        manage = self.manage_link(row.booking_id or "", contact)
        description = ""
        if state.status != "CANCELLED":
            documents = [d.get(language, "") for d in product.documents] if product else []
            description = "\n".join(
                [text(language, "early"), *([text(language, "documents"), *documents] if documents else []), manage]
            )
        product_name = product.name.get(language, product.id) if product else ctx.get("product_id", "")
        appointment = ical.Appointment(
            booking_id=row.booking_id or "",
            start=start,
            end=end,
            summary=ical.summary_text(product_name, location.name if location else None),
            location=ical.location_text(location.name, location.address) if location else ctx.get("location_id", ""),
            description=description,
            url=manage,
        )
        name = " ".join(p for p in (contact.given_name, contact.family_name) if p) or None
        ics = ical.build(
            appointment,
            state,
            method,
            stamp=self.clock(),
            organizer=ical.Party(self.settings.mail_from, self.settings.mail_from_name),
            attendee=ical.Party(contact.email, name) if contact.email else None,
        )
        return str(ics, "utf-8")


def calendar_of(kind: Kind, row: DeliveryRow) -> dict[str, Any] | None:
    """The calendar object (METHOD, STATUS, SEQUENCE) planning chose for this e-mail, if any.

    A message planned before planning chose them carries the object sent then for its kind: an
    invitation with the confirmation and the reschedule notice, a CANCEL with the cancellation
    unless the booking never had an invitation; with today's SEQUENCE, which is never lower."""
    ctx = row.context
    if kind not in WITH_ICS:
        return None
    if "ics" in ctx:
        chosen: dict[str, Any] | None = ctx["ics"]
        return chosen
    if kind in (Kind.CONFIRMATION, Kind.RESCHEDULED):
        status = "confirmed"
    elif kind is Kind.CANCELLATION and ctx.get("had_ics", True):
        status = "cancelled"
    else:
        return None
    state = ical.event_state(status, row.version)
    assert state is not None
    return {"method": ical.method_for(state.status, email=True), "status": state.status, "sequence": state.sequence}
