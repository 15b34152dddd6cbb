"""The ceiling of the availability figure on this machine: minimal servers that answer every request
with prebuilt bytes of the real answer (plain, or gzip when the client accepts it), measured with
the benchmark's own client (`calendar_figs._availability`, 50 concurrent aiohttp clients).

    uv run python -m bench.availability_ceiling --answer /tmp/answer.json [--requests 5000]

`--answer` is a saved availability answer (e.g. `curl .../api/v1/availability?...`); without it a
synthetic answer of the same shape and size is built. Whatever Loket does per request, it cannot
beat these servers: they do nothing but write bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gzip
import json
import multiprocessing
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from bench import REPO
from bench.calendar_figs import _availability


def synthetic_answer() -> bytes:
    brussels = dt.timezone(dt.timedelta(hours=1))
    slots = []
    day = dt.date.today()
    locations = [f"location-{n:02d}" for n in range(12)]
    while len(slots) < 9066:
        for loc in locations:
            for minute in range(9 * 60, 16 * 60, 10):
                start = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), brussels)
                end = start + dt.timedelta(minutes=20)
                slots.append({"start": start.isoformat(), "end": end.isoformat(), "location": loc})
        day += dt.timedelta(days=1)
    return json.dumps({"product": "residence-card", "location": None, "slots": slots[:9066]}).encode()


def _head(length: int, encoding: str | None) -> bytes:
    lines = [
        "HTTP/1.1 200 OK",
        "content-type: application/json",
        f"content-length: {length}",
        "vary: accept-encoding",
        *([f"content-encoding: {encoding}"] if encoding else []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def wants_gzip(accept_encoding: str) -> bool:
    return "gzip" in accept_encoding.lower()


# --- the servers (each runs in a process of its own) ---------------------------------------------


def serve_asyncio(port: int, plain: bytes, packed: bytes) -> None:
    """A bare asyncio protocol: reads a request head, writes a prebuilt response. The floor."""
    import uvloop

    plain_response = _head(len(plain), None) + plain
    gzip_response = _head(len(packed), "gzip") + packed

    class Proto(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t: Any = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while b"\r\n\r\n" in self.buf:
                head, self.buf = self.buf.split(b"\r\n\r\n", 1)
                self.t.write(gzip_response if b"gzip" in head.lower() else plain_response)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Proto, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def serve_aiohttp(port: int, plain: bytes, packed: bytes) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        if wants_gzip(request.headers.get("Accept-Encoding", "")):
            return web.Response(
                body=packed,
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
            )
        return web.Response(body=plain, headers={"Content-Type": "application/json", "Vary": "Accept-Encoding"})

    app = web.Application()
    app.router.add_get("/api/v1/availability", handler)
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_uvicorn(port: int, plain: bytes, packed: bytes) -> None:
    """uvicorn (uvloop + httptools, as the services run) with a raw ASGI app: no framework at all."""
    import uvicorn

    plain_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(plain)).encode())]
    gzip_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(packed)).encode()),
        (b"content-encoding", b"gzip"),
    ]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        accept = next((v for k, v in scope["headers"] if k == b"accept-encoding"), b"")
        use_gzip = b"gzip" in accept
        await send(
            {"type": "http.response.start", "status": 200, "headers": gzip_headers if use_gzip else plain_headers}
        )
        await send({"type": "http.response.body", "body": packed if use_gzip else plain})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _fastapi_app(plain: bytes, packed: bytes, middleware: bool) -> Any:
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response

    app = FastAPI()

    async def availability(request: Request) -> Response:
        if wants_gzip(request.headers.get("accept-encoding", "")):
            return Response(packed, media_type="application/json", headers={"Content-Encoding": "gzip"})
        return Response(plain, media_type="application/json")

    availability.__annotations__ = {"request": Request, "return": Response}
    app.add_api_route("/api/v1/availability", availability, methods=["GET"])
    if middleware:  # what every Loket service has (loket_runtime.service.create_app): one BaseHTTPMiddleware

        async def observe(request: Request, call_next: Any) -> Response:
            response: Response = await call_next(request)
            return response

        app.middleware("http")(observe)
    return app


def serve_fastapi(port: int, plain: bytes, packed: bytes) -> None:
    """FastAPI with a raw Response (no response_model), no middleware."""
    import uvicorn

    uvicorn.run(_fastapi_app(plain, packed, False), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_fastapi_mw(port: int, plain: bytes, packed: bytes) -> None:
    """The same behind one `@app.middleware("http")`, as the services are."""
    import uvicorn

    uvicorn.run(_fastapi_app(plain, packed, True), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_edge(port: int, plain: bytes, packed: bytes) -> None:
    """Loket's edge (nginx with deploy/edge/loket.conf.template, limits on) in front of the bare
    uvicorn server (another process): the least a request through the edge can cost."""
    import signal
    import subprocess
    import tempfile

    from loket_stack import edge

    upstream = multiprocessing.get_context("spawn").Process(target=serve_uvicorn, args=(port + 1, plain, packed))
    upstream.start()
    folder = Path(tempfile.mkdtemp())
    conf = edge.write_config(
        folder,
        listen=f"127.0.0.1:{port}",
        upstreams={name: f"127.0.0.1:{port + 1}" for name in edge.UPSTREAMS},
        web_root=REPO / "web",
    )
    nginx = subprocess.Popen(edge.command(conf))
    try:
        # How the benchmark ends a server (Process.terminate); blocked after the children started,
        # which would inherit the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        signal.sigwait({signal.SIGTERM})
    finally:
        nginx.terminate()
        nginx.wait(10)
        upstream.terminate()


SERVERS = {
    "asyncio": serve_asyncio,
    "aiohttp": serve_aiohttp,
    "uvicorn": serve_uvicorn,
    "fastapi": serve_fastapi,
    "fastapi_mw": serve_fastapi_mw,
    "edge": serve_edge,
}


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def wait_quiet(limit_pct: float, timeout: float = 180) -> float:
    """Wait (at most `timeout` s) until other processes use less than limit_pct of the machine
    (psutil, 100 = every core) over one second; returns the last figure. Others share this box."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        busy = psutil.cpu_percent(interval=1.0)
        if busy < limit_pct or time.monotonic() > deadline:
            return busy


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--answer", type=Path)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--port", type=int, default=int(os.environ.get("LOKET_BENCH_PORT_BASE", "23000")) + 150)
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--modes", default="inflate,raw,identity")
    p.add_argument("--out", type=Path)
    p.add_argument("--quiet", type=float, default=15.0, help="wait until the box is busy below this %% first")
    a = p.parse_args()
    plain = a.answer.read_bytes() if a.answer else synthetic_answer()
    packed = gzip.compress(plain, 6, mtime=0)
    results: dict[str, Any] = {
        "answer_bytes": len(plain),
        "gzip_bytes": len(packed),
        "load_average_start": os.getloadavg(),
        "runs": {},
    }
    for name in a.servers.split(","):
        proc = multiprocessing.get_context("spawn").Process(target=SERVERS[name], args=(a.port, plain, packed))
        proc.start()
        try:
            wait_port(a.port)
            for mode in a.modes.split(","):
                busy = wait_quiet(a.quiet)
                r = asyncio.run(_availability(f"http://127.0.0.1:{a.port}", 50, a.requests, 60, mode))
                r["load_average"] = os.getloadavg()
                r["machine_busy_pct_before"] = busy
                results["runs"][f"{name}/{mode}"] = r
                lat = r["latency_ms"]
                print(
                    f"{name:8} {mode:9} {r['rps']:8} req/s  p50 {lat['p50']:6} p95 {lat['p95']:6} p99 {lat['p99']:6}"
                    f"  client CPU {r['client_cpu_pct']}%  {r['bytes_read_per_answer']} B/answer {r['status']}"
                    f"  load {os.getloadavg()[0]:.2f}, busy before {busy:.0f}%",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            proc.terminate()
            proc.join(10)
    if a.out:
        a.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
