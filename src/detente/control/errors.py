"""How the API refuses: every error is a JSON ``{"detail": str}`` with a 4xx (or 507
when the disk is full), naming the field and the bad value; no traceback reaches a
client, and none stops the control plane. Request bodies are capped (`BodyLimit`)."""

from __future__ import annotations

import errno
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from detente.control import audit, auth, jobs, manifests
from detente.control.lease import Fenced

log = logging.getLogger("detente")

_ERR = {"content": {"application/json": {"schema": {
    "type": "object", "properties": {"detail": {"type": "string"}}}}}}  # fmt: skip
#: The status codes any route may answer besides its own (documented in OpenAPI).
RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid request: names the field and the bad value", **_ERR},
    401: {"description": "Missing or invalid bearer token", **_ERR},
    403: {"description": "Not allowed for this user", **_ERR},
    404: {"description": "No such object (or not visible to this user)", **_ERR},
    409: {"description": "Conflicting concurrent change; retry", **_ERR},
    413: {"description": "Request or script too large", **_ERR},
    422: {"description": "Invalid request body or parameters", **_ERR},
    507: {"description": "The control plane's disk is full", **_ERR},
}


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _validation(_: Request, e: Exception) -> JSONResponse:
    assert isinstance(e, RequestValidationError)
    lines = []
    for err in e.errors()[:20]:
        got = ascii(err.get("input"))[:100]  # ascii(): lone surrogates cannot break JSON
        lines.append(f"{_where(err['loc'])}: {err['msg']} (got {got})")
    return JSONResponse({"detail": "; ".join(lines)}, status_code=422)


def disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(e).lower()
    return "disk is full" in text or "no space left" in text or "database or disk is full" in text


def install(app: FastAPI, sessions: sessionmaker[Session]) -> None:
    """Registers the handlers on ``app``; refused authorizations (403) are audited."""

    def job_error(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, jobs.JobError)
        if e.status == 403:
            _audit_refusal(sessions, request, str(e))
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    def bad_request(_: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=400)

    def too_deep(_: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": "request nested too deeply"}, status_code=400)

    def storage(request: Request, e: Exception) -> JSONResponse:
        if disk_full(e):
            log.error("disk full while serving %s %s", request.method, request.url.path)
            return JSONResponse({"detail": "the control plane's disk is full"}, status_code=507)
        log.exception("store error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "store unavailable; try again"}, status_code=503)

    def standby(_: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=503)

    app.add_exception_handler(Fenced, standby)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(jobs.JobError, job_error)
    app.add_exception_handler(manifests.ApplyError, bad_request)
    app.add_exception_handler(auth.AuthError, bad_request)
    app.add_exception_handler(RecursionError, too_deep)
    app.add_exception_handler(OperationalError, storage)
    app.add_exception_handler(OSError, storage)


def _audit_refusal(sessions: sessionmaker[Session], request: Request, why: str) -> None:
    header = request.headers.get("authorization", "")
    try:
        with sessions() as s:
            who = auth.authenticate(s, header[7:] if header.lower().startswith("bearer ") else None)
            audit.record(s, who.name, "refused", f"{request.method} {request.url.path}: {why}",
                         "refused", time.time())  # fmt: skip
            s.commit()
    except Exception:  # the refusal stands even if it cannot be recorded
        log.exception("could not record a refusal in the audit log")


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, by Content-Length or while
    streaming, before the app reads them into memory."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length" and v.isdigit() and int(v) > self.limit:
                await self._refuse(send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = b'{"detail":"request body too large"}'
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
