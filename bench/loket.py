"""Loket's real stack on the benchmark's own ports and data dir, with the benchmark seed."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml

from bench import BENCH, REPO
from loket_stack.runner import Stack, StackConfig, StackError

# LOKET_BENCH_PORT_BASE moves the benchmark's stack (ports base+0 ... base+104, data dir) so two
# benchmarks can run side by side; the default is 23000 and .data/bench.
PORT_BASE = int(os.environ.get("LOKET_BENCH_PORT_BASE", "23000"))
DATA = REPO / ".data" / ("bench" if PORT_BASE == 23000 else f"bench-{PORT_BASE}")
PRODUCT = "bench-card"
SERVICES = ("catalogue", "booking", "calendar", "notifications")
PYTHON_PROCS = ("issuer", *SERVICES, "calendar-allocator", "sinks")
# The edge (nginx, named `gateway`: its workers are its children) and the Python processes.
PROCS = ("gateway", *PYTHON_PROCS)
# The edge limits each client address (deploy/edge/README.md) and every load here comes from this
# machine: simulated clients send from loopback addresses of their own, 127.0.0.2 and up, each no
# more requests than a client may send at once, so the limits stay on (bench/README.md).
FIRST_CLIENT_ADDRESS = ipaddress.IPv4Address("127.0.0.2")
READS_PER_CLIENT = 100  # below the edge's burst of 200 requests per client


def client_address(n: int) -> str:
    """The n-th simulated client's loopback address (0: 127.0.0.2)."""
    return str(FIRST_CLIENT_ADDRESS + n)


def locations() -> list[str]:
    return [loc["id"] for loc in yaml.safe_load((BENCH / "seed_bench.yaml").read_text())["locations"]]


def merged_seed(path: Path) -> Path:
    """A copy of the Ghent demo seed plus bench/seed_bench.yaml (the demo seed stays as it is)."""
    ghent = yaml.safe_load((REPO / "services/catalogue/seed/ghent.yaml").read_text())
    extra = yaml.safe_load((BENCH / "seed_bench.yaml").read_text())
    ghent["hours_templates"].update(extra["hours_templates"])
    ghent["products"] += extra["products"]
    ghent["locations"] += extra["locations"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(ghent, allow_unicode=True, sort_keys=False))
    return path


def config(extra_env: dict[str, str] | None = None) -> StackConfig:
    return StackConfig.on_ports_from(
        PORT_BASE,
        data=DATA,
        seed_file=DATA / "seed.yaml",
        extra_env=dict(extra_env or {}),
    )


class Loket:
    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.config = config(extra_env)
        self.stack: Stack | None = None
        self.notes: list[str] = []
        self._free_locations = locations()
        self.start_timings: dict[str, float] = {}

    @property
    def url(self) -> str:
        return self.config.base_url

    def take_location(self) -> str:
        """A location nobody booked yet: each scenario starts from empty slots, no restart needed."""
        if not self._free_locations:
            raise RuntimeError("no fresh benchmark location left; add more to bench/seed_bench.yaml")
        return self._free_locations.pop(0)

    def up(self, fresh: bool = True) -> None:
        self.stack = Stack(self.config)
        if fresh:
            self.stack.down()
            shutil.rmtree(DATA, ignore_errors=True)
        merged_seed(self.config.seed_file)  # type: ignore[arg-type]
        try:
            self.start_timings = self.stack.up(timeout=180)
        except StackError as exc:
            if "notifications" not in str(exc) or "notifications" in os.environ.get("LOKET_STACK_SKIP", ""):
                raise
            self.notes.append(f"notifications failed to start, run without it: {str(exc).splitlines()[0]}")
            self.stack.stop_process("notifications")
            os.environ["LOKET_STACK_SKIP"] = ",".join(
                filter(None, [os.environ.get("LOKET_STACK_SKIP", ""), "notifications"])
            )
            self.stack = Stack(self.config)
            self.start_timings = self.stack.up(timeout=180)
        self.wait_for_seed()

    def down(self) -> None:
        if self.stack is not None:
            self.stack.down()

    def reset(self) -> float:
        """A fresh stack (wiped data, every location empty, no backlog): about 25 s here."""
        t = time.perf_counter()
        self._free_locations = locations()
        self.up(fresh=True)
        return round(time.perf_counter() - t, 1)

    def wait_for_seed(self, timeout: float = 120) -> None:
        """The calendar's view of the catalogue comes from the topic: wait until every bench location is there."""
        today = dt.date.today()
        deadline = time.monotonic() + timeout
        pending = set(self._free_locations)
        with httpx.Client(timeout=10) as client:
            while pending and time.monotonic() < deadline:
                for loc in list(pending):
                    r = client.get(
                        f"{self.url}/api/v1/availability",
                        params={"product": PRODUCT, "location": loc, "from": str(today),
                                "to": str(today + dt.timedelta(days=30))},
                    )  # fmt: skip
                    if r.status_code == 200 and r.json()["slots"]:
                        pending.discard(loc)
                if pending:
                    time.sleep(0.5)
        if pending:
            raise RuntimeError(f"the bench locations never reached the calendar: {sorted(pending)}")

    def pids(self) -> dict[str, int]:
        """pid of each Loket process (the edge and the Python ones), from .data/bench/run/*.pid."""
        out = {}
        for name in PROCS:
            f = DATA / "run" / f"{name}.pid"
            if f.exists():
                out[name] = int(f.read_text().strip())
        return out

    def token(self, username: str) -> str:
        r = httpx.post(f"{self.url}/api/v1/auth/token", data={"username": username, "password": "demo"})
        r.raise_for_status()
        return str(r.json()["access_token"])

    def dsn(self, service: str) -> str:
        assert self.stack is not None
        return self.stack.postgres.dsn(f"loket_{service}")


async def agenda_counts(url: str, token: str, location: str, days: int = 62) -> dict[str, Any]:
    """Read the agenda of every day of the location and count active appointments per (desk, start)
    and per start: the oversold check does not trust the booking responses."""
    today = dt.date.today()
    per_desk_start: Counter[tuple[str, str]] = Counter()
    per_start: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as s:

        async def day(d: dt.date) -> dict[str, Any]:
            async with s.get(f"{url}/api/v1/agenda/{location}", params={"date": str(d)}) as r:
                r.raise_for_status()
                body: dict[str, Any] = await r.json()
                return body

        dates = [today + dt.timedelta(days=i) for i in range(days + 1)]
        bodies = await asyncio.gather(*(day(d) for d in dates if d.weekday() < 5))
    for body in bodies:
        for desk in body["desks"]:
            for a in desk["appointments"]:
                statuses[a["status"]] += 1
                if a["status"] in ("confirmed", "held"):
                    per_desk_start[(desk["desk"], a["start"])] += 1
                    per_start[a["start"]] += 1
    return {
        "active": sum(per_start.values()),
        "by_status": dict(statuses),
        "double_booked_desk_times": sum(n - 1 for n in per_desk_start.values() if n > 1),
        "per_start": per_start,
    }


def check_agenda(loket: Loket, location: str, expected: int, capacity: int, timeout: float = 90) -> dict[str, Any]:
    """Wait until the agenda projection settles (>= the 201s, unchanged for 2 s), then check it."""
    token = loket.token("admin")
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    t0 = time.monotonic()
    while True:
        now = asyncio.run(agenda_counts(loket.url, token, location))
        if last is not None and now["active"] == last["active"] and now["active"] >= expected:
            break
        if time.monotonic() > deadline:
            break
        last = now
        time.sleep(2)
    per_start: Counter[str] = now.pop("per_start")
    now.update(
        oversold=sum(max(0, n - capacity) for n in per_start.values()),
        max_per_start=max(per_start.values(), default=0),
        starts_booked=len(per_start),
        settle_s=round(time.monotonic() - t0, 1),
        expected_at_least=expected,
    )
    return now


async def _lag(loket: Loket) -> dict[str, int]:
    """Records not yet applied, per consumer group of booking, calendar and notifications, on
    loket.bookings and loket.calendar (end offsets from Kafka, progress from each service's PostgreSQL)."""
    import asyncpg
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from loket_contracts.topics import BOOKINGS, CALENDAR

    consumer = AIOKafkaConsumer(bootstrap_servers=f"127.0.0.1:{loket.config.kafka}")
    await consumer.start()
    try:
        tps = [TopicPartition(t.name, p) for t in (BOOKINGS, CALENDAR) for p in range(t.partitions)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    lag: dict[str, int] = {}
    for service in ("booking", "calendar", "notifications"):
        try:
            conn = await asyncpg.connect(loket.dsn(service))
        except Exception:
            continue
        try:
            rows = await conn.fetch(
                "SELECT consumer_group, topic, partition, next_offset FROM consumer_offsets WHERE topic = ANY($1)",
                [BOOKINGS.name, CALENDAR.name],
            )
        except Exception:
            rows = []
        finally:
            await conn.close()
        groups: dict[str, set[str]] = {}
        for r in rows:
            groups.setdefault(r["consumer_group"], set()).add(r["topic"])
        done = {(r["consumer_group"], r["topic"], r["partition"]): r["next_offset"] for r in rows}
        for group, topics in groups.items():
            lag[group] = sum(
                end - done.get((group, tp.topic, tp.partition), 0) for tp, end in ends.items() if tp.topic in topics
            )
    return lag


def wait_drained(loket: Loket, timeout: float = 300) -> dict[str, Any]:
    """Wait until every consumer has applied every record of the booking and calendar topics."""
    t0 = time.monotonic()
    while True:
        try:
            lag = asyncio.run(asyncio.wait_for(_lag(loket), 20))
        except (TimeoutError, OSError) as exc:
            lag = {"unknown": -1, "error": repr(exc)}  # type: ignore[dict-item]
        if not any(lag.values()):
            return {"drained": True, "drain_s": round(time.monotonic() - t0, 1)}
        if time.monotonic() - t0 > timeout:
            return {"drained": False, "drain_s": round(time.monotonic() - t0, 1), "lag": lag}
        time.sleep(1)


def reservations_check(loket: Loket, location: str, capacity: int) -> dict[str, Any]:
    """Cross-check from the calendar's own table of reservations (the allocator's state)."""
    import asyncpg

    async def run() -> dict[str, Any]:
        conn = await asyncpg.connect(loket.dsn("calendar"))
        try:
            rows = await conn.fetch(
                "SELECT lower(during) AS s, count(*) AS n, count(DISTINCT desk_id) AS desks FROM reservations"
                " WHERE location_id = $1 GROUP BY 1",
                location,
            )
        finally:
            await conn.close()
        return {
            "reservations": sum(r["n"] for r in rows),
            "oversold": sum(max(0, r["n"] - capacity) for r in rows),
            "double_booked_desk_times": sum(r["n"] - r["desks"] for r in rows),
        }

    return asyncio.run(run())
