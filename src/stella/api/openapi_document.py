"""The OpenAPI document at /openapi.json, completed with what FastAPI cannot infer.

FastAPI documents the success response and a pydantic 422 of each operation. Stella answers
every error as an RFC 9457 problem document (`application/problem+json`), from handlers that
sit outside the routes (authentication, the body limit, the database going away), so each
operation is given the problems it can answer here, in one place. A client generated from the
document then knows every status it must handle; schemathesis checks the server keeps to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from stella.api.problems import PROBLEM_JSON
from stella.services.specs import WorkflowSpec

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document; `errors` names each rejected field.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "errors"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "string"},
    }
}

# status → (description, response headers); which operations get which is decided below
PROBLEMS: dict[str, tuple[str, dict[str, Any]]] = {
    "400": ("Malformed request: the body is not the envelope expected.", {}),
    "401": ("Missing, unknown, expired or revoked token.", {}),
    "403": ("The token's role does not allow this.", {}),
    "404": ("Not found, or it belongs to another tenant.", {}),
    "405": ("Refused by design (e.g. releases are immutable).", {}),
    "409": ("Conflicts with the current state or an existing resource.", {}),
    "413": ("The body is larger than the configured limit.", {}),
    "422": ("Invalid input: `errors` names each field and the reason.", {}),
    "429": ("Too many failed authentications from this client.", RETRY_AFTER),
    "502": ("A registry or another upstream refused or could not be reached.", {}),
    "503": ("The database is unavailable; retry after the given delay.", RETRY_AFTER),
}
WRITE_METHODS = {"post", "put", "patch", "delete"}
# operations that call a registry (or another upstream) while answering
UPSTREAM_TAGS = {"releases", "integrations", "attachments", "components", "webhooks"}


def _problem_statuses(path: str, method: str, tags: set[str]) -> list[str]:
    if not path.startswith("/api/v1/"):
        return []
    statuses = ["400", "401", "403", "404", "409", "422", "429", "503"]
    if method in WRITE_METHODS:
        statuses.append("413")
    if method in {"put", "patch", "delete"}:
        statuses.append("405")
    if tags & UPSTREAM_TAGS or "/attachments" in path:
        statuses.append("502")
    return statuses


def _problem_response(status: str) -> dict[str, Any]:
    description, headers = PROBLEMS[status]
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if headers:
        response["headers"] = headers
    return response


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Add the Problem schema, the raw-body schemas and each operation's problem responses."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    # pydantic's error shape is never sent: validation errors are problem documents too
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    workflow = WorkflowSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(workflow.pop("$defs", {}))
    schemas["WorkflowSpec"] = workflow
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in _problem_statuses(path, method, set(operation.get("tags", []))):
                responses[status] = _problem_response(status)
    return document


def install_openapi_document(app: FastAPI) -> None:
    """Serve the completed document (built once, on first request)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
