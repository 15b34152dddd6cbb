"""Catalogue HTTP API: public products and locations (with ETags), the admin API (see admin.py),
the seed at start-up, and the closing days of this year and the next, kept declared daily."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Query, Request, Response
from pydantic import BaseModel

from loket_catalogue.adapters.calendar import CalendarStrandings
from loket_catalogue.adapters.repository import EntityRepository
from loket_catalogue.application.admin import CatalogueAdmin
from loket_catalogue.application.catalogue import Catalogue, load_seed
from loket_catalogue.entrypoints.admin import install_admin
from loket_runtime import clock
from loket_runtime.logging import get_logger
from loket_runtime.service import ServiceRuntime, create_app
from loket_runtime.settings import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"
log = get_logger(__name__)


class CatalogueSettings(ServiceSettings):
    service_name: str = "catalogue"
    http_port: int = 8101
    database_url: str = "postgresql://postgres@127.0.0.1:5433/loket_catalogue"
    seed_file: Path | None = None
    closing_days_check_seconds: float = 6 * 3600
    # The calendar, asked which active bookings a change would strand (`/internal/strandings`, with
    # the internal token). Unset: changes are not checked (the allocator still resolves what a
    # published change strands, moving where a desk is free, else cancelling).
    calendar_url: str | None = None
    internal_token: str = "local-internal-token"


class LocalizedText(BaseModel):
    nl: str
    en: str
    fr: str


class ProductOut(BaseModel):
    id: str
    name: LocalizedText
    description: LocalizedText
    duration_minutes: int
    documents: list[LocalizedText]
    fee_eur: float
    requires_confirmation: bool
    min_notice_hours: int
    max_days_ahead: int
    eligibility: dict[str, Any]


class LocationOut(BaseModel):
    id: str
    name: str
    address: str
    products: list[str]


def _etag_response(request: Request, payload: Any) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=60"}
    if etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def build_app(settings: CatalogueSettings | None = None) -> FastAPI:
    settings = settings or CatalogueSettings()
    runtime = ServiceRuntime(settings, MIGRATIONS)
    entities = EntityRepository()

    async def seed_once(rt: ServiceRuntime) -> None:
        if settings.seed_file is None:
            return
        seed = yaml.safe_load(settings.seed_file.read_text())
        loaded = await load_seed(rt.pool, seed, clock.today())
        log.info("seed", loaded=loaded, file=str(settings.seed_file))

    async def closing_days_daily(rt: ServiceRuntime) -> None:
        # A service that runs over New Year must still know next year's holidays.
        while True:
            await asyncio.sleep(settings.closing_days_check_seconds)
            year = clock.today().year
            async with rt.pool.acquire() as conn, conn.transaction():
                declared = await Catalogue().declare_closing_days(conn, [year, year + 1])
            if declared:
                log.info("closing days declared", count=declared)

    runtime.add_task(seed_once)
    runtime.add_task(closing_days_daily)
    app = create_app(runtime, "Loket catalogue", openapi_url="/openapi.json")
    strandings = CalendarStrandings(settings.calendar_url, settings.internal_token) if settings.calendar_url else None
    install_admin(app, lambda request: CatalogueAdmin(runtime.pool, strandings=strandings))

    @app.get(
        "/api/v1/products",
        response_model=list[ProductOut],
        tags=["catalogue"],
        summary="Every product a resident can book",
    )
    async def products(request: Request) -> Response:
        rows = await entities.all(runtime.pool, "product")
        payload = [
            {
                "id": p["product_id"],
                "name": p["name"],
                "description": p["description"],
                "duration_minutes": p["duration_minutes"],
                "documents": p["documents"],
                "fee_eur": p["fee_eur"],
                "requires_confirmation": p["requires_confirmation"],
                "min_notice_hours": p["min_notice_hours"],
                "max_days_ahead": p["max_days_ahead"],
                "eligibility": p["eligibility"],
            }
            for p in rows
        ]
        return _etag_response(request, payload)

    @app.get(
        "/api/v1/locations",
        response_model=list[LocationOut],
        tags=["catalogue"],
        summary="Locations, optionally only those that offer a product",
    )
    async def locations(request: Request, product: str | None = Query(None)) -> Response:
        rows = await entities.all(runtime.pool, "location")
        payload = [
            {"id": loc["location_id"], "name": loc["name"], "address": loc["address"], "products": loc["products"]}
            for loc in rows
            if product is None or product in loc["products"]
        ]
        return _etag_response(request, payload)

    return app
