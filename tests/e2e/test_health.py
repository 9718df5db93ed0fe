"""Health endpoints, the OpenAPI document and cross-cutting HTTP behaviour."""

from __future__ import annotations


def test_healthz_answers_without_a_token(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database(client, database):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == database.kind


def test_openapi_document_lists_the_v1_resources(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/environments",
        "/api/v1/releases",
        "/api/v1/targets",
        "/api/v1/components/{ref}/versions",
        "/api/v1/webhooks/registry/{integration_id}",
        "/api/v1/audit-events",
        "/api/v1/integrations",
    ):
        assert path in paths


def test_request_id_is_echoed_or_generated(api):
    given = api.get("/environments", headers={"X-Request-ID": "trace-123"})
    assert given.headers["x-request-id"] == "trace-123"
    generated = api.get("/environments")
    assert len(generated.headers["x-request-id"]) == 32


def test_request_id_is_recorded_on_audit_events(api):
    created = api.post(
        "/components",
        {"name": "api", "repository": "127.0.0.1:5000/app/api"},
        headers={"X-Request-ID": "corr-42"},
    )
    assert created.status_code == 201
    events = api.get("/audit-events", params={"resource_type": "component"}).json()["items"]
    assert events[0]["correlation_id"] == "corr-42"
    assert events[0]["action"] == "component.created"


def test_oversized_body_is_413_and_stores_nothing(api):
    huge = {
        "name": "api",
        "repository": "127.0.0.1:5000/app/api",
        "runtime": {"command": "x" * 70_000},
    }
    response = api.post("/components", huge)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "body"
    assert api.get("/components").json()["items"] == []


def test_invalid_json_is_422_naming_the_body(api):
    response = api.request(
        "POST", "/environments", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "body", "message": "body is not valid JSON"}]


def test_unknown_route_is_a_problem_document(api):
    response = api.get("/nothing-here")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_numbers_beyond_the_database_range_are_422_not_500(api):
    """Regression: schemathesis found a 500 for a version beyond PostgreSQL's integer range."""
    assert api.get("/workflows/x/versions/2323086496").status_code == 422
    response = api.post("/environments", {"name": "X", "slug": "x", "promotion_order": 99999999999})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "promotion_order"


def test_chunked_oversized_body_is_413_too(api):
    """Regression (review): a streamed body over the limit came back as a 400 from FastAPI."""

    def chunks():
        for _ in range(70):
            yield b" " * 1024

    response = api.request(
        "POST", "/components", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "body"


def test_chunked_body_within_the_limit_is_accepted(api):
    body = b'{"name": "api", "repository": "127.0.0.1:5000/app/api"}'

    def chunks():
        yield body[:10]
        yield body[10:]

    response = api.request(
        "POST", "/components", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201
