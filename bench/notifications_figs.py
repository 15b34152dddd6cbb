"""Notifications under a storm (issue 14): messages/s into the stack's SMTP server, CPU per message, peak RSS.

With the notifications process stopped, N residents book one fresh location through the gateway
(real bookings: booking, the allocator and the calendar decide them, the decisions land in
`loket.bookings`). Once booking and calendar have caught up, notifications starts again, as after a
deployment during a storm, and works off the whole backlog: its real consumer plans the messages,
the sender looks up contacts at the booking service, composes, and sends to the stack's SMTP sink
(aiosmtpd, one `.eml` file per message). Timed until no message is due any more.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections import Counter
from typing import Any

import aiohttp
import asyncpg

from bench import RESULTS
from bench.calendar_figs import free_starts, percentiles
from bench.loket import DATA, PRODUCT, Loket, _lag
from bench.procs import Watch, listening_pid

DUE_OPEN = "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()"


def resident(location: str, start: str, name: str, language: str) -> dict[str, Any]:
    """A booking request of a distinct resident (one active booking per person and product)."""
    return {
        "product": PRODUCT,
        "location": location,
        "start": start,
        "person": {"given_name": "Resident", "family_name": name},
        "contact": {"email": f"{name}@example.org"},
        "language": language,
    }


async def book(
    url: str, location: str, starts: list[dict[str, str]], n: int, seed: int, concurrency: int
) -> Counter[int]:
    """n distinct residents on the first starts of `location`; returns the answers' status codes."""
    statuses: Counter[int] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    headers = {"Content-Type": "application/json", "Prefer": "wait=5"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = resident(
                    location, starts[i % len(starts)]["start"], f"storm-{seed}-{i}", ("nl", "en", "fr")[i % 3]
                )
                try:
                    async with session.post(f"{url}/api/v1/bookings", json=body, headers=headers) as r:
                        await r.read()
                        statuses[r.status] += 1
                except (aiohttp.ClientError, TimeoutError):
                    statuses[0] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def probe(url: str, location: str, starts: list[dict[str, str]], n: int, rate: float, seed: int) -> list[float]:
    """n bookings at `rate` per second (open loop) at another location: seconds from each request's
    scheduled time to its answer (the decision), as a resident during the storm would see it."""
    headers = {"Content-Type": "application/json", "Prefer": "wait=5"}
    latencies: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
            body = resident(location, starts[i % len(starts)]["start"], f"probe-{seed}-{i}", "en")
            async with session.post(f"{url}/api/v1/bookings", json=body, headers=headers) as r:
                await r.read()
            latencies.append(time.perf_counter() - (t0 + i / rate))

        await asyncio.gather(*(one(i) for i in range(n)))
    return latencies


def wait_decided(loket: Loket, timeout: float) -> bool:
    """Booking and calendar have applied every record (notifications is stopped: its lag is the backlog)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lag = asyncio.run(_lag(loket))
        if not any(v for group, v in lag.items() if group != "notifications"):
            return True
        time.sleep(1)
    return False


async def _follow(dsn: str, loket: Loket, timeout: float) -> dict[str, Any]:
    """Until notifications' consumer has caught up and no message is due: seconds and samples."""
    conn = await asyncpg.connect(dsn)
    t0 = time.perf_counter()
    samples: list[tuple[float, int]] = []
    try:
        while True:
            t = time.perf_counter() - t0
            sent = await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'")
            samples.append((round(t, 2), sent))
            due = await conn.fetchval(DUE_OPEN)
            if due == 0:
                lag = await _lag(loket)
                if lag.get("notifications") == 0:  # absent until its first batch is committed
                    break
            if t > timeout:
                break
            await asyncio.sleep(0.25)
    finally:
        await conn.close()
    return {"elapsed": time.perf_counter() - t0, "samples": samples}


async def _outcomes(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT kind, status, count(*) AS n FROM deliveries GROUP BY 1, 2 ORDER BY 1, 2")
        span = await conn.fetchrow(
            "SELECT count(*) AS n, min(sent_at) AS first, max(sent_at) AS last FROM deliveries WHERE status = 'sent'"
        )
    finally:
        await conn.close()
    return {"by_kind_status": {f"{r['kind']}/{r['status']}": r["n"] for r in rows}, "span": dict(span)}


def notifications(loket: Loket, n: int, seed: int, timeout: float = 600) -> dict[str, Any]:
    assert loket.stack is not None
    location = loket.take_location()
    starts = free_starts(loket, location)[:100]
    loket.stack.stop_process("notifications")
    t = time.perf_counter()
    statuses = asyncio.run(book(loket.url, location, starts, n, seed, concurrency=100))
    booking_s = time.perf_counter() - t
    decided = wait_decided(loket, timeout=120)
    # Decisions while notifications is stopped, then again while it works off the backlog: the same
    # number of requests at the same rate, on a location of their own.
    probe_location = loket.take_location()
    probe_starts = free_starts(loket, probe_location)[:40]
    probe_n, probe_rate = 100, 10.0
    pids = loket.pids()
    pg = listening_pid(loket.config.postgres)
    deciders = {name: pids[name] for name in ("booking", "gateway") if name in pids} | ({"postgres": pg} if pg else {})
    with Watch(deciders, with_children={"postgres"}) as probe_watch:
        idle_latencies = asyncio.run(probe(loket.url, probe_location, probe_starts, probe_n, probe_rate, seed))
        decided = wait_decided(loket, timeout=120) and decided
    # what the probe's own bookings cost: taken off the drain's figures below
    probe_cpu_s: dict[str, float] = probe_watch.cpu_s
    mail = DATA / "mail"
    mails_before = sum(1 for _ in mail.glob("*.eml"))
    dsn = loket.dsn("notifications")
    t_spawn = time.perf_counter()
    loket.stack.up_services(timeout=120)
    ready_s = time.perf_counter() - t_spawn
    pids = loket.pids()
    pg = listening_pid(loket.config.postgres)
    groups = {name: pids[name] for name in ("notifications", "booking", "sinks") if name in pids} | (
        {"postgres": pg} if pg else {}
    )
    recorder = None
    if os.environ.get("BENCH_PROFILE"):  # py-spy on notifications and booking while they work it off
        from bench.profiling import Recorder, summarise

        out_dir = RESULTS / f"profile-notifications-{dt.datetime.now(dt.UTC):%Y-%m-%dT%H%M%S}"
        recorder = Recorder({k: v for k, v in groups.items() if k in ("notifications", "booking")}, out_dir)
        recorder.start()
    try:
        with Watch(groups, with_children={"postgres"}) as watch:

            async def drain_and_probe() -> tuple[dict[str, Any], list[float]]:
                seed_during = seed + 1_000_000
                follow = asyncio.ensure_future(_follow(dsn, loket, timeout))
                during = await probe(loket.url, probe_location, probe_starts, probe_n, probe_rate, seed_during)
                return await follow, during

            followed, busy_latencies = asyncio.run(drain_and_probe())
    finally:
        if recorder is not None:
            recorder.stop()
    profile = {name: summarise(recorder.out_dir / f"{name}.txt") for name in recorder.pids} if recorder else None
    mails = sum(1 for _ in mail.glob("*.eml")) - mails_before
    outcomes = asyncio.run(_outcomes(dsn))
    span = outcomes.pop("span")
    sent = int(span["n"])
    steady_s = (span["last"] - span["first"]).total_seconds() if sent > 1 else None
    summary = watch.summary()
    cpu_s: dict[str, float] = summary["cpu_s"]  # type: ignore[assignment]
    return {
        "location": location,
        "bookings_requested": n,
        "answers": {str(k): v for k, v in sorted(statuses.items())},
        "booking_s": round(booking_s, 1),
        "decided_before_start": decided,
        "notifications_ready_s": round(ready_s, 2),
        "drain_s_after_ready": round(followed["elapsed"], 2),
        "complete": followed["elapsed"] < timeout,
        "messages_sent": sent,
        "mails_in_sink": mails,
        "messages_per_s_after_ready": round(sent / followed["elapsed"], 1) if followed["elapsed"] else None,
        # first to last message sent (sent_at): the sender's own pace, start-up and planning's head start excluded
        "messages_per_s_steady": round((sent - 1) / steady_s, 1) if steady_s else None,
        # the same 100 bookings at 10/s: before notifications started, and while it drained
        "decisions_ms_notifications_stopped": percentiles(idle_latencies),
        "decisions_ms_while_draining": percentiles(busy_latencies),
        # CPU during the drain less what the probe's 100 bookings cost when notifications was stopped
        "cpu_ms_per_message": {
            k: round(1000 * max(0.0, v - probe_cpu_s.get(k, 0.0)) / sent, 2) for k, v in cpu_s.items()
        }
        if sent
        else {},
        "probe_cpu_s": probe_cpu_s,
        "notifications_peak_rss_mb": summary["peak_rss_mb"].get("notifications"),  # type: ignore[attr-defined]
        **outcomes,
        **({"profile": profile} if profile else {}),
        "sent_samples": followed["samples"][:: max(1, len(followed["samples"]) // 40)],
        "processes": summary,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
