"""The envelope every event travels in: CloudEvents 1.0, Kafka binding, binary mode.

The body of a Kafka record is the event's JSON data; the attributes are headers
(`ce_id`, `ce_type`, ...). Operations tools that speak CloudEvents read them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from loket_contracts.ids import new_event_id

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

KafkaHeaders = list[tuple[str, bytes]]


class EnvelopeError(ValueError):
    """A Kafka record that is not a readable CloudEvent."""


class Envelope(BaseModel):
    """One event with its CloudEvents attributes; `data` is the event's JSON object."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: str(new_event_id()))
    type: str
    source: str
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    schemaversion: int = 1
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None
    data: dict[str, Any]

    def kafka_headers(self) -> KafkaHeaders:
        headers: KafkaHeaders = [
            ("ce_specversion", SPEC_VERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_type", self.type.encode()),
            ("ce_source", self.source.encode()),
            ("ce_time", self.time.astimezone(UTC).isoformat().encode()),
            ("ce_schemaversion", str(self.schemaversion).encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        for name in ("subject", "correlationid", "causationid"):
            value = getattr(self, name)
            if value is not None:
                headers.append((f"ce_{name}", value.encode()))
        if self.traceparent:
            headers.append(("traceparent", self.traceparent.encode()))
        return headers

    def kafka_value(self) -> bytes:
        # orjson: compact, UTF-8, and ~20x faster than the standard library on a decision's body.
        return orjson.dumps(self.data, default=str)

    @classmethod
    def from_kafka(cls, headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> Envelope:
        """Read a record in binary mode; raise EnvelopeError for anything unreadable."""
        attrs: dict[str, str] = {}
        for name, raw in headers or ():
            try:
                text = raw.decode()
            except (UnicodeDecodeError, AttributeError) as exc:
                raise EnvelopeError(f"header {name!r} is not UTF-8") from exc
            if name.startswith("ce_"):
                attrs[name[3:]] = text
            elif name == "traceparent":
                attrs["traceparent"] = text
        for required in ("id", "type", "source"):
            if required not in attrs:
                raise EnvelopeError(f"missing CloudEvents header ce_{required}")
        if value is None:
            raise EnvelopeError("record has no body")
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError as exc:  # invalid UTF-8 included
            raise EnvelopeError(f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise EnvelopeError("body is not a JSON object")
        try:
            return cls(
                id=attrs["id"],
                type=attrs["type"],
                source=attrs["source"],
                subject=attrs.get("subject"),
                time=datetime.fromisoformat(attrs["time"]) if "time" in attrs else datetime.now(UTC),
                schemaversion=int(attrs.get("schemaversion", "1")),
                correlationid=attrs.get("correlationid"),
                causationid=attrs.get("causationid"),
                traceparent=attrs.get("traceparent"),
                data=data,
            )
        except ValueError as exc:
            raise EnvelopeError(f"bad CloudEvents attribute: {exc}") from exc
