"""Identifiers: UUIDv7 (time-ordered) for events and bookings."""

from __future__ import annotations

import uuid

import uuid_utils


def new_event_id() -> uuid.UUID:
    return uuid.UUID(str(uuid_utils.uuid7()))
