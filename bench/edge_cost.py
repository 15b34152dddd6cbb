"""What the front door costs per request: CPU of the edge (nginx, deploy/edge/loket.conf.template,
limits on) against the aiohttp gateway it replaced (loket_stack/gateway.py of commit GATEWAY_COMMIT,
read from git), both in front of the same trivial upstream (loadgen's `Trivial`, which answers
at once), for a GET of availability and a POST of a booking, and the edge's memory.

    uv run python -m bench.edge_cost [--requests 2000] [--concurrency 20]

Both fronts get the same clients: simulated residents on loopback addresses of their own
(bench.loket.client_address), a connection each, no more requests per address than the edge lets
one client send at once (5 bookings, 100 reads), so no answer is a 429 and every request is
proxied. CPU is read from /proc (psutil) before and after, the front's children included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench import BASELINE_DIR, REPO
from bench.availability_ceiling import wait_port
from bench.loket import READS_PER_CLIENT, client_address
from bench.procs import cpu_seconds, tree
from loket_stack import edge

GATEWAY_COMMIT = "28b639b"  # the last commit with the aiohttp gateway
BOOKINGS_PER_CLIENT = 5  # the edge's burst for POST /api/v1/bookings
BOOKING = json.dumps({"product": "p", "location": "l", "start": "2030-01-07T09:00:00+01:00"}).encode()


def serve_trivial(sock: socket.socket) -> None:
    sys.path.insert(0, str(BASELINE_DIR))
    import loadgen

    loadgen.serve_trivial(sock)


def start_upstream() -> tuple[multiprocessing.Process, int]:
    sock = socket.create_server(("127.0.0.1", 0))
    process = multiprocessing.get_context("fork").Process(target=serve_trivial, args=(sock,), daemon=True)
    process.start()
    return process, sock.getsockname()[1]


def start_edge(port: int, upstream: int, folder: Path) -> subprocess.Popen[bytes]:
    conf = edge.write_config(
        folder,
        listen=f"127.0.0.1:{port}",
        upstreams={name: f"127.0.0.1:{upstream}" for name in edge.UPSTREAMS},
        web_root=REPO / "web",
    )
    return subprocess.Popen(edge.command(conf))


def start_gateway(port: int, upstream: int, folder: Path) -> subprocess.Popen[bytes]:
    source = subprocess.run(
        ["git", "show", f"{GATEWAY_COMMIT}:deploy/local/src/loket_stack/gateway.py"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    (folder / "gateway.py").write_bytes(source)
    upstreams = [f"--upstream={name}=http://127.0.0.1:{upstream}" for name in edge.UPSTREAMS]
    command = [sys.executable, str(folder / "gateway.py"), "--port", str(port), "--key-file", str(folder / "k.pem")]
    return subprocess.Popen([*command, *upstreams])


async def load(url: str, method: str, requests: int, concurrency: int, per_client: int) -> Counter[str]:
    """`requests` requests, `concurrency` at a time; request i from client i // per_client."""
    statuses: Counter[str] = Counter()
    todo = iter(range(requests))
    sessions: dict[int, aiohttp.ClientSession] = {}

    def session_of(client: int) -> aiohttp.ClientSession:
        if client not in sessions:
            connector = aiohttp.TCPConnector(limit=per_client, local_addr=(client_address(client), 0))
            sessions[client] = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        return sessions[client]

    async def worker() -> None:
        for i in todo:
            data = BOOKING if method == "POST" else None
            headers = {"Content-Type": "application/json"} if data else {}
            async with session_of(i // per_client).request(method, url, data=data, headers=headers) as r:
                await r.read()
                statuses[str(r.status)] += 1

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        for s in sessions.values():
            await s.close()
    return statuses


def measure(front: subprocess.Popen[bytes], port: int, requests: int, concurrency: int) -> dict[str, Any]:
    wait_port(port)
    base = f"http://127.0.0.1:{port}"
    asyncio.run(load(f"{base}/api/v1/availability", "GET", 200, concurrency, READS_PER_CLIENT))  # warm-up
    out: dict[str, Any] = {}
    for name, method, path, per_client in (
        ("get", "GET", "/api/v1/availability?product=p&from=2030-01-07&to=2030-01-07", READS_PER_CLIENT),
        ("post", "POST", "/api/v1/bookings", BOOKINGS_PER_CLIENT),
    ):
        procs = tree(front.pid)
        cpu0, t0 = cpu_seconds(procs), time.perf_counter()
        statuses = asyncio.run(load(base + path, method, requests, concurrency, per_client))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(procs) - cpu0
        out[name] = {
            "requests": requests,
            "status": dict(statuses),
            "cpu_ms_per_request": round(1000 * cpu / requests, 3),
            "rps": round(requests / wall, 1),
        }
    out["rss_mb"] = round(sum(p.memory_info().rss for p in tree(front.pid)) / 2**20, 1)
    out["processes"] = len(tree(front.pid))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--port", type=int, default=int(os.environ.get("LOKET_BENCH_PORT_BASE", "23000")) + 160)
    a = p.parse_args()
    upstream, upstream_port = start_upstream()
    results: dict[str, Any] = {"load_average_start": os.getloadavg()}
    try:
        for name, start in (("edge", start_edge), ("gateway", start_gateway)):
            with tempfile.TemporaryDirectory() as folder:
                front = start(a.port, upstream_port, Path(folder))
                try:
                    results[name] = measure(front, a.port, a.requests, a.concurrency)
                finally:
                    front.terminate()
                    front.wait(10)
    finally:
        upstream.terminate()
    results["load_average_end"] = os.getloadavg()
    results["cpus"] = psutil.cpu_count()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
