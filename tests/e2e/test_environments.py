"""Environments through the API: create, read by id or slug, update, uniqueness, validation."""

from __future__ import annotations

import pytest

PROD = {
    "name": "Production",
    "slug": "prod",
    "promotion_order": 3,
    "is_production": True,
    "gates": [
        "previous_environment",
        "security",
        "approval",
        "freeze_window",
        "policy",
        "health_check",
    ],
    "policies": ["prod-rules"],
    "approval_policy": {
        "required_approvals": 2,
        "approver_roles": ["approver", "admin"],
        "separation_of_duties": True,
    },
    "freeze_windows": [
        {"name": "year-end", "start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00Z"},
        {
            "name": "weekends",
            "rrule": "FREQ=WEEKLY;BYDAY=SA",
            "start": "2026-01-03T00:00:00",
            "duration": "PT48H",
            "timezone": "Europe/Berlin",
        },
    ],
}


def test_contract_example_round_trips(api):
    created = api.post("/environments", PROD)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["state"] == "active"
    for key in (
        "name",
        "slug",
        "promotion_order",
        "is_production",
        "gates",
        "policies",
        "approval_policy",
    ):
        assert body[key] == PROD[key]
    assert body["freeze_windows"][1]["timezone"] == "Europe/Berlin"
    assert api.get("/environments/prod").json() == body
    assert api.get(f"/environments/{body['id']}").json() == body


def test_list_is_ordered_by_promotion_order(api):
    for order, slug in [(3, "prod"), (1, "dev"), (2, "stage")]:
        assert (
            api.post(
                "/environments", {"name": slug, "slug": slug, "promotion_order": order}
            ).status_code
            == 201
        )
    page = api.get("/environments", params={"limit": 2}).json()
    assert [e["slug"] for e in page["items"]] == ["dev", "stage"]
    rest = api.get("/environments", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [e["slug"] for e in rest["items"]] == ["prod"]


def test_duplicate_slug_and_order_are_409_naming_the_holder(api):
    api.post("/environments", {"name": "Dev", "slug": "dev", "promotion_order": 1})
    same_slug = api.post("/environments", {"name": "Dev2", "slug": "dev", "promotion_order": 2})
    assert same_slug.status_code == 409
    assert "slug 'dev'" in same_slug.json()["detail"]
    same_order = api.post("/environments", {"name": "QA", "slug": "qa", "promotion_order": 1})
    assert same_order.status_code == 409
    assert "used by environment 'dev'" in same_order.json()["detail"]
    assert len(api.get("/environments").json()["items"]) == 1


def test_patch_changes_mutable_fields_and_is_audited(api):
    api.post("/environments", {"name": "Stage", "slug": "stage", "promotion_order": 2})
    patched = api.patch(
        "/environments/stage", {"state": "frozen", "approval_policy": {"required_approvals": 1}}
    )
    assert patched.status_code == 200
    assert patched.json()["state"] == "frozen"
    assert patched.json()["approval_policy"]["required_approvals"] == 1
    events = api.get("/audit-events", params={"action": "environment.updated"}).json()["items"]
    assert events[0]["details"]["changed"] == ["state", "approval_policy"]


def test_a_patch_setting_a_required_field_to_null_is_422_naming_it(api):
    """Found by the fuzz run: a null merged into the environment's spec was a 500."""
    api.post("/environments", {"name": "Stage", "slug": "stage", "promotion_order": 2})
    response = api.patch("/environments/stage", {"approval_policy": None, "is_production": None})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {"field": "is_production", "message": "may not be null"},
        {"field": "approval_policy", "message": "may not be null"},
    ]
    assert api.get("/environments/stage").json()["is_production"] is False


def test_slug_cannot_be_patched(api):
    api.post("/environments", {"name": "Stage", "slug": "stage", "promotion_order": 2})
    response = api.patch("/environments/stage", {"slug": "other"})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "slug", "message": "unknown field"}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X", "slug": "Not A Slug", "promotion_order": 1}, "slug"),
        ({"name": "X", "slug": "x", "promotion_order": 0}, "promotion_order"),
        ({"name": "X", "slug": "x", "promotion_order": "first"}, "promotion_order"),
        ({"name": "X", "slug": "x", "promotion_order": 1, "gates": ["coin_flip"]}, "gates.0"),
        ({"name": "X", "slug": "x", "promotion_order": 1, "colour": "red"}, "colour"),
        (
            {
                "name": "X",
                "slug": "x",
                "promotion_order": 1,
                "approval_policy": {"required_approvals": -1},
            },
            "approval_policy.required_approvals",
        ),
        (
            {
                "name": "X",
                "slug": "x",
                "promotion_order": 1,
                "approval_policy": {"approver_roles": ["god"]},
            },
            "approval_policy.approver_roles.0",
        ),
        (
            {
                "name": "X",
                "slug": "x",
                "promotion_order": 1,
                "freeze_windows": [
                    {"name": "w", "start": "2026-12-20T00:00:00Z", "end": "2026-12-19T00:00:00Z"}
                ],
            },
            "freeze_windows.0.end",
        ),
        (
            {
                "name": "X",
                "slug": "x",
                "promotion_order": 1,
                "freeze_windows": [
                    {"name": "w", "start": "2026-12-20T00:00:00", "end": "2026-12-21T00:00:00"}
                ],
            },
            "freeze_windows.0.start",
        ),
        (
            {
                "name": "X",
                "slug": "x",
                "promotion_order": 1,
                "freeze_windows": [
                    {"name": "w", "start": "yesterday", "end": "2026-12-21T00:00:00Z"}
                ],
            },
            "freeze_windows.0.start",
        ),
        (
            {
                "name": "X",
                "slug": "x",
                "promotion_order": 1,
                "freeze_windows": [
                    {
                        "name": "w",
                        "rrule": "FREQ=WEEKLY",
                        "start": "2026-01-03T00:00:00",
                        "duration": "forever",
                        "timezone": "Mars/Olympus",
                    }
                ],
            },
            "freeze_windows.0.duration",
        ),
        (
            {
                "name": "X",
                "slug": "x",
                "promotion_order": 1,
                "freeze_windows": [
                    {
                        "name": "w",
                        "rrule": "FREQ=HOURLY",
                        "start": "2026-01-03T00:00:00",
                        "duration": "1h",
                    }
                ],
            },
            "freeze_windows.0.rrule",
        ),
    ],
    ids=[
        "bad-slug",
        "order-zero",
        "order-type",
        "unknown-gate",
        "unknown-field",
        "negative-approvals",
        "unknown-role",
        "end-before-start",
        "naive-start",
        "unparseable-start",
        "bad-duration",
        "bad-rrule",
    ],
)
def test_invalid_environment_is_422_naming_the_field(api, body, field):
    response = api.post("/environments", body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert api.get("/environments").json()["items"] == []


def test_unknown_timezone_is_reported_with_every_other_problem(api):
    response = api.post(
        "/environments",
        {
            "name": "X",
            "slug": "x",
            "promotion_order": 1,
            "freeze_windows": [
                {
                    "name": "w",
                    "rrule": "FREQ=WEEKLY",
                    "start": "2026-01-03T00:00:00",
                    "duration": "forever",
                    "timezone": "Mars/Olympus",
                }
            ],
        },
    )
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["freeze_windows.0.duration", "freeze_windows.0.timezone"]


def test_unknown_and_deleted_ids_are_404(api):
    assert api.get("/environments/nope").status_code == 404
    api.post("/environments", {"name": "Tmp", "slug": "tmp", "promotion_order": 9})
    assert api.delete("/environments/tmp").status_code == 204
    assert api.get("/environments/tmp").status_code == 404
    assert api.patch("/environments/tmp", {"state": "frozen"}).status_code == 404
    assert api.delete("/environments/tmp").status_code == 404


def test_environment_with_targets_cannot_be_deleted(api):
    api.post("/environments", {"name": "Dev", "slug": "dev", "promotion_order": 1})
    api.post("/targets", {"name": "web-1", "environment": "dev", "type": "docker_host"})
    response = api.delete("/environments/dev")
    assert response.status_code == 409
    assert "retired" in response.json()["detail"]


def test_environment_with_recorded_history_cannot_be_deleted(api):
    """Security verdicts (computed for every environment when a scan arrives), promotions,
    deployments and agents name their environment: deleting it would orphan an append-only
    record, so it is refused with the way out, not a storage error."""
    api.post("/environments", {"name": "Dev", "slug": "dev", "promotion_order": 1})
    scan = api.post("/scans", {"digest": "sha256:" + "1" * 64, "findings": []})
    assert scan.status_code == 201, scan.text
    response = api.delete("/environments/dev")
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert "recorded history (security_verdicts)" in detail
    assert "retired" in detail
    assert "duplicate" not in detail
    assert api.get("/environments/dev").status_code == 200


@pytest.mark.parametrize(
    ("rrule", "fragment"),
    [
        ("FREQ=WEEKLY;BYDAY=XX", "not a valid RRULE"),
        ("FREQ=SECONDLY", "FREQ=DAILY"),
        ("FREQ=DAILY;INTERVAL=abc", "not a valid RRULE"),
    ],
)
def test_freeze_windows_with_invalid_rrules_are_422(api, rrule, fragment):
    response = api.post(
        "/environments",
        {
            "name": "X",
            "slug": "x",
            "promotion_order": 1,
            "freeze_windows": [
                {
                    "name": "w",
                    "rrule": rrule,
                    "start": "2026-01-03T00:00:00",
                    "duration": "1h",
                    "timezone": "Europe/Berlin",
                }
            ],
        },
    )
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["field"], fragment in error["message"]) == ("freeze_windows.0.rrule", True)
