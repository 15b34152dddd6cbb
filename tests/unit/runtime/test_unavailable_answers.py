"""Issue 15, part 5: when PostgreSQL or Kafka is unreachable, every service answers 503
problem+json with Retry-After (before: `500 text/plain` from Starlette), and says how to repeat
a POST safely (the same Idempotency-Key)."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka import errors as kafka_errors
from fastapi import FastAPI
from fastapi.testclient import TestClient

from loket_runtime.problems import install_problem_handlers

OUTAGES: dict[str, Exception] = {
    "refused": ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5433)"),
    "multiple": OSError("Multiple exceptions: [Errno 111] Connect call failed"),
    "timeout": TimeoutError(),
    "starting": asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    "shutdown": asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    "lost": asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    "pool": asyncpg.exceptions.InterfaceError("pool is closing"),
    "dropped": asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    "kafka": kafka_errors.KafkaConnectionError("No connection to node"),
    "brokers": kafka_errors.NoBrokersAvailable(),
}


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/raise/{name}")
    async def raise_(name: str) -> None:
        raise OUTAGES[name]

    @app.get("/bug")
    async def bug() -> None:
        raise ValueError("a bug, not an outage")

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("name", sorted(OUTAGES))
def test_an_outage_answers_503_problem_json_with_retry_after(client: TestClient, name: str) -> None:
    response = client.post(f"/raise/{name}")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["status"] == 503 and body["type"].endswith("/unavailable")
    assert "Idempotency-Key" in body["detail"] and body["retry_after"] == int(response.headers["retry-after"])
    assert "5433" not in response.text  # no internals


def test_a_bug_is_not_passed_off_as_an_outage(client: TestClient) -> None:
    assert client.get("/bug").status_code == 500
