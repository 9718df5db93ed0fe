"""Mounting the UI on the application: static files, page routes, HTML error pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from stella.api.problems import allowed_methods
from stella.domain.errors import StellaError
from stella.services.web_sessions import SessionExpired
from stella.web import pages
from stella.web.core import COOKIE, HERE, error_page, is_page, login_redirect

Handler = Callable[[Request, Exception], Awaitable[Response]]


def install_web(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in pages.MODULES:
        app.include_router(module.router, include_in_schema=False)
    for kind in (StellaError, StarletteHTTPException, RequestValidationError):
        _wrap(app, kind)


def _wrap(app: FastAPI, kind: type[Exception]) -> None:
    """Pages answer errors with an HTML page; the API keeps its problem documents."""
    api_handler: Handler = app.exception_handlers[kind]  # type: ignore[assignment]

    async def handler(request: Request, exc: Exception) -> Response:
        if not is_page(request):
            return await api_handler(request, exc)
        if isinstance(exc, SessionExpired):
            return login_redirect(request, expired=bool(request.cookies.get(COOKIE)))
        if isinstance(exc, StellaError):
            return error_page(request, exc.status, exc.title, exc.detail)
        if isinstance(exc, StarletteHTTPException):
            title = "Not found" if exc.status_code == 404 else "Error"
            detail = (
                "There is nothing at this address. It may have been mistyped, or the thing it "
                "named belongs to another tenant."
                if exc.status_code == 404
                else str(exc.detail)
            )
            page = error_page(request, exc.status_code, title, detail)
            page.headers.update(exc.headers or {})
            if exc.status_code == 405:
                page.headers["Allow"] = allowed_methods(request)
            return page
        return error_page(request, 422, "Invalid request", "Some of the values sent are invalid.")

    app.add_exception_handler(kind, handler)
