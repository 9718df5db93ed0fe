"""`make run` (the README's first command) serves /healthz and the OpenAPI document."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, service_missing
from tests.support.live import start_server

ROOT = Path(__file__).parents[2]


def test_make_run_serves_health_openapi_and_writes_the_admin_token(tmp_path):
    if shutil.which("make") is None:
        service_missing("make")
    server = start_server(
        ["make", "--no-print-directory", "run"],
        tmp_path / "home",
        free_port(),
        None,
        cwd=ROOT,
        timeout=180,
    )
    try:
        assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
        openapi = httpx.get(server.url + "/openapi.json").json()
        assert openapi["info"]["title"] == "Stella Release Orchestrator"
        assert (tmp_path / "home" / "stella.db").exists()  # the embedded SQLite default
        token_file = tmp_path / "home" / "admin.token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert token_file.read_text().count("\n") == 1
        me = httpx.get(
            server.url + "/api/v1/users", headers={"Authorization": f"Bearer {server.token}"}
        )
        assert me.status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("STELLA_LISTEN", "nowhere", "STELLA_LISTEN: 'nowhere' is not host:port"),
        ("STELLA_DATABASE_URL", "mysql://db/x", "STELLA_DATABASE_URL: must start with"),
        ("STELLA_MAX_BODY_BYTES", "tiny", "STELLA_MAX_BODY_BYTES:"),
    ],
)
def test_invalid_configuration_fails_at_start_with_one_line(
    tmp_path, monkeypatch, variable, value, message
):
    import subprocess
    import sys

    stella = str(Path(sys.executable).parent / "stella")
    env = {"PATH": "/usr/bin:/bin", "STELLA_HOME": str(tmp_path), variable: value}
    result = subprocess.run([stella, "server"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: invalid configuration: {message}")
    assert result.stderr.count("\n") == 1
