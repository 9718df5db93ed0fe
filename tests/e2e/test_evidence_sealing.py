"""Sealing the evidence of finished deployment jobs (`evidence.seal_finished_jobs`, what every
worker poll runs), on SQLite and PostgreSQL: each job is sealed in its own transaction, so a job
whose records are damaged is skipped (and stays unsealed) while the others are sealed; a packet
belongs to its job's tenant only — its attachments, its audit chain and who may read it."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from stella.adapters.signing.dsse import verify_envelope
from stella.api.app import create_app
from stella.bootstrap import Container, build_container
from stella.config import Settings
from stella.domain.deployments import DeploymentJob, DeploymentOutcome, JobKind, JobState
from stella.domain.evidence import PacketKind, packet_id
from stella.services import evidence
from stella.services.deployments import create_batch, finish_job
from tests.conftest import TenantClient, create_database, drop_database, new_tenant
from tests.support.promotions import build_estate
from tests.support.security import sbom, upload

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def stack(request, tmp_path) -> Iterator[tuple[Container, TestClient]]:
    """A fresh database per test: `seal_finished_jobs` looks at every tenant's jobs, so only
    this test's jobs may be in it."""
    database = create_database(request.param, tmp_path)
    settings = Settings(home=tmp_path / "home", database_url=database.url)
    container = build_container(settings, database.engine)
    with TestClient(create_app(container), raise_server_exceptions=False) as http:
        yield container, http
    drop_database(database)


def tenant(stack) -> TenantClient:
    container, http = stack
    return TenantClient(http, new_tenant(container), container)


def attach_sbom(api: TenantClient, digest: str, package: str) -> str:
    response = upload(api, "/sboms", digest, sbom((package, "1.0")))
    assert response.status_code == 201, response.text
    return str(response.json()["digest"])


def finished_jobs(api: TenantClient, release_id: str, targets: list[str]) -> list[DeploymentJob]:
    """A deploy batch of `release_id` to dev's `targets` (docker hosts), created by the deploy
    step's own `create_batch`, each job then finished successfully one minute after the last."""
    for name in targets:
        body = {"name": name, "environment": "dev", "type": "docker_host"}
        assert api.post("/targets", body).status_code == 201
    container = api.container
    tenant_id = api.issued.user.tenant_id
    with container.uow() as uow:
        release = uow.releases.get(tenant_id, release_id)
        environment = uow.environments.get(tenant_id, "dev")
        assert release is not None
        assert environment is not None
        chosen = [uow.targets.get(tenant_id, name) for name in targets]
        jobs = create_batch(
            uow,
            container.deployments.render_lockfile,
            f"batch-{uuid.uuid4().hex[:8]}",
            release,
            environment,
            JobKind.DEPLOY,
            None,
            None,
            "corr-sealing",
            T0,
            [t for t in chosen if t is not None],
        )
        uow.commit()
    assert sorted(j.target_name for j in jobs) == sorted(targets)
    assert all(j.task_digest for j in jobs)
    finish(container, jobs)
    return jobs


MINUTES = itertools.count(1)  # finish times only ever increase: oldest first is creation order


def finish(container: Container, jobs: list[DeploymentJob]) -> None:
    for job in jobs:
        outcome = DeploymentOutcome(True, None, [f"deployed to {job.target_name}"], {}, {})
        with container.uow() as uow:
            finish_job(uow, job, outcome, T0 + timedelta(minutes=next(MINUTES)))
            uow.commit()


def damage(container: Container, job: DeploymentJob, task_digest: str) -> None:
    with container.uow() as uow:
        uow.jobs.set(job.id, task_digest=task_digest)
        uow.commit()


def stored(container: Container, job: DeploymentJob) -> DeploymentJob:
    with container.uow(read_only=True) as uow:
        found = uow.jobs.by_id(job.id)
    assert found is not None
    return found


def seal(container: Container) -> int:
    return evidence.seal_finished_jobs(container.uow, container.signing_key, container.clock)


def deployment_packets(api: TenantClient) -> list[dict]:
    response = api.get("/evidence", params={"kind": "deployment"})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


@pytest.fixture
def estate(stack, registry_url, repository):
    api = tenant(stack)
    return api, build_estate(api, registry_url, repository)


def test_a_job_whose_task_is_missing_does_not_hold_up_the_others(stack, estate):
    container, _ = stack
    api, built = estate
    first, second, third = finished_jobs(api, built.release_id, ["web-1", "web-2", "web-3"])
    assert [j.state for j in (first, second, third)] == [JobState.PENDING] * 3
    # the oldest finished job names a task artifact that does not exist
    damage(container, first, "sha256:" + "0" * 64)

    assert seal(container) == 2
    assert stored(container, first).evidence_packet_id is None
    for job in (second, third):
        found = stored(container, job)
        assert found.state is JobState.SUCCEEDED
        assert found.evidence_packet_id == packet_id(PacketKind.DEPLOYMENT, job.id)
    packets = deployment_packets(api)
    assert sorted(p["subject_id"] for p in packets) == sorted([str(second.id), str(third.id)])

    # the damaged job is tried again at every poll, never sealed, never blocking
    assert seal(container) == 0
    assert stored(container, first).evidence_packet_id is None
    fourth = finished_jobs(api, built.release_id, ["web-4"])[0]
    assert seal(container) == 1
    assert stored(container, fourth).evidence_packet_id is not None
    assert len(deployment_packets(api)) == 3
    report = api.get("/audit/verify").json()
    assert report["ok"], report
    assert report["evidence_packets"] == 3


def test_a_job_whose_task_is_unreadable_does_not_hold_up_the_others(stack, estate):
    container, _ = stack
    api, built = estate
    first, second = finished_jobs(api, built.release_id, ["web-1", "web-2"])
    # the oldest job's task digest names its compose lockfile (YAML): stored, but no task
    damage(container, first, first.artifacts["docker-compose.lock.yml"])
    sealed = seal(container)
    assert stored(container, second).evidence_packet_id is not None
    assert stored(container, first).evidence_packet_id is None
    assert sealed == 1


def test_jobs_that_cannot_be_sealed_are_not_retried_and_cannot_fill_the_batch(stack, estate):
    """A worker remembers the jobs it failed to seal: they are not tried again on every poll,
    and as many damaged jobs as the batch holds do not stop the next job from being sealed."""
    container, _ = stack
    api, built = estate
    first, second, third = finished_jobs(api, built.release_id, ["web-1", "web-2", "web-3"])
    for job in (first, second):
        damage(container, job, "sha256:" + "0" * 64)
    unsealable: set = set()

    def seal_two() -> int:
        return evidence.seal_finished_jobs(
            container.uow, container.signing_key, container.clock, limit=2, unsealable=unsealable
        )

    assert seal_two() == 0  # the batch of two holds just the damaged jobs
    assert unsealable == {first.id, second.id}
    assert seal_two() == 1
    assert stored(container, third).evidence_packet_id is not None
    assert seal_two() == 0
    assert unsealable == {first.id, second.id}


def test_tenants_are_isolated(stack, registry_url, repository):
    """Two tenants deploy the same image digest and attached their own SBOMs to it; one tenant's
    damaged job does not stop the other's sealing, and each packet carries, chains and shows
    only its own tenant's records."""
    container, _ = stack
    broken, healthy = tenant(stack), tenant(stack)
    broken_estate = build_estate(broken, registry_url, repository)
    healthy_estate = build_estate(healthy, registry_url, repository)
    assert broken_estate.digest == healthy_estate.digest  # the same image, pushed once
    broken_sbom = attach_sbom(broken, broken_estate.digest, "flask")
    healthy_sbom = attach_sbom(healthy, healthy_estate.digest, "requests")
    assert broken_sbom != healthy_sbom

    (damaged,) = finished_jobs(broken, broken_estate.release_id, ["web-1"])
    damage(container, damaged, "sha256:" + "0" * 64)
    (job,) = finished_jobs(healthy, healthy_estate.release_id, ["web-1"])
    broken_before = broken.get("/audit/verify").json()

    assert seal(container) == 1
    assert stored(container, damaged).evidence_packet_id is None
    (packet,) = deployment_packets(healthy)
    assert packet["subject_id"] == str(job.id)
    assert deployment_packets(broken) == []
    assert broken.get(f"/evidence/{packet['id']}").status_code == 404
    assert broken.get(f"/evidence/{packet['digest']}").status_code == 404

    shown = healthy.get(f"/evidence/{packet['id']}").json()
    key = healthy.get("/keys").json()["keys"][0]
    statement = verify_envelope(shown["envelope"], key["public_key_pem"].encode())
    predicate = statement["predicate"]
    assert predicate["packet"]["tenant_id"] == str(healthy.issued.user.tenant_id)
    assert predicate["what"]["target"]["name"] == "web-1"
    assert predicate["outcome"]["state"] == "succeeded"
    sboms = [a["digest"] for a in predicate["attachments"] if a["kind"] == "sbom"]
    assert sboms == [healthy_sbom]

    healthy_report = healthy.get("/audit/verify").json()
    assert healthy_report["ok"], healthy_report
    assert healthy_report["evidence_packets"] == 1
    broken_after = broken.get("/audit/verify").json()
    assert broken_after["ok"], broken_after
    assert broken_after["size"] == broken_before["size"]
    assert broken_after["evidence_packets"] == 0
