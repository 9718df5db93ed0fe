"""Dev → stage → prod through the CLI against a real server, on SQLite and PostgreSQL:
approvals with separation of duties, a freeze window with a break-glass override, a Rego policy,
and decisions that verify offline and replay identically."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid

import pytest
import yaml

from tests.conftest import REGISTRY, create_database, drop_database, free_port
from tests.support.live import STELLA, start_server
from tests.support.oci import push_image
from tests.support.promotions import ALWAYS_FROZEN, PROD_RULES, pipeline

ESTATE = {
    "environments": pipeline([ALWAYS_FROZEN]),
    "components": [{"name": "api", "repository": f"{REGISTRY}/app/promo"}],
    "targets": [{"name": "prod-1", "environment": "prod", "type": "ssh_remote"}],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, tmp_path):
    database = create_database(request.param, tmp_path, migrate=False)
    server = start_server([STELLA, "server"], tmp_path / "home", free_port(), database.url)
    yield server
    server.stop()
    drop_database(database)


def run(live, *args, token=None, check=True, env=None):
    environment = live.cli_env() | ({"STELLA_TOKEN": token} if token else {}) | (env or {})
    result = subprocess.run(
        [STELLA, *args], env=environment, capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert result.returncode == 0, f"stella {' '.join(args)}: {result.stderr}{result.stdout}"
    return result


def test_dev_stage_prod_through_the_cli(live, registry_url, tmp_path):
    (tmp_path / "estate.yaml").write_text(yaml.safe_dump(ESTATE))
    (tmp_path / "prod-rules.rego").write_text(PROD_RULES)
    run(live, "policy", "apply", "-f", str(tmp_path / "prod-rules.rego"))
    run(live, "apply", "-f", str(tmp_path / "estate.yaml"))
    with live.api() as api:
        api.patch("/targets/prod-1", json={"health": "healthy"})
    tag = f"v-{uuid.uuid4().hex[:6]}"
    digest = push_image(registry_url, "app/promo", tag, f"promo {tag}")
    run(live, "release", "create", "--name", "api", "--version", "2.3.1", "-c", f"api={tag}")
    (tmp_path / "scan.json").write_text(
        json.dumps({"findings": [{"id": "CVE-1", "severity": "low"}]})
    )
    run(live, "scan", "upload", "--digest", digest, str(tmp_path / "scan.json"))
    alice = run(live, "user", "create", "alice", "--role", "approver").stdout.strip()
    bob = run(live, "user", "create", "bob", "--role", "approver").stdout.strip()

    assert "approved" in run(live, "promote", "api@2.3.1", "--to", "dev", "--wait").stdout
    stage = json.loads(run(live, "promote", "api@2.3.1", "--to", "stage", "-o", "json").stdout)
    assert stage["state"] == "awaiting_approval"
    run(live, "approve", stage["id"], "--comment", "smoke ok", token=alice)

    prod = json.loads(run(live, "promote", "api@2.3.1", "--to", "prod", "-o", "json").stdout)
    assert prod["state"] == "blocked"
    shown = run(live, "promotion", "show", prod["id"]).stdout
    assert "freeze_window" in shown
    assert "inside freeze window 'always'" in shown
    run(live, "promotion", "override", prod["id"], "--reason", "incident 7 needs the fix now")
    own = run(live, "approve", prod["id"], check=False)
    assert own.returncode == 1
    assert "separation of duties" in own.stderr
    run(live, "approve", prod["id"], token=alice)
    final = json.loads(run(live, "approve", prod["id"], "-o", "json", token=bob).stdout)
    assert final["state"] == "approved"
    listed = json.loads(run(live, "promotion", "list", "--env", "prod", "-o", "json").stdout)
    assert [p["state"] for p in listed] == ["approved"]

    run(live, "keys", "export", "-o", str(tmp_path / "key.pem"))
    offline = {"STELLA_URL": f"http://127.0.0.1:{free_port()}", "STELLA_TOKEN": "none"}
    for promotion in (stage, prod):
        record = tmp_path / f"{promotion['id']}.json"
        run(live, "decision", "get", promotion["id"], "-o", str(record))
        verified = run(
            live, "decision", "verify", str(record), "--key", str(tmp_path / "key.pem"), env=offline
        )
        assert f"verified: promotion {promotion['id']} approved" in verified.stdout
        assert "identical" in run(live, "decision", "replay", promotion["id"]).stdout

    record = tmp_path / f"{prod['id']}.json"
    envelope = json.loads(record.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["reason"] = "every gate passed, honest"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    record.write_text(json.dumps(envelope))
    tampered = run(
        live,
        "decision",
        "verify",
        str(record),
        "--key",
        str(tmp_path / "key.pem"),
        env=offline,
        check=False,
    )
    assert tampered.returncode == 1
    assert tampered.stderr == (
        "error: verification failed: the signature does not match the payload "
        "(the envelope was altered)\n"
    )


def test_token_rotation_through_the_cli(live):
    old = run(live, "user", "create", "ci-bot", "--role", "releaser").stdout.strip()
    new = run(live, "user", "token", "create", "ci-bot").stdout.strip()
    assert new.startswith("stl_")
    assert new != old
    listed = json.loads(run(live, "user", "token", "list", "ci-bot", "-o", "json").stdout)
    assert [t["prefix"] for t in listed] == [old[:12], new[:12]]
    old_id = listed[0]["id"]
    revoked = run(live, "user", "token", "revoke", "ci-bot", "--id", old_id, "--yes", "-o", "json")
    assert json.loads(revoked.stdout)[0]["revoked_at"]
    refused = run(live, "env", "list", token=old, check=False)
    assert refused.returncode != 0
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert run(live, "env", "list", token=new).returncode == 0
    again = run(live, "user", "token", "revoke", "ci-bot", "--id", old_id, "--yes", check=False)
    assert again.returncode != 0
    assert "already revoked" in again.stderr
    everything = run(live, "user", "token", "revoke", "ci-bot", "--yes", "-o", "json")
    assert [t["prefix"] for t in json.loads(everything.stdout)] == [new[:12]]
    assert run(live, "env", "list", token=new, check=False).returncode != 0
