"""Idempotency: one message per (booking, kind, booking version), and identifiers derived from it.

The booking version is the booking's reschedule sequence (0 until the first reschedule, then the
`sequence` of each `booking-rescheduled`): a confirmation is sent once, a reminder once per time
the appointment is at, a reschedule notice once per reschedule. Everything derived from the key
is stable, so a retry after a crash reuses the same notification id and the same Message-ID.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

NAMESPACE = uuid.UUID("5f7c1f7e-6a55-4a7b-9a39-0c1d9e0f4a11")


def booking_key(booking_id: str, kind: str, version: int) -> str:
    return f"booking/{booking_id}/{kind}/v{version}"


def waitlist_key(subscription_id: str, location_id: str, desk_id: str, start_iso: str) -> str:
    """One message per subscriber per released desk-time."""
    return f"waitlist/{subscription_id}/{location_id}/{desk_id}/{start_iso}"


def notification_id(dedupe_key: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, dedupe_key)


def message_id(dedupe_key: str, domain: str) -> str:
    """RFC 5322 Message-ID, the same for every attempt of one message."""
    return f"<{notification_id(dedupe_key)}@{domain}>"


def waitlist_token(secret: str, subscription_id: str) -> str:
    """The unsubscribe token of a waitlist subscription: an HMAC, so nothing secret is stored."""
    digest = hmac.new(secret.encode(), f"waitlist:{subscription_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def token_matches(secret: str, subscription_id: str, token: str) -> bool:
    return hmac.compare_digest(waitlist_token(secret, subscription_id), token)
