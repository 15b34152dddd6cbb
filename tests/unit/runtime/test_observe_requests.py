"""Every HTTP request of a service is counted by status and timed, and the caller's correlation
id is bound to the logs while it runs (operations follow one request across the services)."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from loket_runtime.logging import get_logger
from loket_runtime.service import ObserveRequests

SERVICE = "observe-test"


def count(status: str) -> float:
    value = REGISTRY.get_sample_value(
        "loket_http_requests_total", {"service": SERVICE, "method": "GET", "status": status}
    )
    return value or 0.0


def app() -> FastAPI:
    api = FastAPI()
    api.add_middleware(ObserveRequests, service=SERVICE)

    @api.get("/ok")
    async def ok() -> dict[str, object]:
        import structlog

        return {"bound": structlog.contextvars.get_contextvars().get("correlation_id")}

    @api.get("/missing")
    async def missing() -> None:
        raise HTTPException(404)

    @api.get("/broken")
    async def broken() -> None:
        get_logger(__name__).info("about to fail")
        raise RuntimeError("boom")

    return api


def test_requests_are_counted_by_status_and_the_correlation_id_is_bound() -> None:
    client = TestClient(app(), raise_server_exceptions=False)
    before = {s: count(s) for s in ("200", "404", "500")}
    assert client.get("/ok", headers={"X-Correlation-Id": "c-123"}).json() == {"bound": "c-123"}
    assert client.get("/ok", headers={"X-Request-Id": "r-9"}).json() == {"bound": "r-9"}
    assert client.get("/ok").json() == {"bound": None}  # nothing left over from the last request
    assert client.get("/missing").status_code == 404
    assert client.get("/broken").status_code == 500
    assert count("200") == before["200"] + 3
    assert count("404") == before["404"] + 1
    assert count("500") == before["500"] + 1
    latency = REGISTRY.get_sample_value("loket_http_request_seconds_count", {"service": SERVICE, "method": "GET"})
    assert latency == 5
