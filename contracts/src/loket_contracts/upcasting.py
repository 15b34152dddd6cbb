"""Upcasters: turn a stored or received old version of an event into the current one.

Register `(type, from_version) -> function(data) -> data` for each change of shape. Reading
applies them in a chain until the current version, so consumers only ever see current models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loket_contracts.events import EVENT_TYPES, Event

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UnknownEventType(LookupError):
    pass


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise UnknownEventType(event_type)
    while version < model.VERSION:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise UnknownEventType(f"{event_type} v{version}: no upcaster to v{version + 1}")
        data = step(data)
        version += 1
    return data


def parse_event(event_type: str, version: int, data: dict[str, Any]) -> Event:
    """Validate `data` as the current model of `event_type` (raises pydantic.ValidationError)."""
    current = upcast(event_type, version, data)
    return EVENT_TYPES[event_type].model_validate(current)
