"""What the application needs from the outside world. Adapters implement these; tests fake them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class TransientError(Exception):
    """Worth retrying later: a gateway or server is down or refusing for now."""


class PermanentError(Exception):
    """Will never succeed (unknown booking, address refused for good): fail at once."""


@dataclass(frozen=True)
class Contact:
    """How to reach the resident of a booking, from the booking service (which owns personal data)."""

    email: str | None
    phone: str | None
    language: str | None = None
    manage_url: str | None = None
    confirm_url: str | None = None
    given_name: str | None = None
    family_name: str | None = None


@dataclass(frozen=True)
class ProductInfo:
    id: str
    name: dict[str, str]
    documents: list[dict[str, str]] = field(default_factory=list)
    fee_eur: float = 0
    reminders: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class LocationInfo:
    id: str
    name: str
    address: str


class ContactDirectory(Protocol):
    async def contact(self, booking_id: str) -> Contact:
        """Raise PermanentError for an unknown booking, TransientError when the service is unreachable."""
        ...


class CatalogueReader(Protocol):
    async def product(self, product_id: str) -> ProductInfo | None: ...

    async def location(self, location_id: str) -> LocationInfo | None: ...

    def cached_product(self, product_id: str) -> ProductInfo | None:
        """Without I/O: what the cache holds (None if nothing)."""
        ...


class MailTransport(Protocol):
    async def send(self, sender: str, recipients: list[str], message: bytes) -> None: ...


class SmsGateway(Protocol):
    async def send(self, to: str, body: str, reference: str) -> None: ...


@dataclass(frozen=True)
class NewDelivery:
    id: str
    dedupe_key: str
    booking_id: str | None
    subscription_id: str | None
    kind: str
    version: int
    channel: str
    language: str
    context: dict[str, Any]
    due_at: datetime
    not_after: datetime | None
    skipped: str | None = None  # planned as 'skipped' with this reason (finished at due_at), never sent


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    dedupe_key: str
    booking_id: str | None
    subscription_id: str | None
    kind: str
    version: int
    channel: str
    language: str
    context: dict[str, Any]
    status: str
    due_at: datetime
    not_after: datetime | None
    attempts: int
    message_id: str | None
    recipient: str | None
    payload: bytes | None
    last_error: str | None = None
    faults: int = 0  # failures of the message's own; outages of other parts are never counted


@dataclass(frozen=True)
class Rendered:
    recipient: str
    subject: str
    message_id: str | None
    payload: bytes  # e-mail: the RFC 5322 bytes; SMS: the body as UTF-8


class Store(Protocol):
    """The service's own database (adapters.postgres.PostgresStore). `conn` is a connection inside the
    caller's transaction, or a pool for a statement on its own."""

    async def booking(self, conn: Any, booking_id: str, lock: bool = False) -> Any: ...

    async def save_booking(self, conn: Any, view: Any) -> None: ...

    async def void_pending(
        self, conn: Any, booking_id: str, below_version: int, kinds: list[str], reason: str, now: datetime
    ) -> int: ...

    async def add_deliveries(self, conn: Any, deliveries: list[NewDelivery]) -> int: ...

    async def claim_due(self, pool: Any, now: datetime, limit: int, lease: Any, claimer: str) -> list[DeliveryRow]: ...

    async def release(self, pool: Any, delivery_ids: list[str]) -> None: ...

    async def save_rendered(
        self, pool: Any, delivery_id: str, recipient: str, subject: str, message_id: str | None, payload: bytes
    ) -> None: ...

    async def retry_later(self, pool: Any, delivery_id: str, at: datetime, error: str, fault: bool = False) -> None: ...

    async def finish(
        self, pool: Any, delivery_id: str, status: str, at: datetime, error: str | None, event: Any, key: str
    ) -> bool: ...

    async def subscription_active(self, pool: Any, subscription_id: str) -> bool: ...

    async def waitlist_matches(
        self, conn: Any, products: list[str], location_id: str, day: Any, limit: int
    ) -> list[dict[str, Any]]: ...
