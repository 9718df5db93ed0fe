"""ASGI middleware: correlation ids, access logs and the request body limit."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stella.adapters.metrics import observe_request
from stella.api.problems import problem
from stella.domain.errors import FieldError
from stella.logging_setup import request_id_var

log = logging.getLogger("stella.api")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Sent with every response: API answers are never cached, sniffed or framed.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class RequestContextMiddleware:
    """Takes (or makes) `X-Request-ID`, exposes it to logs, echoes it, logs each request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                present = {name.lower() for name, _ in message["headers"]}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = [
                    *message["headers"],
                    *extra,
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            observe_request(
                scope["method"], _route_template(scope), status, time.perf_counter() - started
            )
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id_var.reset(token)


def _route_template(scope: Scope) -> str:
    """`/api/v1/promotions/{ref}` rather than the concrete path: bounded metric labels."""
    route = getattr(scope.get("route"), "path", None)
    if route is None:
        return "unmatched"
    prefix = "/api/v1"
    if scope["path"].startswith(prefix) and not str(route).startswith(prefix):
        return prefix + str(route)  # routes of included routers carry their path without the prefix
    return str(route)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app a body already read, then passes on what follows (the
    disconnect): for middleware that must read the body before the app does."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class BodyLimitMiddleware:
    """Answers 413 before reading a body larger than `max_bytes` (declared or streamed)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        upload_paths: frozenset[str] = frozenset(),
        upload_max_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # documents (SBOMs, VEX, attestations) may be larger than any other request body
        self.upload_paths = upload_paths
        self.upload_max_bytes = upload_max_bytes or max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].rstrip("/") in self.upload_paths:
            limit, setting = self.upload_max_bytes, "STELLA_ATTACHMENT_MAX_BYTES"
        else:
            limit, setting = self.max_bytes, "STELLA_MAX_BODY_BYTES"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, receive, send, limit, setting)
            return
        if declared is not None:
            await self.app(scope, receive, send)  # the server enforces the declared length
            return
        # No declared length (chunked): read the body here, up to the limit, and hand it on.
        # Raising from inside the app's receive would surface as the framework's own 400.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._reject(scope, receive, send, limit, setting)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    async def _reject(
        self, scope: Scope, receive: Receive, send: Send, limit: int, setting: str
    ) -> None:
        refusal = problem(
            413,
            "Payload too large",
            f"request body exceeds {limit} bytes ({setting})",
            [FieldError("body", f"larger than {limit} bytes")],
        )
        await refusal(scope, receive, send)
