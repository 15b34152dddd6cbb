"""Ops routes of notifications for issue 15: every failed message, and resending one.

A message ends `failed` only for a permanent fault (address refused by the mail server, erased
person, unknown booking) or repeated faults of its own; outages of other parts are waited out
(`application.sender`). Ops see the failed ones here, newest first, and send one again once the
cause is dealt with (the resident corrected the address, a bug was fixed)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query

from loket_notifications.adapters.postgres import RESENDABLE, PostgresStore
from loket_notifications.application.sender import Sender
from loket_runtime.auth import Principal, require_role
from loket_runtime.i18n import tr
from loket_runtime.logging import get_logger
from loket_runtime.problems import Problem, field_problem
from loket_runtime.service import ServiceRuntime

log = get_logger(__name__)


def masked_recipient(recipient: str | None) -> str | None:
    """Ops see enough to tell addresses apart, not the whole address."""
    if not recipient:
        return recipient
    if "@" in recipient:
        local_part, _, domain = recipient.partition("@")
        return f"{local_part[:1]}***@{domain}"
    return f"{recipient[:4]}***{recipient[-2:]}"


def utc_iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def install_ops_routes(
    app: FastAPI, runtime: ServiceRuntime, store: PostgresStore, sender: Sender, clock: Callable[[], datetime]
) -> None:
    def _row_out(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(r["id"]),
            "booking": r["booking_id"],
            "kind": r["kind"],
            "channel": r["channel"],
            "version": r["version"],
            "status": r["status"],
            "attempts": r["attempts"],
            "faults": r["faults"],
            "recipient": masked_recipient(r["recipient"]),
            "created_at": utc_iso(r["created_at"]),
            "finished_at": utc_iso(r["finished_at"]),
            "error": r["last_error"],
        }

    @app.get(
        "/api/v1/ops/notifications/failed",
        tags=["operations"],
        summary="Every message that failed for good, newest first (page on with `before` = the last `cursor`)",
    )
    async def list_failed(
        principal: Annotated[Principal, require_role("ops")],
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        before: Annotated[str | None, Query(max_length=100, description="the `next` cursor of a page")] = None,
    ) -> dict[str, Any]:
        cursor: tuple[datetime, uuid.UUID] | None = None
        if before:
            try:
                at, _, ident = before.partition("~")
                cursor = (datetime.fromisoformat(at), uuid.UUID(ident))
                if cursor[0].tzinfo is None:
                    raise ValueError("no offset")
            except ValueError:
                raise field_problem("before", tr("not a cursor given by this listing")) from None
        rows = await store.failed(runtime.pool, limit, cursor)
        last = rows[-1] if len(rows) == limit else None
        return {
            "notifications": [_row_out(r) for r in rows],
            "next": f"{utc_iso(last['finished_at'])}~{last['id']}" if last else None,
        }

    @app.post(
        "/api/v1/ops/notifications/{notification_id}/resend",
        status_code=202,
        tags=["operations"],
        summary="Send a failed, skipped or sent message again (rendered afresh, retried until it goes)",
    )
    async def resend(principal: Annotated[Principal, require_role("ops")], notification_id: str) -> dict[str, Any]:
        try:
            ident = uuid.UUID(notification_id)
        except ValueError:
            raise Problem(404, tr("Not found"), tr("No such notification.")) from None
        was = await store.resend(runtime.pool, ident, clock())
        if was is None:
            raise Problem(404, tr("Not found"), tr("No such notification."))
        if was not in RESENDABLE:
            raise Problem(
                409,
                tr("Conflict"),
                tr("The notification is %(state)s: only failed, skipped or sent ones are resent.", state=was),
                "conflict",
            )
        sender.wake()
        log.info("notification resent by ops", notification_id=notification_id, was=was, by=principal.subject)
        return {"id": notification_id, "status": "pending", "was": was}
