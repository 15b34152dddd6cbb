"""Issue 15, part 5: `/readyz` fails while Kafka is unreachable, as it does while PostgreSQL is:
`ServiceRuntime.kafka_reachable` names the bootstrap brokers it could not reach."""

from __future__ import annotations

import asyncio
import socket

from loket_runtime.service import ServiceRuntime
from loket_runtime.settings import ServiceSettings


async def test_readiness_names_kafka_unreachable() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    live_port = server.sockets[0].getsockname()[1]
    try:
        down = ServiceRuntime(ServiceSettings(kafka_bootstrap=f"127.0.0.1:{dead_port}"), None)
        assert (await down.kafka_reachable()).startswith("error: 127.0.0.1:")
        up = ServiceRuntime(ServiceSettings(kafka_bootstrap=f"127.0.0.1:{dead_port},127.0.0.1:{live_port}"), None)
        assert await up.kafka_reachable() == "ok"
    finally:
        server.close()
