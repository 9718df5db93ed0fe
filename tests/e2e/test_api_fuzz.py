"""Schemathesis fuzzes every operation of /openapi.json against a real server: no 5xx, ever.

One schemathesis worker: with several, its coverage phase occasionally fails inside the tool
itself (hypothesis lambda introspection across threads), which says nothing about Stella.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import create_database, drop_database, free_port
from tests.support.live import STELLA, start_server

SCHEMATHESIS = str(Path(sys.executable).parent / "st")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_no_operation_answers_a_server_error(tmp_path, kind):
    database = create_database(kind, tmp_path, migrate=False)
    server = start_server(
        [STELLA, "server", "--no-worker"], tmp_path / "home", free_port(), database.url
    )
    try:
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "run",
                f"{server.url}/openapi.json",
                "-H",
                f"Authorization: Bearer {server.token}",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "8",
                "--seed",
                "20261127",
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # schemathesis keeps its state in the working directory
            timeout=600,
            check=False,
        )
    finally:
        server.stop()
        drop_database(database)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "generated" in result.stdout
