"""RFC 9457 problem documents for every error: StellaError, validation, routing, database."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, compile_path

from stella.domain.errors import FieldError, RateLimited, StellaError

log = logging.getLogger("stella.api")
PROBLEM_JSON = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [{"field": e.field, "message": e.message} for e in errors or []],
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _validation_message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "json_invalid":
        return "body is not valid JSON"
    if error["type"] == "missing":
        return "is required"
    return str(error["msg"]).removeprefix("Value error, ")


def documented_path(app: FastAPI, path: str) -> dict[str, Any] | None:
    """The operations of the most specific document path matching the concrete `path` (fewest
    parameters: OpenAPI matches `/agents/enroll` before `/agents/{ref}`), or None."""
    best: tuple[int, dict[str, Any]] | None = None
    for template, item in app.openapi().get("paths", {}).items():
        regex, _format, convertors = compile_path(template)
        if regex.match(path) and (best is None or len(convertors) < best[0]):
            best = (len(convertors), item)
    return None if best is None else best[1]


PROBED_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method some route answers at this path (RFC 9110 `Allow`), not only the methods
    of the first route that matched the path, as Starlette's own 405 says. Each method is
    probed through the router's own matching (FastAPI nests included routers).

    Where the OpenAPI document describes the path, only the methods of its most specific
    template count, as OpenAPI matches concrete paths before templated ones: `/agents/enroll`
    is POST only, although a GET there reaches `/agents/{ref}` (and finds no such agent)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in PROBED_METHODS
        if any(
            route.matches(dict(request.scope, method=method))[0] is Match.FULL for route in routes
        )
    ]
    documented = documented_path(request.app, request.scope["path"])
    if documented is not None:
        allowed = [method for method in allowed if method.lower() in documented]
    return ", ".join(allowed)


async def _stella_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StellaError)  # noqa: S101 - registered for StellaError only
    headers = {"Retry-After": "5"} if exc.status == 503 else None
    if exc.status == 405:
        headers = {"Allow": allowed_methods(request)}
    if exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    return problem(exc.status, exc.title, exc.detail, exc.errors, headers)


async def _request_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = [
        FieldError(
            "body" if e["type"] == "json_invalid" else _field_path(tuple(e["loc"])),
            _validation_message(e),
        )
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem(422, "Invalid input", detail, errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        headers = (headers or {}) | {"Allow": allowed_methods(request)}
    return problem(exc.status_code, str(exc.detail), str(exc.detail), headers=headers)


def storage_unavailable() -> JSONResponse:
    return problem(
        503,
        "Storage unavailable",
        "the database is unavailable; retry shortly",
        headers={"Retry-After": "5"},
    )


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", type(exc).__name__)
    return storage_unavailable()


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "an unexpected error occurred; see the server log")


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers; nothing reaches the client as a stack trace."""
    app.add_exception_handler(StellaError, _stella_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
