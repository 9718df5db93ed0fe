"""`make demo` works: the scripted walk through dev → stage → prod, drift and rollback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.deploy import docker_client

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


def test_the_demo_walks_a_release_to_prod_shows_drift_and_rolls_back(registry_url):
    docker_client()
    result = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=600, check=False
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    assert "prod now answers: hello from web v2" in out
    assert "drifted" in out
    assert "changed_digest" in out
    assert out.rindex("prod now answers: hello from web v1") > out.index("changed_digest")
    assert "rolled_back" in out
    assert "in_sync" in out.split("Drift check after the rollback")[1]
