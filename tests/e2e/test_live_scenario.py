"""The issue's end-to-end scenario on a real server process, through the CLI and the API.

Declare dev/stage/prod with `stella apply`, push an image to the loopback registry, create a
release from `repo:tag`, read it back with the digest, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import REGISTRY, create_database, drop_database, free_port
from tests.support.live import STELLA, LiveServer, start_server
from tests.support.oci import push_image

EXAMPLE = Path(__file__).parents[2] / "examples" / "stella.yaml"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request, tmp_path_factory) -> LiveServer:
    tmp = tmp_path_factory.mktemp(f"live-{request.param}")
    database = create_database(request.param, tmp, migrate=False)
    server = start_server([STELLA, "server"], tmp / "home", free_port(), database.url)
    yield server
    server.stop()
    drop_database(database)


def test_scenario_through_the_cli(live, registry_url, tmp_path):
    first = live.cli("apply", "-f", str(EXAMPLE), check=True)
    assert "create  environment dev" in first.stdout
    second = live.cli("apply", "-f", str(EXAMPLE), check=True)
    assert "Nothing to change" in second.stdout
    envs = json.loads(live.cli("env", "list", "-o", "json", check=True).stdout)
    assert [e["slug"] for e in envs] == ["dev", "stage", "prod"]

    tag = f"v-{uuid.uuid4().hex[:8]}"
    digest = push_image(registry_url, "app/api", tag, f"cli {tag}")
    version = f"1.0.0-cli.{uuid.uuid4().hex[:6]}"
    live.cli(
        "release",
        "create",
        "--name",
        "api",
        "--version",
        version,
        "--source-ref",
        "9fceb02",
        "-c",
        f"api={REGISTRY}/app/api:{tag}",
        check=True,
    )
    shown = json.loads(
        live.cli("release", "show", f"api@{version}", "-o", "json", check=True).stdout
    )
    assert shown["components"][0]["digest"] == digest
    assert shown["components"][0]["resolved_from_tag"] == tag
    table = live.cli("release", "show", f"api@{version}", check=True).stdout
    assert digest in table


def test_scenario_through_the_api(live, registry_url):
    with live.api() as api:
        import yaml

        applied = api.post("/apply", json=yaml.safe_load(EXAMPLE.read_text()))
        assert applied.status_code == 200
        tag = f"v-{uuid.uuid4().hex[:8]}"
        digest = push_image(registry_url, "app/api", tag, f"api {tag}")
        version = f"1.0.0-api.{uuid.uuid4().hex[:6]}"
        created = api.post(
            "/releases",
            json={
                "name": "api",
                "version": version,
                "components": {"api": f"{REGISTRY}/app/api:{tag}"},
            },
        )
        assert created.status_code == 201, created.text
        read = api.get(f"/releases/{created.json()['id']}").json()
        assert read["components"][0]["digest"] == digest


def test_cli_bad_input_is_one_line_and_non_zero(live, registry_url):
    live.cli("apply", "-f", str(EXAMPLE), check=True)
    result = live.cli(
        "release",
        "create",
        "--name",
        "api",
        "--version",
        "1.0.0",
        "-c",
        f"api={REGISTRY}/app/api:does-not-exist",
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: 422 components.api: tag does-not-exist not found in {REGISTRY}/app/api"
    )
    bad_pair = live.cli("release", "create", "--name", "api", "--version", "1.0.0", "-c", "api")
    assert bad_pair.returncode == 1
    assert bad_pair.stderr.count("\n") == 1
    missing = live.cli("env", "show", "nowhere")
    assert (missing.returncode, missing.stderr) == (
        1,
        "error: 404 environment 'nowhere' not found\n",
    )


def test_cli_with_a_bad_token_or_no_server_says_so_in_one_line(live):
    env = live.cli_env() | {"STELLA_TOKEN": "stl_wrong"}
    import subprocess

    wrong = subprocess.run(
        [STELLA, "env", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("error: 401 invalid or revoked API token")
    down = subprocess.run(
        [STELLA, "env", "list"],
        env=env | {"STELLA_URL": f"http://127.0.0.1:{free_port()}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1
    assert down.stderr.startswith("error: cannot reach Stella at http://127.0.0.1:")
    assert down.stderr.count("\n") == 1


def test_server_migrated_the_empty_database_and_wrote_a_private_token(live):
    assert (live.home / "admin.token").stat().st_mode & 0o777 == 0o600
    with live.api() as api:
        assert api.get("/users").json()["items"][0]["role"] == "admin"


def test_example_workflow_runs_end_to_end_through_the_cli_with_a_live_view(live):
    example = Path(__file__).parents[2] / "examples" / "workflows" / "release-smoke.yaml"
    applied = live.cli("workflow", "apply", "-f", str(example), check=True)
    assert "workflow release-smoke version" in applied.stdout
    again = live.cli("workflow", "apply", "-f", str(example), check=True)
    assert applied.stdout.split()[3] == again.stdout.split()[3]  # same content, same version
    watched = live.cli(
        "run",
        "start",
        "release-smoke",
        "-i",
        "version=1.2.3",
        "-i",
        f"service_url={live.url}/healthz",
        "--watch",
        check=True,
    )
    assert "succeeded" in watched.stdout
    assert "5/5 steps" in watched.stdout
    runs = json.loads(live.cli("run", "list", "-o", "json", check=True).stdout)
    summary = next(r for r in runs if r["workflow"] == "release-smoke")
    assert "steps" not in summary
    run = json.loads(live.cli("run", "show", summary["id"], "-o", "json", check=True).stdout)
    steps = {s["id"]: s for s in run["steps"]}
    assert steps["approve"]["state"] == "skipped"
    assert steps["smoke"]["outputs"]["status"] == 200
    events = live.cli("run", "events", run["id"], check=True).stdout
    assert "run succeeded" in events
