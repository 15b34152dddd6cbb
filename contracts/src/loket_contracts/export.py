"""Export the JSON Schema of every event and an AsyncAPI 3 document of the topics.

    python -m loket_contracts.export [OUT_DIR]     # default: contracts/ beside this package

A test regenerates them in memory and fails when the committed files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from loket_contracts.envelope import Envelope
from loket_contracts.events import EVENT_TYPES
from loket_contracts.topics import ALL_TOPICS

DEFAULT_OUT = Path(__file__).resolve().parents[2]


def event_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, one per event type and version."""
    schemas: dict[str, dict[str, Any]] = {}
    for event_type, model in sorted(EVENT_TYPES.items()):
        schema = model.model_json_schema()
        schema["$id"] = f"urn:loket:event:{event_type}:v{model.VERSION}"
        schemas[f"{event_type}.v{model.VERSION}.json"] = schema
    return schemas


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in ALL_TOPICS:
        channel_messages = {}
        for model in topic.events:
            name = model.TYPE
            messages[name] = {
                "name": name,
                "title": name,
                "summary": (model.__doc__ or name).strip().splitlines()[0],
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/cloudevents-headers"},
                "payload": {"$ref": f"schemas/{name}.v{model.VERSION}.json"},
                "bindings": {"kafka": {"key": {"type": "string", "description": topic.key}}},
            }
            channel_messages[name] = {"$ref": f"#/components/messages/{name}"}
        channels[topic.name] = {
            "address": topic.name,
            "description": topic.description,
            "messages": channel_messages,
            "bindings": {
                "kafka": {
                    "partitions": topic.partitions,
                    "topicConfiguration": {
                        "cleanup.policy": [topic.cleanup_policy],
                        "retention.ms": topic.retention_ms,
                    },
                }
            },
        }
        operations[f"publish-{topic.name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic.name}"},
            "summary": f"Produced by {topic.producer}",
        }
    headers_schema = {
        "type": "object",
        "required": ["ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time"],
        "properties": {f"ce_{name}": {"type": "string"} for name in Envelope.model_fields if name != "data"}
        | {"ce_specversion": {"type": "string", "const": "1.0"}, "traceparent": {"type": "string"}},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Loket events",
            "version": "1.0.0",
            "description": "Events between Loket's services, CloudEvents 1.0 Kafka binding (binary mode).",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {"cloudevents-headers": headers_schema}},
    }


def rendered() -> dict[str, str]:
    """Relative path -> file text of everything the export writes."""
    files = {f"schemas/{name}": _dump(schema) for name, schema in event_schemas().items()}
    files["asyncapi.json"] = _dump(asyncapi())
    return files


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> None:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    for relative, text in rendered().items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(f"wrote {len(rendered())} files under {out}")


if __name__ == "__main__":
    main(sys.argv)
