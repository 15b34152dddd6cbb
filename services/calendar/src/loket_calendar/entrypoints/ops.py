"""The operations API (role `ops`): consumer lag, dead letters and replay, projection rebuilds,
and the events of one booking across the topics."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response

from loket_calendar.adapters import kafka_ops
from loket_calendar.application import ops
from loket_runtime.auth import Principal, require_role
from loket_runtime.catalogue import CATALOGUE_VIEW_GROUP
from loket_runtime.i18n import tr
from loket_runtime.inputs import RowId
from loket_runtime.logging import get_logger
from loket_runtime.problems import Problem, field_problem
from loket_runtime.service import ServiceRuntime

OpsPrincipal = Annotated[Principal, require_role("ops")]
PROJECTIONS = ("agenda",)
log = get_logger("calendar.ops")


def without_members(group: dict[str, Any]) -> bool:
    """A group nobody consumes in now, so its lag never shrinks. `<service>-catalogue-view` groups
    have no members by design (positions committed only for this view) and stay with the others."""
    return group.get("members") == 0 and not str(group["group"]).endswith(CATALOGUE_VIEW_GROUP)


def build_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/api/v1/ops", tags=["operations"])
    rebuilding = asyncio.Lock()

    @router.get(
        "/consumers",
        summary="Every consumer group of the cluster: committed offset, end and lag; groups without "
        "members (a stopped tool, a renamed group, a service that is down) apart, outside `total_lag`",
    )
    async def consumers(_: OpsPrincipal) -> dict[str, Any]:
        groups = await kafka_ops.consumer_groups(runtime.settings.kafka_bootstrap)
        active = [g for g in groups if not without_members(g)]
        idle = [g for g in groups if without_members(g)]
        return {
            "groups": active,
            "total_lag": sum(g["lag"] for g in active),
            "groups_without_members": idle,
            "lag_without_members": sum(g["lag"] for g in idle),
        }

    @router.delete(
        "/consumers/{group}",
        status_code=204,
        summary="Delete a consumer group without members and its committed offsets (409 while it has members)",
    )
    async def delete_consumer_group(
        group: Annotated[str, Path(min_length=1, max_length=255)], _: OpsPrincipal
    ) -> Response:
        try:
            await kafka_ops.delete_consumer_group(runtime.settings.kafka_bootstrap, group)
        except kafka_ops.GroupNotFound as exc:
            raise Problem(404, tr("Not found"), tr("No consumer group %(group)r.", group=group)) from exc
        except kafka_ops.GroupNotEmpty as exc:
            raise Problem(
                409,
                tr("Group has members"),
                tr("Consumer group %(group)r has members; stop them first.", group=group),
                "group-not-empty",
            ) from exc
        log.info("consumer group deleted by ops", group=group)
        return Response(status_code=204)

    @router.get("/dead-letters", summary="Records a consumer could not handle, newest first")
    async def dead_letters(
        _: OpsPrincipal,
        replayed: bool | None = None,
        group: str | None = None,
        topic: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        parked: Annotated[
            bool | None, Query(description="only records an outbox relay parked (or none of them)")
        ] = None,
    ) -> dict[str, Any]:
        letters = await ops.list_dead_letters(
            runtime.pool, replayed=replayed, group=group, topic=topic, limit=limit, parked=parked
        )
        return {"dead_letters": letters}

    @router.get("/dead-letters/{letter_id}", summary="One dead letter with its headers and body")
    async def dead_letter(letter_id: RowId, _: OpsPrincipal) -> dict[str, Any]:
        try:
            return await ops.get_dead_letter(runtime.pool, letter_id)
        except ops.NotFound as exc:
            raise Problem(404, tr("Not found"), tr("No dead letter %(letter)s.", letter=letter_id)) from exc

    @router.post(
        "/dead-letters/{letter_id}/replay",
        status_code=202,
        summary="Republish the original record to its original topic (through the outbox)",
    )
    async def replay(letter_id: RowId, _: OpsPrincipal, force: bool = False) -> dict[str, Any]:
        try:
            return await ops.replay(runtime.pool, letter_id, force)
        except ops.NotFound as exc:
            raise Problem(404, tr("Not found"), tr("No replayable dead letter %(letter)s.", letter=letter_id)) from exc
        except ops.NotReplayable as exc:
            reference, size = exc.args
            raise Problem(
                409,
                tr("Not replayable"),
                tr(
                    "Dead letter %(letter)s carries only the first bytes of a %(size)s-byte original;"
                    " the whole record is kept at %(reference)s.",
                    letter=letter_id,
                    size=size,
                    reference=reference,
                ),
                "not-replayable",
            ) from exc
        except ops.AlreadyReplayed as exc:
            raise Problem(
                409,
                tr("Already replayed"),
                tr(
                    "Dead letter %(letter)s was replayed at %(when)s; add ?force=true to replay it again.",
                    letter=letter_id,
                    when=exc.args[0],
                ),
                "already-replayed",
            ) from exc

    @router.post(
        "/projections/{name}/rebuild",
        summary="Rebuild a projection from offset zero (or, with ?verify=true, only compare a rebuild "
        "with the incremental projection and keep the latter)",
    )
    async def rebuild(name: str, _: OpsPrincipal, verify: bool = False) -> JSONResponse:
        if name not in PROJECTIONS:
            raise Problem(
                404,
                tr("Not found"),
                tr("No projection %(name)r; there is %(known)s.", name=name, known=", ".join(PROJECTIONS)),
            )
        if rebuilding.locked():
            raise Problem(409, tr("Busy"), tr("A rebuild is running already."), "rebuild-running")
        async with rebuilding:
            report = await ops.rebuild_agenda(runtime.pool, runtime.settings.kafka_bootstrap, verify_only=verify)
        return JSONResponse(report)

    @router.get("/events", summary="The events of one booking or one correlation id across the topics, in time order")
    async def events(
        _: OpsPrincipal,
        booking: str | None = None,
        correlation: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> dict[str, Any]:
        if not booking and not correlation:
            raise field_problem("booking", tr("give ?booking=ID or ?correlation=ID"))
        location = None
        if booking and not correlation:
            location = await runtime.pool.fetchval("SELECT location_id FROM agenda WHERE booking_id = $1", booking)
        found = await ops.events_of(runtime.settings.kafka_bootstrap, booking, correlation, limit, location)
        return {"booking": booking, "correlation": correlation, "events": found}

    return router
