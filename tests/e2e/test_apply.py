"""`POST /apply` (what `stella apply -f` sends): converge, idempotence, dry run, atomicity."""

from __future__ import annotations

from pathlib import Path

import yaml

EXAMPLE = yaml.safe_load((Path(__file__).parents[2] / "examples" / "stella.yaml").read_text())


def actions(result):
    return {(e["kind"], e["name"]): e["action"] for e in result["entries"]}


def test_example_file_creates_everything_then_changes_nothing(api):
    first = api.post("/apply", EXAMPLE)
    assert first.status_code == 200, first.text
    assert set(actions(first.json()).values()) == {"create"}
    assert len(first.json()["entries"]) == 7
    assert list(first.json()["generated_webhook_secrets"]) == ["local-registry"]
    assert [e["slug"] for e in api.get("/environments").json()["items"]] == ["dev", "stage", "prod"]
    second = api.post("/apply", EXAMPLE).json()
    assert second["changed"] is False
    assert set(actions(second).values()) == {"unchanged"}
    assert second["generated_webhook_secrets"] == {}


def test_changed_entries_are_updated_with_their_fields_listed(api):
    api.post("/apply", EXAMPLE)
    changed = yaml.safe_load(yaml.safe_dump(EXAMPLE))
    changed["environments"][1]["approval_policy"]["required_approvals"] = 2
    changed["targets"][0]["labels"] = {"role": "worker"}
    result = api.post("/apply", changed).json()
    assert result["changed"] is True
    updates = [e for e in result["entries"] if e["action"] == "update"]
    assert [(e["name"], e["changes"]) for e in updates] == [
        ("stage", ["approval_policy"]),
        ("dev-docker-1", ["labels"]),
    ]
    assert api.get("/targets/dev-docker-1").json()["labels"] == {"role": "worker"}


def test_dry_run_plans_without_changing_anything(api):
    plan = api.post("/apply", EXAMPLE, params={"dry_run": "true"}).json()
    assert plan["dry_run"] is True
    assert set(actions(plan).values()) == {"create"}
    assert plan["generated_webhook_secrets"] == {}
    assert api.get("/environments").json()["items"] == []
    assert api.get("/audit-events", params={"resource_type": "environment"}).json()["items"] == []


def test_one_bad_entry_rolls_back_the_whole_document(api):
    broken = yaml.safe_load(yaml.safe_dump(EXAMPLE))
    broken["targets"][1]["connection"]["password"] = "hunter2"
    response = api.post("/apply", broken)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "targets.1.connection.password"
    assert "hunter2" not in response.text
    assert api.get("/environments").json()["items"] == []
    assert api.get("/components").json()["items"] == []


def test_schema_errors_name_their_path(api):
    response = api.post("/apply", {"environments": [{"name": "x", "slug": "x"}], "colour": 1})
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"environments.0.promotion_order", "colour"}


def test_domain_errors_name_their_entry(api):
    body = {
        "components": [
            {"name": "ok", "repository": "127.0.0.1:5000/app/ok"},
            {"name": "bad", "repository": "no-host"},
        ]
    }
    response = api.post("/apply", body)
    assert response.json()["errors"][0]["field"] == "components.1.repository"
