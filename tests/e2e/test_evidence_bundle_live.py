"""The auditor's path, end to end: a release is promoted and deployed by real agents on a real
Docker engine, the signing key is rotated in between, the month is exported with the CLI, and a
fresh process with no server, no database and no network verifies the bundle, replays every
decision, and names each tampering."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.deploy import (
    deploy_server,
    http_text,
    push_web_image,
    remove_containers,
    start_agent,
    wait_settled,
    web_component,
)
from tests.support.live import STELLA
from tests.support.security import upload


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, tmp_path, registry_url):
    with deploy_server(request.param, tmp_path) as server:
        yield server


def offline_verify(bundle: Path, *keys: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`stella evidence verify` in a fresh process that has no server, token or database."""
    empty = tmp / "auditor-laptop"
    empty.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(empty),
        "STELLA_HOME": str(empty / "nothing-here"),
        "STELLA_URL": "http://127.0.0.1:9",  # nothing listens: any network use would fail
        "COLUMNS": "200",
    }
    args = [STELLA, "evidence", "verify", str(bundle)]
    for key in keys:
        args += ["--key", str(key)]
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=120, check=False, cwd=empty
    )


def rewrite_bundle(source: Path, target: Path, change) -> None:
    """Copy a bundle, letting `change(name, data)` return new bytes, or None to drop a member."""
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for info in old:
            data = old.extractfile(info).read()
            changed = change(info.name, data)
            if changed is None:
                continue
            info.size = len(changed)
            new.addfile(info, __import__("io").BytesIO(changed))


def test_month_is_exported_and_verified_offline_with_replay_and_tamper_detection(live, tmp_path):
    suffix = uuid.uuid4().hex[:6]
    ports = {"dev": free_port(), "prod": free_port()}
    names = [f"{env}-{suffix}-web" for env in ports]
    image = push_web_image(f"app/ev-{suffix}", "v1", f"evidence {suffix}\n", tmp_path)
    stickers = {env: tmp_path / f"sticker-{env}.json" for env in ports}
    agents = []
    try:
        with live.api() as api:
            for order, env in enumerate(ports, 1):
                spec = {"name": env.title(), "slug": env, "promotion_order": order}
                if env == "prod":
                    spec |= {
                        "is_production": True,
                        "gates": ["previous_environment", "approval", "health_check"],
                        "approval_policy": {"required_approvals": 1},
                    }
                else:
                    spec["gates"] = ["previous_environment"]
                assert api.post("/environments", json=spec).status_code == 201
                target = {
                    "name": f"{env}-{suffix}",
                    "environment": env,
                    "type": "docker_host",
                    "connection": {
                        "container_name_prefix": f"{env}-{suffix}-",
                        "environment": {"PORT": str(ports[env])},
                        "sticker_path": str(stickers[env]),
                    },
                }
                assert api.post("/targets", json=target).status_code == 201
            component = web_component("web", image.repository)
            assert api.post("/components", json=component).status_code == 201
            alice = api.post("/users", json={"name": "alice", "role": "approver"}).json()["token"]
        agents = [start_agent(live, f"ev-{env}-{suffix}", env, tmp_path) for env in ports]
        # an SBOM attached to the image digest travels into the packets and the bundle
        sbom = {
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "components": [
                {
                    "type": "library",
                    "name": "busybox",
                    "version": "1.36.1-r15",
                    "purl": "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=alpine-3.19",
                }
            ],
        }
        with live.api() as api:
            attached = upload(api, "/sboms", image.digest, sbom)
            assert attached.status_code in {200, 201}, attached.text

        live.cli(
            "release", "create", "--name", "web", "--version", "1.0.0", "-c", "web=v1", check=True
        )
        promotions = []
        for env in ports:
            promoted = json.loads(
                live.cli("promote", "web@1.0.0", "--to", env, "-o", "json", check=True).stdout
            )
            if env == "prod":
                approval = subprocess.run(
                    [STELLA, "approve", promoted["id"], "--comment", "ship it"],
                    env=live.cli_env() | {"STELLA_TOKEN": alice},
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                assert approval.returncode == 0, approval.stderr
            assert wait_settled(live, promoted["id"]) == "deployed"
            assert http_text(ports[env]) == image.content
            promotions.append(promoted["id"])

        # the sticker names the packet its deployment was sealed into
        sticker = json.loads(stickers["prod"].read_text())
        with live.api() as api:
            packet = api.get(f"/evidence/{sticker['evidence_packet']}")
            assert packet.status_code == 200, packet.text
        predicate = packet.json()["statement"]["predicate"]
        assert predicate["what"]["target"]["name"] == f"prod-{suffix}"
        assert predicate["who"]["agent"]["name"] == f"ev-prod-{suffix}"
        assert predicate["outcome"]["state"] == "succeeded"
        assert predicate["what"]["components"][0]["digest"] == image.digest
        assert predicate["attachments"][0]["kind"] == "sbom"
        assert predicate["why"]["decision_packet"]["id"]
        listed_packets = json.loads(live.cli("evidence", "list", "-o", "json", check=True).stdout)
        assert (
            sorted(p["kind"] for p in listed_packets)
            == ["deployment"] * 2 + ["promotion_decision"] * 2
        )
        shown = live.cli("evidence", "show", sticker["evidence_packet"], check=True).stdout
        assert f"prod-{suffix}" in shown
        assert "succeeded" in shown

        # a new advisory arrives offline: the running release is exposed on both targets
        feed = tmp_path / "feed"
        feed.mkdir()
        advisory = {
            "id": "ALPINE-CVE-2099-1234",
            "aliases": ["CVE-2099-1234"],
            "modified": "2026-11-01T00:00:00Z",
            "database_specific": {"severity": "CRITICAL"},
            "affected": [
                {
                    "package": {"ecosystem": "Alpine:v3.19", "name": "busybox"},
                    "ranges": [
                        {
                            "type": "ECOSYSTEM",
                            "events": [{"introduced": "0"}, {"fixed": "1.36.1-r20"}],
                        }
                    ],
                }
            ],
        }
        (feed / "ALPINE-CVE-2099-1234.json").write_text(json.dumps(advisory))
        imported = live.cli("advisories", "import", str(feed), check=True).stdout
        assert "1 added" in imported
        exposed = live.cli("exposure", "CVE-2099-1234", "-o", "json")
        assert exposed.returncode == 3, exposed.stderr
        where = {e["environment"]: e["targets"] for e in json.loads(exposed.stdout)["environments"]}
        assert where == {"dev": [f"dev-{suffix}"], "prod": [f"prod-{suffix}"]}
        verdicts = json.loads(
            live.cli("verdict", "show", "--digest", image.digest, "-o", "json", check=True).stdout
        )
        assert {v["environment"]: v["state"] for v in verdicts["verdicts"]} == {
            "dev": "fail",
            "prod": "fail",
        }

        old_key = tmp_path / "old.pem"
        live.cli("keys", "export", "-o", str(old_key), check=True)
        rotated = subprocess.run(
            [STELLA, "keys", "rotate", "--yes"],
            env=os.environ
            | {"STELLA_HOME": str(live.home), "STELLA_DATABASE_URL": live.database_url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert rotated.returncode == 0, rotated.stderr
        new_key = tmp_path / "new.pem"
        live.cli("keys", "export", "-o", str(new_key), check=True)
        assert old_key.read_text() != new_key.read_text()
        listed = json.loads(live.cli("keys", "list", "-o", "json", check=True).stdout)
        assert len(listed) == 2
        assert sum(k["current"] for k in listed) == 1

        # the running server signs with the new key at once (no restart)
        live.cli(
            "release", "create", "--name", "web", "--version", "1.0.1", "-c", "web=v1", check=True
        )
        later = json.loads(
            live.cli("promote", "web@1.0.1", "--to", "dev", "-o", "json", check=True).stdout
        )
        assert wait_settled(live, later["id"]) == "deployed"
        with live.api() as api:
            decision = api.get(f"/promotions/{later['id']}/decision").json()
        assert decision["signatures"][0]["keyid"] == listed[0]["keyid"]

        audit = live.cli("audit", "verify", check=True)
        assert "audit chain intact" in audit.stdout

        today = datetime.now(UTC).date()
        first = today.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        bundle = tmp_path / "march.tar.gz"
        live.cli(
            "evidence", "export", "--from", str(first), "--to", str(last), "-o", str(bundle),
            check=True,
        )  # fmt: skip
        live.stop()  # the auditor's laptop: nothing to talk to

        verified = offline_verify(bundle, old_key, new_key, tmp=tmp_path)
        assert verified.returncode == 0, verified.stderr + verified.stdout
        assert "3 decision(s) replayed identically" in verified.stdout
        assert "3 deployment(s)" in verified.stdout
        assert "1 attachment(s)" in verified.stdout

        only_new = offline_verify(bundle, new_key, tmp=tmp_path)
        assert only_new.returncode == 1
        assert "signed by an unknown key" in only_new.stderr

        with tarfile.open(bundle, "r:gz") as tar:
            members = tar.getnames()
        packet_member = next(m for m in members if m.startswith("packets/"))
        for victim in (packet_member, "chain/entries.jsonl", "audit/events.jsonl"):
            flipped = tmp_path / "flipped.tar.gz"

            def flip(name, data, victim=victim):
                if name != victim:
                    return data
                middle = len(data) // 2
                return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]

            rewrite_bundle(bundle, flipped, flip)
            result = offline_verify(flipped, old_key, new_key, tmp=tmp_path)
            assert result.returncode == 1, victim
            assert victim in result.stderr, result.stderr
            assert "altered" in result.stderr

        missing = tmp_path / "missing.tar.gz"
        rewrite_bundle(
            bundle, missing, lambda n, d: None if n == "chain/checkpoint.dsse.json" else d
        )
        result = offline_verify(missing, old_key, new_key, tmp=tmp_path)
        assert result.returncode == 1
        assert "chain/checkpoint.dsse.json is missing" in result.stderr
    finally:
        for agent in agents:
            agent.stop()
        remove_containers(*names)
