"""What every service process runs: its database pool, the outbox relay, its consumers and its HTTP app.

A service builds a `ServiceRuntime`, registers its consumers and background tasks, and passes it
to `create_app`; the app's lifespan starts and stops everything in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from aiokafka import AIOKafkaProducer, TopicPartition
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loket_runtime import clock
from loket_runtime.auth import JwtVerifier
from loket_runtime.catalogue import CatalogueView, catalogue_consumer, load_catalogue_snapshot
from loket_runtime.consumer import Handler, PartitionBatchConsumer
from loket_runtime.db import create_pool, migrate
from loket_runtime.inputs import install_input_guards
from loket_runtime.kafka import make_producer
from loket_runtime.logging import bind, configure_logging, get_logger, unbind
from loket_runtime.outbox import OutboxRelay
from loket_runtime.problems import install_problem_handlers, problem_response, too_large
from loket_runtime.settings import ServiceSettings

log = get_logger(__name__)

HTTP_REQUESTS = Counter("loket_http_requests_total", "HTTP requests", ["service", "method", "status"])
HTTP_LATENCY = Histogram("loket_http_request_seconds", "HTTP request latency", ["service", "method"])

ConsumerFactory = Callable[[asyncpg.Pool], PartitionBatchConsumer]
TaskFactory = Callable[["ServiceRuntime"], Awaitable[None]]


class ServiceRuntime:
    def __init__(self, settings: ServiceSettings, migrations_dir: Path | None) -> None:
        self.settings = settings
        self.migrations_dir = migrations_dir
        self.consumer_factories: list[ConsumerFactory] = []
        self.task_factories: list[TaskFactory] = []
        self.startup_hooks: list[TaskFactory] = []
        self.consumers: list[PartitionBatchConsumer] = []
        self._pool: asyncpg.Pool | None = None
        self._producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = 0.0
        self.crashes: dict[str, int] = {}

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "runtime not started"
        return self._pool

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "runtime not started"
        return self._producer

    def add_consumer(self, factory: ConsumerFactory) -> None:
        self.consumer_factories.append(factory)

    def consume(self, group_id: str, topics: list[str], handlers: dict[str, Handler], **options: Any) -> None:
        """A consumer group of this service, with the broker and batch size from the settings."""
        s = self.settings
        options.setdefault("batch_size", s.consumer_batch_size)
        options.setdefault("fetch_max_wait_ms", s.consumer_fetch_max_wait_ms)
        self.add_consumer(
            lambda pool: PartitionBatchConsumer(
                pool=pool, bootstrap=s.kafka_bootstrap, group_id=group_id, topics=topics, handlers=handlers, **options
            )
        )

    def add_task(self, factory: TaskFactory) -> None:
        self.task_factories.append(factory)

    def add_startup(self, hook: TaskFactory) -> None:
        """Run once after the database is ready and before any consumer or task starts."""
        self.startup_hooks.append(hook)

    def keep_catalogue_view(self, view: CatalogueView) -> None:
        """Keep `view` current from the catalogue topic: loaded from this service's table first,
        then updated by a consumer, so no event applied in memory is overwritten by the load."""

        positions: dict[TopicPartition, int] = {}

        async def load(rt: ServiceRuntime) -> None:
            snapshot, offsets = await load_catalogue_snapshot(rt.pool)
            view.replace_with(snapshot)
            positions.clear()
            positions.update(offsets)

        s = self.settings
        self.add_startup(load)
        self.add_consumer(
            lambda pool: catalogue_consumer(
                pool,
                s.kafka_bootstrap,
                view,
                positions,
                client_id=f"{s.service_name}-catalogue-{s.instance_id}",
                lag_group=f"{s.service_name}-catalogue-view",  # lag for the tools; assigned, never shared
            )
        )

    async def start(self) -> None:
        s = self.settings
        await migrate(s.database_url, self.migrations_dir)
        self._pool = await create_pool(s.database_url, min_size=2, max_size=20)
        for hook in self.startup_hooks:
            await hook(self)

        def producer() -> AIOKafkaProducer:
            return make_producer(s.kafka_bootstrap, f"{s.service_name}-{s.instance_id}", s.kafka_linger_ms)

        self._producer = producer()
        await self._producer.start()
        self.relay = OutboxRelay(
            s.database_url,
            self._producer,
            s.outbox_batch_size,
            s.outbox_poll_seconds,
            name=f"{s.service_name}-outbox",
            producer_factory=producer,
            max_record_bytes=s.outbox_max_record_bytes,
            missing_topic_grace_seconds=s.outbox_missing_topic_grace_seconds,
        )
        if s.outbox_relay:
            self._spawn("outbox-relay", self.relay.run)
        for factory in self.consumer_factories:
            consumer = factory(self._pool)
            self.consumers.append(consumer)
            self._spawn(f"consumer-{consumer.group_id}", consumer.run)
        for task_factory in self.task_factories:
            self._spawn(getattr(task_factory, "__name__", "task"), functools.partial(task_factory, self))
        self.started_at = time.monotonic()

    def _spawn(self, name: str, make: Callable[[], Awaitable[None]]) -> None:
        async def keep_running() -> None:
            # A background loop that died would silently stop the service's work: log and restart it.
            while True:
                try:
                    await make()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.crashes[name] = self.crashes.get(name, 0) + 1
                    log.exception("background task crashed, restarting", task=name)
                    await asyncio.sleep(1.0)

        self._tasks.append(asyncio.create_task(keep_running(), name=name))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        producers = {id(p): p for p in (self._producer, self.relay.producer if self.relay else None) if p is not None}
        for producer in producers.values():  # the relay makes a new one after a refused batch
            with contextlib.suppress(Exception):
                await producer.stop()
        if self._pool is not None:
            await self._pool.close()

    async def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            await asyncio.wait_for(self.pool.fetchval("SELECT 1"), 2.0)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {exc!r}"
        checks["kafka"] = await self.kafka_reachable()
        checks["background_task_restarts"] = dict(self.crashes)
        with contextlib.suppress(Exception):
            row = await self.pool.fetchrow(
                "SELECT (SELECT count(*) FROM outbox) AS pending, (SELECT count(*) FROM outbox_parked) AS parked"
            )
            checks["outbox"] = {"pending": row["pending"], "parked": row["parked"]}
        checks["consumers"] = {
            c.group_id: sorted(f"{tp.topic}/{tp.partition}" for tp in c.assigned) for c in self.consumers
        }
        checks["ready"] = checks["database"] == "ok" and checks["kafka"] == "ok"
        return checks

    async def kafka_reachable(self, within: float = 1.0) -> str:
        """Is "ok" when a bootstrap broker accepts a connection `within` seconds (issue 15: `/readyz`
        fails while Kafka is unreachable, as it does while PostgreSQL is), else the reasons."""
        reasons = []
        for server in self.settings.kafka_bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1", int(port)), within)
            except (OSError, ValueError) as exc:  # refused, unreachable, timed out, no port
                reasons.append(f"{server.strip()}: {exc!r}")
                continue
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return "ok"
        return "error: " + "; ".join(reasons)


class ObserveRequests:
    """Latency (to the response's start, so a stream counts until its first byte) and status of
    every HTTP request, and the caller's correlation id bound to the logs meanwhile. Plain ASGI:
    Starlette's `BaseHTTPMiddleware` cost about two thirds of a small request's throughput."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_id = headers.get(b"x-correlation-id") or headers.get(b"x-request-id")
        correlation_id = raw_id.decode("latin-1") if raw_id else None
        method = scope["method"]
        started = time.perf_counter()
        answered = False

        def observe(status: int) -> None:
            nonlocal answered
            answered = True
            HTTP_LATENCY.labels(self.service, method).observe(time.perf_counter() - started)
            HTTP_REQUESTS.labels(self.service, method, str(status)).inc()

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                observe(message["status"])
            await send(message)

        if correlation_id:
            bind(correlation_id=correlation_id)
        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            if not answered:
                observe(500)
            raise
        finally:
            if correlation_id:
                unbind("correlation_id")


class LimitBody:
    """Request bodies are bounded where they enter: a declared length above `max_bytes` is refused
    at once, an undeclared one (chunked) as soon as it passes the bound, both with a 413
    problem+json, before anything is decoded or stored."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)  # no route reads a body there (and reads stay lean)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            await problem_response(too_large(int(declared), self.max_bytes), Request(scope))(scope, receive, send)
            return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(None, self.max_bytes)
            return message

        await self.app(scope, bounded, send)


def create_app(runtime: ServiceRuntime, title: str, **fastapi_kwargs: Any) -> FastAPI:
    settings = runtime.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.service_name, settings.log_level)
        await runtime.start()
        log.info("service started", http_port=settings.http_port)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, lifespan=lifespan, **fastapi_kwargs)
    app.state.runtime = runtime
    app.state.jwt_verifier = JwtVerifier(settings.oidc_jwks_url, settings.oidc_issuer, settings.oidc_audience)
    install_problem_handlers(app)
    install_input_guards(app)  # inside LimitBody: a body is bounded before it is read

    app.add_middleware(LimitBody, max_bytes=settings.http_max_body_bytes)
    app.add_middleware(ObserveRequests, service=settings.service_name)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": settings.service_name}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        return JSONResponse(checks, status_code=200 if checks["ready"] else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run one service process (uvloop + httptools when installed). A test clock configured where
    LOKET_ENVIRONMENT=production stops it here, before it serves anything (`clock.ClockRefused`)."""
    clock.now()
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        # Longer than any proxy in front keeps an idle connection (the local gateway 30 s, ingresses
        # 60 s): else the server may close one just as the proxy sends on it, and that request gets
        # "Server disconnected" (a 502), which a proxy cannot safely repeat for a POST.
        timeout_keep_alive=75,
    )
