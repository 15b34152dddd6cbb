"""HTTP clients: the catalogue's public API (cached), the booking service's contact endpoint, the SMS gateway."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from loket_notifications.adapters.batching import Coalescing
from loket_notifications.application.ports import (
    Contact,
    LocationInfo,
    PermanentError,
    ProductInfo,
    TransientError,
)


class _KeepAlive:
    """One HTTP client per adapter, made on first use and kept: a client per call would build a
    new TLS context and connection every time (that once took most of this service's CPU)."""

    timeout: float
    _http: httpx.AsyncClient | None = None

    def http(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(timeout=self.timeout)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


class CatalogueClient(_KeepAlive):
    """Products and locations from `GET /api/v1/products` and `/api/v1/locations`, kept for
    `ttl_seconds`; when the catalogue is unreachable the last copy is used (stale beats nothing)."""

    def __init__(self, base_url: str, ttl_seconds: float = 300, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl_seconds
        self.timeout = timeout
        self.products: dict[str, ProductInfo] = {}
        self.locations: dict[str, LocationInfo] = {}
        self.min_refresh_seconds = 5.0
        self._loaded_at: float | None = None
        self._tried_at = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        products = await self.http().get(f"{self.base_url}/api/v1/products")
        locations = await self.http().get(f"{self.base_url}/api/v1/locations")
        products.raise_for_status()
        locations.raise_for_status()
        self.products = {p["id"]: _product(p) for p in products.json()}
        self.locations = {
            loc["id"]: LocationInfo(loc["id"], loc.get("name", loc["id"]), loc.get("address", ""))
            for loc in locations.json()
        }
        self._loaded_at = time.monotonic()

    async def _ensure(self, known: bool) -> None:
        """Refresh when stale, or when an id is unknown (a new product), at most every few seconds."""
        now = time.monotonic()
        if self._loaded_at is not None and now - self._loaded_at <= self.ttl and known:
            return
        if self._loaded_at is not None and now - self._tried_at < self.min_refresh_seconds:
            return
        async with self._lock:
            if self._loaded_at is not None and time.monotonic() - self._tried_at < self.min_refresh_seconds:
                return
            self._tried_at = time.monotonic()
            try:
                await self.refresh()
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                if self._loaded_at is None:
                    raise TransientError(f"catalogue unavailable: {exc!r}") from exc

    async def product(self, product_id: str) -> ProductInfo | None:
        await self._ensure(product_id in self.products)
        return self.products.get(product_id)

    async def location(self, location_id: str) -> LocationInfo | None:
        await self._ensure(location_id in self.locations)
        return self.locations.get(location_id)

    def cached_product(self, product_id: str) -> ProductInfo | None:
        return self.products.get(product_id)


def _product(p: dict[str, Any]) -> ProductInfo:
    return ProductInfo(
        id=p["id"],
        name=dict(p.get("name") or {}),
        documents=list(p.get("documents") or []),
        fee_eur=float(p.get("fee_eur") or 0),
        reminders=p.get("reminders"),
    )


class BookingContacts(_KeepAlive):
    """Contacts from the booking service, which owns personal data and hands it out only to internal
    callers (`X-Internal-Token`), right when a message is sent.

    Asked in batches: every `contact()` call made while the event loop runs one round (the sender
    composes a whole claimed batch at once) is answered by one
    `POST {booking_url}/internal/bookings/contacts` `{"ids": [...]}` → `{"contacts": {id: {...}}}`,
    at most `batch_size` ids per call. One call per message used to cost the booking service a
    request each (its CPU is the storm's bottleneck). An id missing from the answer is unknown or
    erased: PermanentError for that message alone; the call failing is a TransientError for each."""

    def __init__(self, base_url: str, token: str, timeout: float = 5.0, batch_size: int = 200) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.asked: Coalescing[str, Contact] = Coalescing(self._contacts, batch_size)

    async def contact(self, booking_id: str) -> Contact:
        return await self.asked(booking_id)

    async def _contacts(self, booking_ids: list[str]) -> list[Contact | BaseException]:
        found = await self._fetch(list(dict.fromkeys(booking_ids)))
        return [
            _contact(found[booking_id])
            if booking_id in found
            else PermanentError(f"booking {booking_id} is unknown to the booking service")
            for booking_id in booking_ids
        ]

    async def _fetch(self, booking_ids: list[str]) -> dict[str, dict[str, Any]]:
        try:
            response = await self.http().post(
                f"{self.base_url}/internal/bookings/contacts",
                json={"ids": booking_ids},
                headers={"X-Internal-Token": self.token},
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"booking service unreachable: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code in (401, 403, 404, 408, 429):
            # 404: a booking service without the batch route yet (deployed in the wrong order): wait
            raise TransientError(f"booking service answered {response.status_code}")
        if response.status_code != 200:
            raise PermanentError(f"booking service answered {response.status_code}")
        contacts: dict[str, dict[str, Any]] = response.json()["contacts"]
        return contacts


def _contact(body: dict[str, Any]) -> Contact:
    return Contact(
        email=body.get("email") or None,
        phone=body.get("phone") or None,
        language=body.get("language"),
        manage_url=body.get("manage_url"),
        confirm_url=body.get("confirm_url"),
        given_name=body.get("given_name"),
        family_name=body.get("family_name"),
    )


class HttpSmsGateway(_KeepAlive):
    """A provider adapter: `POST {url}` with JSON `{"to", "body"}` (and a bearer token if set); 2xx accepted.
    A `reference` header carries our notification id, for providers that deduplicate on it."""

    def __init__(self, url: str, token: str | None = None, sender: str | None = None, timeout: float = 10.0) -> None:
        self.url = url
        self.token = token
        self.sender = sender
        self.timeout = timeout

    async def send(self, to: str, body: str, reference: str) -> None:
        headers = {"Idempotency-Key": reference}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload: dict[str, str] = {"to": to, "body": body}
        if self.sender:
            payload["from"] = self.sender
        try:
            response = await self.http().post(self.url, json=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"SMS gateway unreachable: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TransientError(f"SMS gateway answered {response.status_code}")
        if response.status_code >= 400:
            raise PermanentError(f"SMS gateway refused: {response.status_code} {response.text[:200]}")
