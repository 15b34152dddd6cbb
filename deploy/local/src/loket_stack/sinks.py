"""The stack's SMTP server and SMS gateway sink.

SMTP (aiosmtpd, with SMTPUTF8): every message is kept as an `.eml` file in the mail folder.
SMS (HTTP, `POST /sms` with `{"to", "body"}`): every SMS is one JSON line (`to`, `body`, `sent_at`).
Both can be told to refuse for a while (`POST /control/refuse?seconds=N` with `channel=smtp|sms`),
so tests can check retries against the real servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

REFUSE_UNTIL: dict[str, float] = {"smtp": 0.0, "sms": 0.0}


_HEADER_PARSER = BytesHeaderParser()


class MailFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if time.time() < REFUSE_UNTIL["smtp"]:
            return "451 4.3.0 Temporarily refusing mail (test switch)"
        raw = envelope.original_content or b""
        # Only the header is read (the Message-ID names the file): the body is kept as it came.
        headers = _HEADER_PARSER.parsebytes(raw)
        message_id = (headers.get("Message-ID") or make_msgid()).strip("<>").replace("/", "_")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.folder / f"{stamp}-{message_id}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, path)  # a reader never sees half a message
        return "250 OK"


def mail_server(mail_dir: Path, port: int, host: str = "127.0.0.1") -> Controller:
    """The SMTP server (not started), with SMTPUTF8 (RFC 6531) on, as most mail servers have it
    today (aiosmtpd's Controller turns it on unless told otherwise; said here so that it stays):
    a message to jörg@example.org arrives."""
    return Controller(MailFolder(mail_dir), hostname=host, port=port, enable_SMTPUTF8=True)


def sms_app(sms_file: Path) -> FastAPI:
    app = FastAPI(title="Loket local SMS sink")
    sms_file.parent.mkdir(parents=True, exist_ok=True)

    @app.post("/sms")
    async def receive(request: Request) -> JSONResponse:
        if time.time() < REFUSE_UNTIL["sms"]:
            return JSONResponse({"error": "temporarily refusing (test switch)"}, status_code=503)
        body: dict[str, Any] = await request.json()
        if not isinstance(body.get("to"), str) or not isinstance(body.get("body"), str):
            return JSONResponse({"error": "to and body are required strings"}, status_code=400)
        line = {"to": body["to"], "body": body["body"], "sent_at": datetime.now(UTC).isoformat()}
        with sms_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
        return JSONResponse({"status": "accepted"}, status_code=202)

    @app.post("/control/refuse")
    async def refuse(channel: str, seconds: float) -> dict[str, str]:
        REFUSE_UNTIL[channel] = time.time() + seconds
        return {"status": f"{channel} refuses for {seconds}s"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mail-dir", type=Path, required=True)
    parser.add_argument("--sms-file", type=Path, required=True)
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--sms-port", type=int, default=8105)
    args = parser.parse_args()
    controller = mail_server(args.mail_dir, args.smtp_port)
    controller.start()
    try:
        uvicorn.run(sms_app(args.sms_file), host="127.0.0.1", port=args.sms_port, log_level="warning")
    finally:
        controller.stop()


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
