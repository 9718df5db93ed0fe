"""The registry's own `notifications` deliver real webhooks to a running server."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import httpx
import pytest
import yaml

from tests.conftest import create_database, drop_database, free_port, service_missing
from tests.support.live import STELLA, start_server
from tests.support.oci import push_image


@pytest.fixture
def notifying_registry(tmp_path):
    """A second docker-registry on a free loopback port, configured by the test itself."""
    binary = shutil.which("docker-registry")
    if binary is None:
        service_missing("docker-registry (Debian package docker-registry)")
    port = free_port()
    processes = []

    def start(webhook_url: str, secret: str) -> str:
        config = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
            "http": {"addr": f"127.0.0.1:{port}"},
            "notifications": {
                "events": {"includereferences": True},
                "endpoints": [
                    {
                        "name": "stella",
                        "url": webhook_url,
                        "timeout": "2s",
                        "threshold": 3,
                        "backoff": "1s",
                        "ignoredmediatypes": ["application/octet-stream"],
                        "headers": {"Authorization": [f"Bearer {secret}"]},
                        "ignore": {"actions": ["pull"]},
                    }
                ],
            },
        }
        (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
        with (tmp_path / "registry.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [binary, "serve", str(tmp_path / "config.yml")],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(url + "/v2/", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError((tmp_path / "registry.log").read_text())

    yield port, start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_pushes_arrive_as_component_versions(tmp_path, notifying_registry, kind):
    port, start_registry = notifying_registry
    database = create_database(kind, tmp_path, migrate=False)
    server = start_server([STELLA, "server"], tmp_path / "home", free_port(), database.url)
    try:
        with server.api() as api:
            api.post(
                "/components", json={"name": "hooked", "repository": f"127.0.0.1:{port}/app/hooked"}
            )
            integration = api.post(
                "/integrations",
                json={"type": "registry", "name": "notifying", "url": f"http://127.0.0.1:{port}"},
            ).json()
            registry_url = start_registry(
                server.url + integration["webhook_url"], integration["webhook_secret"]
            )
            tag = f"v-{uuid.uuid4().hex[:6]}"
            digest = push_image(registry_url, "app/hooked", tag, "notified")
            versions = []
            deadline = time.monotonic() + 20
            while not versions and time.monotonic() < deadline:
                versions = api.get("/components/hooked/versions").json()["items"]
                time.sleep(0.2)
            assert [(v["digest"], v["tag"]) for v in versions] == [(digest, tag)]
            audit = api.get("/audit-events", params={"action": "component_version.recorded"}).json()
            assert audit["items"][0]["actor_name"] == "webhook:notifying"
    finally:
        server.stop()
        drop_database(database)
