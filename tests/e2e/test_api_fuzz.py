"""Schemathesis fuzzes every operation of /openapi.json against a real server: no 5xx, and every
response keeps to the document (status codes, content types, headers, bodies, `Allow` on 405),
invalid input is refused, and a deleted resource is gone.

Every check runs except `positive_data_acceptance` (see tests/fixtures/schemathesis.toml for why).

One schemathesis worker: with several, its coverage phase occasionally fails inside the tool
itself (hypothesis lambda introspection across threads), which says nothing about Stella.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import create_database, drop_database, free_port
from tests.support.live import STELLA, start_server

SCHEMATHESIS = str(Path(sys.executable).parent / "st")
CONFIG = Path(__file__).parents[1] / "fixtures" / "schemathesis.toml"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_every_operation_keeps_to_its_document_and_never_fails(tmp_path, kind):
    database = create_database(kind, tmp_path, migrate=False)
    server = start_server(
        [STELLA, "server", "--no-worker"], tmp_path / "home", free_port(), database.url
    )
    try:
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                str(CONFIG),
                "run",
                f"{server.url}/openapi.json",
                "-H",
                f"Authorization: Bearer {server.token}",
                "--exclude-checks",
                "positive_data_acceptance",
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
    failures = result.stdout[result.stdout.find("FAILURES") :]
    assert result.returncode == 0, failures[:12000]
    assert "generated" in result.stdout
    selected = re.search(r"Selected: (\d+)/(\d+)", result.stdout)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert selected, result.stdout[-3000:]
    assert tested, result.stdout[-3000:]
    assert int(tested[1]) == int(selected[1]) == int(selected[2]) > 90, "operations left untested"
