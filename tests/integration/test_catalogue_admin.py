"""The catalogue against a real PostgreSQL and a real Kafka broker.

The app runs in-process (its lifespan starts the outbox relay and loads the Ghent seed); admin
calls carry RS256 JWTs signed by a key the app's verifier knows. The checks: validation errors
are problem+json 422 naming the field, ETags and 304, every change reaches the compacted topic
`loket.catalogue`, and a fresh consumer reading it from offset 0 rebuilds the whole catalogue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.primitives.asymmetric import rsa

from loket_catalogue.application.catalogue import Catalogue
from loket_catalogue.entrypoints.app import CatalogueSettings, build_app
from loket_contracts.envelope import Envelope
from loket_contracts.topics import CATALOGUE
from loket_runtime import clock
from loket_runtime.auth import JwtVerifier
from loket_runtime.db import connect
from loket_runtime.kafka import ensure_topics
from loket_stack.kafka import KafkaBroker
from loket_stack.postgres import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "services" / "catalogue" / "seed" / "ghent.yaml"
ISSUER = "https://issuer.test/catalogue"
KID = "test-key-1"
TODAY = datetime(2026, 12, 1, 9, 30, tzinfo=clock.BRUSSELS)  # the module's "today": its days come after it

pytestmark = pytest.mark.timeout(150)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Infra:
    def __init__(self, client: httpx.AsyncClient, dsn: str, bootstrap: str, key: rsa.RSAPrivateKey) -> None:
        self.client = client
        self.dsn = dsn
        self.bootstrap = bootstrap
        self.key = key

    def token(self, roles: list[str], subject: str = "admin-1") -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": subject,
            "roles": roles,
            "locations": ["*"],
            "iss": ISSUER,
            "aud": "loket",
            "iat": now,
            "exp": now + timedelta(minutes=10),
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KID})

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(['admin'])}"}

    async def fetch(self, sql: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()


@pytest.fixture(scope="module")
async def catalogue_env() -> AsyncIterator[Infra]:
    root = Path(tempfile.mkdtemp(prefix="loket-catalogue-it-"))
    pg = EmbeddedPostgres(root / "pg", _free_port())
    broker = KafkaBroker(root / "kafka", _free_port(), _free_port(), root / "logs", cache_dir=REPO / ".cache" / "kafka")
    try:
        (root / "pg").mkdir()
        await asyncio.gather(asyncio.to_thread(pg.start), asyncio.to_thread(broker.start))
        pg.create_databases(["loket_catalogue"])
        await ensure_topics(broker.bootstrap, (CATALOGUE,))

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())) | {"kid": KID, "alg": "RS256"}
        settings = CatalogueSettings(
            database_url=pg.dsn("loket_catalogue"),
            kafka_bootstrap=broker.bootstrap,
            seed_file=SEED,
            outbox_poll_seconds=0.2,
            oidc_issuer=ISSUER,
            oidc_audience="loket",
            oidc_jwks_url="http://127.0.0.1:9/unused-jwks",
            http_port=_free_port(),
        )
        app = build_app(settings)
        verifier = JwtVerifier(settings.oidc_jwks_url, ISSUER, "loket", cache_seconds=1e9)
        verifier._keys = {KID: jwt.PyJWK(jwk)}
        verifier._fetched_at = time.monotonic()
        app.state.jwt_verifier = verifier

        # The module's fixed days (in 2027) lie ahead of this "today", whatever the day the suite runs.
        with clock.shifted(TODAY):
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://catalogue.test",
                    headers={"Accept-Language": "en"},
                ) as client,
            ):
                infra = Infra(client, pg.dsn("loket_catalogue"), broker.bootstrap, key)
                for _ in range(200):  # the seed loads in a background task at start-up
                    response = await client.get("/api/v1/locations")
                    if response.status_code == 200 and len(response.json()) == 12:
                        break
                    await asyncio.sleep(0.1)
                yield infra
    finally:
        with contextlib.suppress(Exception):
            broker.stop()
        with contextlib.suppress(Exception):
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def _problem(response: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def _fields(response: httpx.Response) -> list[str]:
    return [e["field"] for e in _problem(response)["errors"]]


# --- public reads, ETags -----------------------------------------------------------------------


async def test_seed_is_served_with_etags(catalogue_env: Infra) -> None:
    infra = catalogue_env
    products = await infra.client.get("/api/v1/products")
    assert products.status_code == 200
    assert len(products.json()) == 11
    assert {p["id"] for p in products.json()} >= {"orange-card", "child-card", "annex-3bis"}
    assert all(set(p["name"]) == {"nl", "en", "fr"} for p in products.json())
    locations = (await infra.client.get("/api/v1/locations")).json()
    assert len(locations) == 12
    pickup = (await infra.client.get("/api/v1/locations", params={"product": "card-pickup"})).json()
    assert {loc["id"] for loc in pickup} == {
        "migration-counter",
        "sc-gentbrugge",
        "sc-nieuw-gent",
        "sc-sint-amandsberg",
    }

    etag = products.headers["etag"]
    again = await infra.client.get("/api/v1/products", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and again.content == b""

    # A change makes a new representation: the old ETag no longer matches.
    current = next(p for p in products.json() if p["id"] == "annex-3bis")
    body = {
        k: current[k]
        for k in (
            "name",
            "description",
            "duration_minutes",
            "documents",
            "fee_eur",
            "requires_confirmation",
            "min_notice_hours",
            "max_days_ahead",
            "eligibility",
        )
    }
    body["fee_eur"] = 5
    changed = await infra.client.put("/api/v1/admin/products/annex-3bis", json=body, headers=infra.admin())
    assert changed.status_code == 200, changed.text
    assert changed.json()["fee_eur"] == 5
    after = await infra.client.get("/api/v1/products", headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag
    assert next(p for p in after.json() if p["id"] == "annex-3bis")["fee_eur"] == 5


async def test_admin_needs_the_admin_role(catalogue_env: Infra) -> None:
    infra = catalogue_env
    url = "/api/v1/admin/closures"
    _problem(await infra.client.get(url), 401)
    staff = {"Authorization": f"Bearer {infra.token(['staff'], 'staff-1')}"}
    _problem(await infra.client.get(url, headers=staff), 403)
    assert (await infra.client.get(url, headers=infra.admin())).status_code == 200


# --- validation ----------------------------------------------------------------------------------


async def test_hours_errors_name_the_field(catalogue_env: Infra) -> None:
    infra = catalogue_env
    url = "/api/v1/admin/desks/mc-1/schedules/2027-01-04"
    overlap = {"weekly": {"1": [{"start": "09:00", "end": "12:30"}, {"start": "12:00", "end": "16:00"}]}}
    assert _fields(await infra.client.put(url, json=overlap, headers=infra.admin())) == ["weekly.1.1"]
    backwards = {"weekly": {"2": [{"start": "14:00", "end": "09:00"}]}}
    assert _fields(await infra.client.put(url, json=backwards, headers=infra.admin())) == ["weekly.2.0.end"]
    off_grid = {"weekly": {"3": [{"start": "09:02", "end": "12:00"}]}}
    assert _fields(await infra.client.put(url, json=off_grid, headers=infra.admin())) == ["weekly.3.0.start"]
    bad_day = {"weekly": {"8": [{"start": "09:00", "end": "12:00"}]}}
    assert _fields(await infra.client.put(url, json=bad_day, headers=infra.admin())) == ["weekly.8"]
    bad_time = {"weekly": {"1": [{"start": "9h", "end": "12:00"}]}}
    assert _fields(await infra.client.put(url, json=bad_time, headers=infra.admin())) == ["weekly.1.0.start"]
    fine = {"weekly": {"1": [{"start": "09:00", "end": "12:30"}]}}
    bad_date = await infra.client.put("/api/v1/admin/desks/mc-1/schedules/2027-02-30", json=fine, headers=infra.admin())
    assert _fields(bad_date) == ["effective_from"]
    past = await infra.client.put("/api/v1/admin/desks/mc-1/schedules/2020-01-06", json=fine, headers=infra.admin())
    assert _fields(past) == ["effective_from"]
    unknown_desk = await infra.client.put(
        "/api/v1/admin/desks/nope-9/schedules/2027-01-04", json=fine, headers=infra.admin()
    )
    _problem(unknown_desk, 404)


async def test_desk_and_location_errors_name_the_field(catalogue_env: Infra) -> None:
    infra = catalogue_env
    admin = infra.admin()
    unknown_product = {"location_id": "sc-ledeberg", "name": "Desk 2", "products": ["residence-card", "passport"]}
    response = await infra.client.put("/api/v1/admin/desks/lb-2", json=unknown_product, headers=admin)
    assert _fields(response) == ["products.1"]
    assert "passport" in response.json()["errors"][0]["message"]
    not_offered = {"location_id": "sc-ledeberg", "name": "Desk 2", "products": ["orange-card"]}
    response = await infra.client.put("/api/v1/admin/desks/lb-2", json=not_offered, headers=admin)
    assert _fields(response) == ["products.0"]
    assert "does not offer" in response.json()["errors"][0]["message"]
    unknown_location = {"location_id": "sc-atlantis", "name": "Desk 1", "products": ["residence-card"]}
    assert _fields(await infra.client.put("/api/v1/admin/desks/at-1", json=unknown_location, headers=admin)) == [
        "location_id"
    ]
    moving = {"location_id": "sc-drongen", "name": "Desk 1", "products": ["residence-card"]}
    assert _fields(await infra.client.put("/api/v1/admin/desks/lb-1", json=moving, headers=admin)) == ["location_id"]
    missing = {"location_id": "sc-ledeberg", "products": ["residence-card"]}
    assert _fields(await infra.client.put("/api/v1/admin/desks/lb-2", json=missing, headers=admin)) == ["name"]
    bad_id = {"location_id": "sc-ledeberg", "name": "X", "products": []}
    assert _fields(await infra.client.put("/api/v1/admin/desks/Bad_Id", json=bad_id, headers=admin)) == ["id"]

    ledeberg = {
        "name": "Dienstencentrum Ledeberg",
        "address": "Ledeberg, 9050 Gent",
        "products": ["residence-card", "short-stay", "child-card", "departure-return", "visa"],
    }
    response = await infra.client.put("/api/v1/admin/locations/sc-ledeberg", json=ledeberg, headers=admin)
    assert _fields(response) == ["products.4"]
    # Dropping a product its desk still serves: change the desk first.
    ledeberg["products"] = ["residence-card", "short-stay", "child-card"]
    response = await infra.client.put("/api/v1/admin/locations/sc-ledeberg", json=ledeberg, headers=admin)
    assert _fields(response) == ["products"]
    assert "lb-1" in response.json()["errors"][0]["message"]
    # A grid the desk's hours do not start on (09:00 is minute 540, not a multiple of 25).
    ledeberg["products"] = ["residence-card", "short-stay", "child-card", "departure-return"]
    response = await infra.client.put(
        "/api/v1/admin/locations/sc-ledeberg", json=ledeberg | {"slot_grid_minutes": 25}, headers=admin
    )
    assert _fields(response) == ["slot_grid_minutes"]
    # A valid change keeps the grid when it is not given.
    ledeberg["address"] = "Changed address, 9050 Gent"
    response = await infra.client.put("/api/v1/admin/locations/sc-ledeberg", json=ledeberg, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "sc-ledeberg", **ledeberg, "slot_grid_minutes": 10}

    product = {"name": {"nl": "X", "en": "X"}, "description": {"nl": "X", "en": "X", "fr": "X"}, "duration_minutes": 0}
    fields = _fields(await infra.client.put("/api/v1/admin/products/new-thing", json=product, headers=admin))
    assert set(fields) == {"name.fr", "duration_minutes"}


async def test_closure_and_preview_errors(catalogue_env: Infra) -> None:
    infra = catalogue_env
    admin = infra.admin()
    url = "/api/v1/admin/closures"
    assert _fields(
        await infra.client.post(
            url, json={"location_id": "sc-atlantis", "day": "2027-02-10", "reason": "Strike"}, headers=admin
        )
    ) == ["location_id"]
    assert _fields(
        await infra.client.post(url, json={"location_id": None, "day": "2027-02-30", "reason": "Strike"}, headers=admin)
    ) == ["day"]
    assert _fields(
        await infra.client.post(url, json={"location_id": None, "day": "2021-02-10", "reason": "Strike"}, headers=admin)
    ) == ["day"]
    assert _fields(await infra.client.post(url, json={"day": "2027-02-10", "reason": ""}, headers=admin)) == ["reason"]
    assert _fields(await infra.client.get(url, params={"from": "2027-02-10", "to": "2027-02-01"}, headers=admin)) == [
        "to"
    ]
    assert _fields(await infra.client.get(url, params={"from": "2027-13-01"}, headers=admin)) == ["from"]

    preview = {
        "location_id": "sc-ledeberg",
        "effective_from": "2027-01-04",
        "from": "2027-01-10",
        "to": "2027-01-04",
        "weekly": {"1": [{"start": "09:00", "end": "12:00"}]},
    }
    response = await infra.client.post("/api/v1/admin/schedules/preview", json=preview, headers=admin)
    assert _fields(response) == ["to"]
    preview |= {"to": "2027-01-20", "desk_id": "mc-1"}
    response = await infra.client.post("/api/v1/admin/schedules/preview", json=preview, headers=admin)
    assert _fields(response) == ["desk_id"]
    preview |= {"desk_id": None, "location_id": "sc-atlantis"}
    response = await infra.client.post("/api/v1/admin/schedules/preview", json=preview, headers=admin)
    assert _fields(response) == ["location_id"]


# --- changes ------------------------------------------------------------------------------------------


async def test_desk_lifecycle_and_schedule_versions(catalogue_env: Infra) -> None:
    infra = catalogue_env
    admin = infra.admin()
    desk = {"location_id": "sc-ledeberg", "name": "Desk 2", "products": ["residence-card", "short-stay"]}
    created = await infra.client.put("/api/v1/admin/desks/lb-2", json=desk, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json() == {"id": "lb-2", **desk}
    assert (await infra.client.put("/api/v1/admin/desks/lb-2", json=desk, headers=admin)).status_code == 200

    hours = {"weekly": {"1": [{"start": "09:00", "end": "12:30"}], "4": [{"start": "14:00", "end": "19:00"}]}}
    response = await infra.client.put("/api/v1/admin/desks/lb-2/schedules/2027-01-04", json=hours, headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["id"] == "lb-2:2027-01-04"
    later = {"weekly": {"1": [{"start": "09:00", "end": "12:30"}, {"start": "14:00", "end": "16:00"}]}}
    response = await infra.client.put("/api/v1/admin/desks/lb-2/schedules/2027-03-01", json=later, headers=admin)
    assert response.status_code == 201
    versions = (await infra.client.get("/api/v1/admin/desks/lb-2/schedules", headers=admin)).json()
    assert [v["effective_from"] for v in versions] == ["2027-01-04", "2027-03-01"]
    desks = (await infra.client.get("/api/v1/admin/desks", params={"location": "sc-ledeberg"}, headers=admin)).json()
    assert [d["id"] for d in desks] == ["lb-1", "lb-2"]

    assert (await infra.client.delete("/api/v1/admin/desks/lb-2", headers=admin)).status_code == 204
    _problem(await infra.client.delete("/api/v1/admin/desks/lb-2", headers=admin), 404)


async def test_closures(catalogue_env: Infra) -> None:
    infra = catalogue_env
    admin = infra.admin()
    strike = {"location_id": None, "day": "2027-02-10", "reason": "Strike"}
    created = await infra.client.post("/api/v1/admin/closures", json=strike, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json() == {
        "id": "ad-hoc:all:2027-02-10",
        "location_id": None,
        "day": "2027-02-10",
        "kind": "ad-hoc",
        "reason": "Strike",
    }
    assert (await infra.client.post("/api/v1/admin/closures", json=strike, headers=admin)).status_code == 200

    election = {"location_id": "sc-drongen", "day": "2027-02-11", "reason": "Polling station"}
    response = await infra.client.post("/api/v1/admin/closures", json=election, headers=admin)
    assert response.status_code == 201
    listed = (
        await infra.client.get(
            "/api/v1/admin/closures", params={"from": "2027-02-01", "to": "2027-02-28"}, headers=admin
        )
    ).json()
    assert [c["id"] for c in listed] == ["ad-hoc:all:2027-02-10", "ad-hoc:sc-drongen:2027-02-11"]
    spring = (
        await infra.client.get(
            "/api/v1/admin/closures", params={"from": "2027-03-01", "to": "2027-05-31"}, headers=admin
        )
    ).json()
    assert {(c["day"], c["kind"]) for c in spring} >= {
        ("2027-03-29", "holiday"),
        ("2027-05-06", "holiday"),
        ("2027-05-17", "holiday"),
        ("2027-05-01", "holiday"),
    }
    assert (
        await infra.client.delete("/api/v1/admin/closures/ad-hoc:sc-drongen:2027-02-11", headers=admin)
    ).status_code == 204
    _problem(await infra.client.delete("/api/v1/admin/closures/ad-hoc:sc-drongen:2027-02-11", headers=admin), 404)

    # Opening on a holiday: lifted, and the start-up declaration of closing days does not bring it back.
    assert (await infra.client.delete("/api/v1/admin/closures/holiday:2027-11-11", headers=admin)).status_code == 204
    conn = await connect(infra.dsn)
    try:
        async with conn.transaction():
            assert await Catalogue().declare_closing_days(conn, [2027]) == 0
    finally:
        await conn.close()
    november = await infra.client.get(
        "/api/v1/admin/closures", params={"from": "2027-11-11", "to": "2027-11-11"}, headers=admin
    )
    assert november.json() == []
    _problem(await infra.client.delete("/api/v1/admin/closures/holiday:2026-01-01", headers=admin), 409)


async def test_preview_counts_and_publishes_nothing(catalogue_env: Infra) -> None:
    infra = catalogue_env
    admin = infra.admin()
    schedules_before = await infra.fetch("SELECT count(*) FROM catalogue_entities WHERE kind = 'schedule'")
    outbox_before = await infra.fetch("SELECT coalesce(max(id), 0) FROM outbox")
    # Ledeberg (one desk, lb-1) opens Mon 09:00-12:30, Wed 09:00-12:30 + 14:00-16:00, Fri 09:00-12:30.
    # Proposed: also Monday afternoon. 3-9 May 2027: Ascension on Thursday 6 May.
    body = {
        "location_id": "sc-ledeberg",
        "effective_from": "2027-05-01",
        "from": "2027-05-03",
        "to": "2027-05-09",
        "weekly": {
            "1": [{"start": "09:00", "end": "12:30"}, {"start": "14:00", "end": "16:00"}],
            "3": [{"start": "09:00", "end": "12:30"}, {"start": "14:00", "end": "16:00"}],
            "5": [{"start": "09:00", "end": "12:30"}],
        },
    }
    response = await infra.client.post("/api/v1/admin/schedules/preview", json=body, headers=admin)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["desk_ids"] == ["lb-1"]
    counts = {(c["product"], c["day"]): (c["current"], c["proposed"]) for c in result["counts"]}
    assert {p for p, _ in counts} == {"residence-card", "short-stay", "child-card", "departure-return"}
    # residence card, 20 minutes on the seed's 10-minute grid: 09:00-12:30 -> 20 starts, 14:00-16:00 -> 11.
    assert counts[("residence-card", "2027-05-03")] == (20, 31)
    assert counts[("residence-card", "2027-05-04")] == (0, 0)
    assert counts[("residence-card", "2027-05-05")] == (31, 31)
    assert counts[("residence-card", "2027-05-06")] == (0, 0)  # Ascension
    assert counts[("residence-card", "2027-05-07")] == (20, 20)
    assert counts[("departure-return", "2027-05-03")] == (21, 33)  # 10 minutes
    totals = {t["product"]: (t["current"], t["proposed"]) for t in result["totals"]}
    assert totals["residence-card"] == (71, 82)
    assert {"day": "2027-05-06", "reason": "Ascension Day"} in result["closed_days"]

    # Effective only from Tuesday 4 May: Monday 3 May keeps today's hours.
    later = await infra.client.post(
        "/api/v1/admin/schedules/preview", json=body | {"effective_from": "2027-05-04"}, headers=admin
    )
    assert {(c["product"], c["day"]): c["proposed"] for c in later.json()["counts"]}[
        ("residence-card", "2027-05-03")
    ] == 20

    assert await infra.fetch("SELECT count(*) FROM catalogue_entities WHERE kind = 'schedule'") == schedules_before
    assert await infra.fetch("SELECT coalesce(max(id), 0) FROM outbox") == outbox_before


# --- the compacted topic ------------------------------------------------------------------------------


async def _read_topic(bootstrap: str) -> dict[str, Envelope]:
    """A fresh consumer (no group) from offset 0 of every partition to the end: latest record per key."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(CATALOGUE.name, p) for p in range(CATALOGUE.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        latest: dict[str, Envelope] = {}
        positions = {tp: 0 for tp in partitions}
        deadline = time.monotonic() + 30
        while any(positions[tp] < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    latest[record.key.decode()] = Envelope.from_kafka(record.headers, record.value)
                    positions[tp] = record.offset + 1
        return latest
    finally:
        await consumer.stop()


async def test_fresh_consumer_rebuilds_the_catalogue_from_the_topic(catalogue_env: Infra) -> None:
    infra = catalogue_env
    for _ in range(100):  # the relay empties the outbox into Kafka
        if await infra.fetch("SELECT count(*) FROM outbox") == 0:
            break
        await asyncio.sleep(0.1)
    assert await infra.fetch("SELECT count(*) FROM outbox") == 0
    latest = await _read_topic(infra.bootstrap)

    def of_kind(kind: str, type_: str) -> dict[str, dict[str, Any]]:
        return {k: e.data for k, e in latest.items() if k.startswith(f"{kind}:") and e.type == type_}

    assert len(of_kind("product", "product-defined")) == 11
    assert len(of_kind("location", "location-defined")) == 12
    assert len(of_kind("desk", "desk-defined")) == 19
    assert of_kind("desk", "desk-removed").keys() == {"desk:lb-2"}
    assert of_kind("product", "product-defined")["product:annex-3bis"]["fee_eur"] == 5
    schedules = of_kind("schedule", "schedule-published")
    assert {"schedule:lb-2:2027-01-04", "schedule:lb-2:2027-03-01", "schedule:mc-1:2026-01-01"} <= schedules.keys()
    closures = of_kind("closure", "closure-declared")
    assert closures["closure:ad-hoc:all:2027-02-10"] == {
        "closure_id": "ad-hoc:all:2027-02-10",
        "location_id": None,
        "day": "2027-02-10",
        "kind": "ad-hoc",
        "reason": "Strike",
    }
    assert closures["closure:holiday:2027-03-29"]["reason"] == "Easter Monday"
    assert "closure:holiday:2027-05-17" in closures and "closure:local-closing-day:2027-11-15" in closures
    assert latest["closure:holiday:2027-11-11"].type == "closure-lifted"
    lifted = latest["closure:ad-hoc:sc-drongen:2027-02-11"]
    assert lifted.type == "closure-lifted" and lifted.data["location_id"] == "sc-drongen"
    envelope = latest["closure:ad-hoc:all:2027-02-10"]
    assert envelope.source == "loket/catalogue" and envelope.subject == "closure:ad-hoc:all:2027-02-10"
    # What the database holds is exactly what the topic rebuilds.
    assert await infra.fetch(
        "SELECT count(*) FROM catalogue_entities WHERE kind IN ('product', 'location', 'desk', 'schedule', 'closure')"
    ) == sum(1 for e in latest.values() if e.type not in {"desk-removed", "closure-lifted", "product-retired"})
