"""Admin HTTP API of the catalogue (role admin): products, locations, desks, hours, closures,
and the what-if preview of new hours.

Validation errors are problem+json 422 with an `errors` list naming each field as the client sent
it (`products.2`, `weekly.2.1.end`, `location_id`, `day`). Each change is published on the
compacted catalogue topic through the outbox, in the transaction that stores it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from loket_catalogue.application.admin import (
    CatalogueAdmin,
    Conflict,
    NotFound,
    OnStranded,
    Stranding,
    StrandingUnknown,
)
from loket_catalogue.domain.rules import CatalogueRuleError
from loket_contracts import events as ev
from loket_runtime.auth import Principal, require_role
from loket_runtime.i18n import tr
from loket_runtime.inputs import Day
from loket_runtime.logging import get_logger
from loket_runtime.problems import Problem, field_problem, problem_response

log = get_logger(__name__)

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
EntityId = Annotated[str, Path(pattern=ID_PATTERN, description="lower-case letters, digits and dashes")]
Admin = Annotated[Principal, require_role("admin")]
StrandedAction = Literal["refuse", "move", "cancel"]


class StrandedQuery(BaseModel):
    """What to do with the active bookings a change would leave outside the catalogue."""

    stranded: StrandedAction = Field(
        "refuse",
        description="refuse: 409 listing them (nothing changes); move: each to another desk that serves it at "
        "the same time (the calendar decides; one with no free desk is cancelled); cancel: each is cancelled",
    )
    reason: str | None = Field(
        None, max_length=300, description="told to the residents (every language, unless reason_nl/en/fr say)"
    )
    reason_nl: str | None = Field(None, max_length=300)
    reason_en: str | None = Field(None, max_length=300)
    reason_fr: str | None = Field(None, max_length=300)

    def of(self, principal: Principal) -> OnStranded:
        # A reason of spaces says nothing to a resident: it counts as none.
        texts = {
            "nl": (self.reason_nl or "").strip(),
            "en": (self.reason_en or "").strip(),
            "fr": (self.reason_fr or "").strip(),
        }
        given = (self.reason or "").strip()
        if self.stranded != "refuse" and not given:
            missing = [f"reason_{language}" for language, text in texts.items() if not text]
            if len(missing) == len(texts):
                raise field_problem(
                    "reason", tr("say why: the residents whose bookings move or are cancelled are told")
                )
            if missing:  # some languages given: every resident is told in their own, so all three
                raise field_problem(
                    missing[0],
                    tr(
                        "give the reason in every language, or one `reason`: %(missing)s missing",
                        missing=", ".join(missing),
                    ),
                )
        base = given or next((t for t in texts.values() if t), None)
        reason = ev.Localized(**{k: v or base or "" for k, v in texts.items()}) if base else None
        return OnStranded(self.stranded, reason, principal.subject)


Stranded = Annotated[StrandedQuery, Query()]


class StrandedBookingOut(BaseModel):
    """An active booking a change would leave outside the catalogue, and what would happen to it."""

    booking: str
    location: str
    desk: str
    product: str
    start: str
    end: str
    status: str = Field(description="held or confirmed")
    why: str = Field(description="desk-removed, not-served, not-offered, outside-hours, overlaps, unknown-product")
    movable_to: str | None = Field(description="the desk it can move to at the same time, null when none is free")
    outcome: Literal["move", "cancel"] = Field(description="with stranded=move (the preview) or as asked")
    to_desk: str | None = None


class StrandedProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    bookings: list[StrandedBookingOut]


STRANDED_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {
        "model": StrandedProblemOut,
        "description": "the change would strand active bookings (listed) and stranded=refuse (the default)",
    },
    503: {"description": "the calendar cannot say now which bookings the change would affect; nothing changed"},
}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProductIn(_In):
    name: ev.Localized
    description: ev.Localized
    duration_minutes: int = Field(gt=0, le=480)
    documents: list[ev.Localized] = []
    fee_eur: float = Field(0, ge=0)
    requires_confirmation: bool = False
    hold_minutes: int = Field(30, gt=0, le=1440)
    min_notice_hours: int = Field(24, ge=0, le=24 * 365)
    max_days_ahead: int = Field(60, gt=0, le=730)
    max_active_per_person: int = Field(1, ge=1, le=20)
    eligibility: dict[str, object] = {}
    reminders: list[dict[str, object]] = []


class LocationIn(_In):
    name: str = Field(min_length=1, max_length=200)
    address: str = Field(min_length=1, max_length=300)
    products: list[str]
    slot_grid_minutes: int | None = Field(
        None, gt=0, le=120, description="start times lie on this grid; omitted: unchanged (new: 10)"
    )


class DeskIn(_In):
    location_id: str
    name: str = Field(min_length=1, max_length=100)
    products: list[str]


Weekly = dict[str, list[ev.TimeBlock]]
WEEKLY_DOC = (
    'ISO weekday ("1" = Monday ... "7" = Sunday) to wall-clock blocks in Europe/Brussels; a missing day is closed'
)


class ScheduleIn(_In):
    weekly: Weekly = Field(description=WEEKLY_DOC)


class ClosureIn(_In):
    location_id: str | None = Field(None, description="null closes every location")
    day: Day
    reason: str = Field(min_length=1, max_length=200)


class PreviewIn(_In):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    location_id: str
    desk_id: str | None = Field(None, description="only this desk gets the hours; without, every desk of the location")
    effective_from: Day
    weekly: Weekly = Field(description=WEEKLY_DOC)
    from_: Day = Field(alias="from")
    to: Day


def product_out(p: ev.ProductDefined) -> dict[str, Any]:
    data = p.model_dump(mode="json", exclude={"stranded"})
    return {"id": data.pop("product_id"), **data}


def location_out(loc: ev.LocationDefined) -> dict[str, Any]:
    return {
        "id": loc.location_id,
        "name": loc.name,
        "address": loc.address,
        "products": loc.products,
        "slot_grid_minutes": loc.slot_grid_minutes,
    }


def desk_out(d: ev.DeskDefined) -> dict[str, Any]:
    return {"id": d.desk_id, "location_id": d.location_id, "name": d.name, "products": d.products}


def schedule_out(s: ev.SchedulePublished) -> dict[str, Any]:
    return {
        "id": s.schedule_id,
        "desk_id": s.desk_id,
        "location_id": s.location_id,
        "effective_from": s.effective_from.isoformat(),
        "weekly": {day: [b.model_dump() for b in blocks] for day, blocks in sorted(s.weekly.items())},
    }


def closure_out(c: ev.ClosureDeclared) -> dict[str, Any]:
    return {
        "id": c.closure_id,
        "location_id": c.location_id,
        "day": c.day.isoformat(),
        "kind": c.kind,
        "reason": c.reason,
    }


def _saved(payload: dict[str, Any], created: bool) -> JSONResponse:
    return JSONResponse(jsonable_encoder(payload), status_code=201 if created else 200)


def install_admin(app: FastAPI, admin_of: Callable[[Request], CatalogueAdmin]) -> None:
    """Mount the admin routes; `admin_of(request)` gives the CatalogueAdmin of the running app."""

    @app.exception_handler(CatalogueRuleError)
    async def _rule(request: Request, exc: CatalogueRuleError) -> JSONResponse:
        errors = [{"field": f, "message": m} for f, m in exc.errors]
        return problem_response(
            Problem(422, tr("Invalid catalogue change"), None, "validation", errors=errors), request
        )

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return problem_response(Problem(404, tr("Not found"), exc.args[0], "not-found"), request)

    @app.exception_handler(Stranding)
    async def _stranding(request: Request, exc: Stranding) -> JSONResponse:
        return problem_response(
            Problem(409, tr("Bookings would be stranded"), exc.args[0], "bookings-stranded", bookings=exc.bookings),
            request,
        )

    @app.exception_handler(StrandingUnknown)
    async def _stranding_unknown(request: Request, exc: StrandingUnknown) -> JSONResponse:
        detail = tr("The calendar cannot say now which bookings this change would affect; nothing was changed.")
        return problem_response(
            Problem(503, tr("Service unavailable"), detail, "calendar-unavailable", headers={"Retry-After": "5"}),
            request,
        )

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return problem_response(Problem(409, tr("Conflict"), exc.args[0], "conflict"), request)

    router = APIRouter(prefix="/api/v1/admin", tags=["catalogue admin"])

    @router.put(
        "/products/{id}", summary="Create or change a product (201 created, 200 changed)", responses=STRANDED_RESPONSES
    )
    async def put_product(
        request: Request, id: EntityId, body: ProductIn, principal: Admin, stranded: Stranded
    ) -> JSONResponse:
        product = ev.ProductDefined(product_id=id, **body.model_dump())
        created = await admin_of(request).put_product(product, stranded.of(principal))
        log.info("product saved", product_id=id, created=created, by=principal.subject)
        return _saved(product_out(product), created)

    @router.put(
        "/locations/{id}",
        summary="Create or change a location and the products it offers",
        responses=STRANDED_RESPONSES,
    )
    async def put_location(
        request: Request, id: EntityId, body: LocationIn, principal: Admin, stranded: Stranded
    ) -> JSONResponse:
        location, created = await admin_of(request).put_location(
            id, body.name, body.address, body.products, body.slot_grid_minutes, stranded.of(principal)
        )
        log.info("location saved", location_id=id, created=created, by=principal.subject)
        return _saved(location_out(location), created)

    @router.get("/desks", summary="Desks, optionally of one location")
    async def list_desks(request: Request, _: Admin, location: str | None = Query(None)) -> list[dict[str, Any]]:
        return [desk_out(d) for d in await admin_of(request).desks(location)]

    @router.put(
        "/desks/{id}", summary="Create or change a desk and the products it serves", responses=STRANDED_RESPONSES
    )
    async def put_desk(
        request: Request, id: EntityId, body: DeskIn, principal: Admin, stranded: Stranded
    ) -> JSONResponse:
        desk = ev.DeskDefined(desk_id=id, **body.model_dump())
        created = await admin_of(request).put_desk(desk, stranded.of(principal))
        log.info("desk saved", desk_id=id, created=created, by=principal.subject)
        return _saved(desk_out(desk), created)

    @router.delete("/desks/{id}", status_code=204, summary="Remove a desk", responses=STRANDED_RESPONSES)
    async def delete_desk(request: Request, id: str, principal: Admin, stranded: Stranded) -> Response:
        await admin_of(request).remove_desk(id, stranded.of(principal))
        log.info("desk removed", desk_id=id, by=principal.subject)
        return Response(status_code=204)

    @router.get("/desks/{id}/schedules", summary="Every version of a desk's weekly hours")
    async def list_schedules(request: Request, id: str, _: Admin) -> list[dict[str, Any]]:
        return [schedule_out(s) for s in await admin_of(request).schedules(id)]

    @router.put(
        "/desks/{id}/schedules/{effective_from}",
        summary="Publish a desk's weekly hours from a date on (the same date again replaces them)",
        responses=STRANDED_RESPONSES,
    )
    async def put_schedule(
        request: Request, id: str, effective_from: Day, body: ScheduleIn, principal: Admin, stranded: Stranded
    ) -> JSONResponse:
        schedule, created = await admin_of(request).put_schedule(
            id, effective_from, body.weekly, stranded.of(principal)
        )
        log.info("schedule saved", schedule_id=schedule.schedule_id, created=created, by=principal.subject)
        return _saved(schedule_out(schedule), created)

    @router.post(
        "/closures",
        summary="Close a location (or all: location_id null) for a day; "
        "the booking service cancels that day's bookings",
    )
    async def post_closure(request: Request, body: ClosureIn, principal: Admin) -> JSONResponse:
        closure, created = await admin_of(request).declare_closure(body.location_id, body.day, body.reason)
        log.info("closure declared", closure_id=closure.closure_id, created=created, by=principal.subject)
        return _saved(closure_out(closure), created)

    @router.get("/closures", summary="Closures (holidays, local closing days, ad hoc) between two days")
    async def list_closures(
        request: Request,
        _: Admin,
        from_: Day | None = Query(None, alias="from"),
        to: Day | None = Query(None),
    ) -> list[dict[str, Any]]:
        return [closure_out(c) for c in await admin_of(request).closures(from_, to)]

    @router.delete("/closures/{id}", status_code=204, summary="Lift a closure: the day opens again")
    async def delete_closure(request: Request, id: str, principal: Admin) -> Response:
        await admin_of(request).lift_closure(id)
        log.info("closure lifted", closure_id=id, by=principal.subject)
        return Response(status_code=204)

    @router.post(
        "/schedules/preview", summary="What-if: bookable slots per product and day with proposed hours next to today's"
    )
    async def preview(request: Request, _: Admin, body: Annotated[PreviewIn, Body()]) -> dict[str, Any]:
        result = await admin_of(request).preview(
            body.location_id, body.desk_id, body.effective_from, body.weekly, body.from_, body.to
        )
        totals: dict[str, dict[str, int]] = {}
        for c in result.counts:
            total = totals.setdefault(c.product_id, {"current": 0, "proposed": 0})
            total["current"] += c.current
            total["proposed"] += c.proposed
        return {
            "location_id": result.location_id,
            "desk_ids": list(result.desk_ids),
            "effective_from": result.effective_from.isoformat(),
            "from": result.first.isoformat(),
            "to": result.last.isoformat(),
            "counts": [
                {
                    "product": c.product_id,
                    "day": c.day.isoformat(),
                    "current": c.current,
                    "proposed": c.proposed,
                    "change": c.proposed - c.current,
                }
                for c in result.counts
            ],
            "totals": [{"product": p, **t, "change": t["proposed"] - t["current"]} for p, t in totals.items()],
            "closed_days": [{"day": d.isoformat(), "reason": r} for d, r in result.closed.items()],
            # Active bookings the proposed hours would leave outside them, and what would happen to
            # each with stranded=move (`outcome` move to `to_desk`, or cancel when no desk is free).
            "bookings": result.bookings,
        }

    app.include_router(router)


__all__ = ["CatalogueAdmin", "install_admin"]
