"""The FastAPI application: routers, middleware, problem handlers, health endpoints."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

import stella
from stella.adapters.metrics import exposition
from stella.api.deps import AuthFailureLimiter
from stella.api.idempotency import IdempotencyMiddleware
from stella.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from stella.api.openapi_document import install_openapi_document
from stella.api.problems import install_problem_handlers, problem
from stella.api.routes import (
    agents,
    attachments,
    components,
    deployments,
    environments,
    evidence,
    integrations,
    misc,
    promotions,
    releases,
    security,
    targets,
    workflows,
)
from stella.bootstrap import Container
from stella.web.install import install_web

API_PREFIX = "/api/v1"


def create_app(container: Container) -> FastAPI:
    """Build the application around an already wired container."""
    app = FastAPI(
        title="Stella Release Orchestrator",
        version=stella.__version__,
        description="Digest-first release control plane. Errors are RFC 9457 problem documents.",
    )
    app.state.container = container
    app.state.auth_limiter = AuthFailureLimiter(container.settings.auth_failures_per_minute)
    for module in (
        environments,
        targets,
        components,
        integrations,
        releases,
        workflows,
        promotions,
        agents,
        deployments,
        evidence,
        misc,
        attachments,
        security,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    install_problem_handlers(app)
    app.add_middleware(IdempotencyMiddleware)  # innermost: sees the body BodyLimit admitted
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=container.settings.max_body_bytes,
        upload_paths=attachments.UPLOAD_PATHS | security.UPLOAD_PATHS,
        upload_max_bytes=container.settings.attachment_max_bytes,
    )
    app.add_middleware(RequestContextMiddleware)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=None)
    def readyz() -> JSONResponse:
        """The database answers."""
        try:
            with container.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure means "not ready", reported as 503
            return problem(
                503, "Not ready", "the database is unavailable", headers={"Retry-After": "5"}
            )
        return JSONResponse({"status": "ready", "database": container.engine.dialect.name})

    install_openapi_document(app)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics() -> Response:
        """Prometheus text exposition (no token: scrape it from inside the network)."""
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    install_web(app)
    return app
