"""`Idempotency-Key` on POST: a retried request is answered with what its first attempt did.

A client that lost the answer to a POST (a timeout, a dropped connection, a 503 raised after the
change was committed) cannot tell whether the change happened. Sent again with the same key, the
request does not make the change twice: it is answered with the resource the first attempt
made or changed, as it is now, with the status the first attempt would have had and
`Idempotent-Replayed: true`. The key is recorded in the transaction that makes the change
(`stella.services.context.record`), so a key exists exactly when its change does.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from anyio import to_thread
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stella.api.middleware import replaying
from stella.api.problems import documented_path, problem, storage_unavailable
from stella.bootstrap import Container
from stella.domain.errors import FieldError, StellaError
from stella.services.context import IdempotencyKey
from stella.services.idempotency import recorded_key

HEADER = b"idempotency-key"
REPLAYED = (b"idempotent-replayed", b"true")
KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as in the IETF draft's examples
# where a replay reads the resource the first attempt made or changed
RESOURCE_PATHS = {
    "promotion": "/api/v1/promotions/{id}",
    "release": "/api/v1/releases/{id}",
    "environment": "/api/v1/environments/{id}",
    "target": "/api/v1/targets/{id}",
    "component": "/api/v1/components/{id}",
    "workflow_run": "/api/v1/workflow-runs/{id}",
}
# what a replayed GET must not carry over from the POST
_DROPPED_HEADERS = {b"content-length", b"content-type", b"transfer-encoding", HEADER}


def fingerprint(scope: Scope, body: bytes) -> str:
    """Method, path, query and body: the same key with another request is a client's mistake."""
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(), scope["query_string"], body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _invalid_key(message: str) -> JSONResponse:
    error = FieldError("Idempotency-Key", message)
    return problem(422, "Invalid input", f"{error.field}: {message}", [error])


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class IdempotencyMiddleware:
    """Looks the key up before the route runs; hands it to the route through the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_key = headers.get(HEADER)
        if raw_key is None or not scope["path"].startswith("/api/v1/"):
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        if not KEY.match(key):
            refusal = _invalid_key("must be 1 to 255 visible ASCII characters (e.g. a UUID)")
            await refusal(scope, receive, send)
            return
        body = await _read_body(receive)
        request_print = fingerprint(scope, body)
        container: Container = scope["app"].state.container
        authorization = headers.get(b"authorization", b"").decode("latin-1") or None
        try:
            found = await to_thread.run_sync(recorded_key, container.read_uow, authorization, key)
        except (StellaError, OperationalError):
            # outside the app's exception handlers: a database outage must still be a 503
            await storage_unavailable()(scope, receive, send)
            return
        if found is not None:
            if found["fingerprint"] != request_print:
                refusal = _invalid_key(
                    "was used for a different request (method, path or body); use a new key"
                )
                await refusal(scope, receive, send)
                return
            await self._replay(scope, found, send)
            return
        scope.setdefault("state", {})["idempotency"] = IdempotencyKey(key, request_print)
        await self.app(scope, replaying(body, receive), send)

    async def _replay(self, scope: Scope, found: dict[str, Any], send: Send) -> None:
        """The first attempt's resource through its own GET route (same caller, same rules)."""
        status = _route_status(scope)
        path = RESOURCE_PATHS[found["resource_type"]].format(id=found["resource_id"])
        read: Scope = dict(scope)
        read.update(
            method="GET",
            path=path,
            raw_path=path.encode(),
            query_string=b"",
            headers=[(k, v) for k, v in scope["headers"] if k not in _DROPPED_HEADERS],
        )

        async def no_body() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                if message["status"] == 200:
                    message["status"] = status
                message["headers"] = [*message.get("headers", []), REPLAYED]
            await send(message)

        await self.app(read, no_body, answer)


def _route_status(scope: Scope) -> int:
    """The status the operation answers on success (201 for a creation, else 200), as the
    OpenAPI document says (FastAPI nests its routes; the document names each operation)."""
    documented = documented_path(scope["app"], scope["path"]) or {}
    post = documented.get("post", {"responses": {"200": {}}})
    return min(int(code) for code in post["responses"] if code.startswith("2"))
