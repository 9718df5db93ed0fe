"""Evidence at 10,000 packets: sealing, export, offline verification and the audit chain, on
SQLite and PostgreSQL.

For each database: a fresh migrated database gets one tenant (with its admin, through
`create_tenant`) and a signing key (`KeyRing` on a key file in a temporary directory). Then,
in the benchmark process (no HTTP), with the product's own functions:

1. Sealing: PACKETS synthetic deployment packets through `evidence._seal`, PER_TRANSACTION
   per unit of work (`SqlAlchemyUnitOfWork` + `commit()`). Each body is shaped like a real
   deployment packet (who/what/why/how/when/outcome: agent, release, 3-5 components with
   sha256 digests, a five-step workflow run, a log of about 1.5 kB), about 4 kB of canonical
   JSON; each seal signs an in-toto statement (Ed25519, DSSE), inserts the packet and
   registers the key, and each commit links the packets into the tenant's audit hash chain.
   Bodies are built before each transaction starts and are not timed. For reference, the
   signature alone (`KeyRing.sign_statement` on the same bodies, SIGN_SAMPLES times).
2. Export: `plan_export` + `write_bundle` for a period covering every packet, into a tar.gz
   on local disk (`BundleWriter`); seconds and size. For reference, gzip (level 6, as
   `BundleWriter`) of the same member bytes alone.
3. Offline verification of that bundle: `read_bundle` then `verify_bundle` with the public
   key, `verify_envelope` and a `RegoPolicyEvaluator`. All packets are deployments, so no
   promotion decision is replayed: replaying a decision (the gates on its recorded context)
   is what the promotion-gates benchmark (`bench_gates`, `gates.evaluate`) measures, per
   decision. For reference, `verify_envelope` alone on every packet of the bundle.
4. Audit chain: `verify_chain` over the tenant's whole chain (every packet, the audit events,
   the checkpoint the export signed): links, row contents, signatures.

Every loop is bounded by a count and a time budget; one-shot operations (export, verify, chain
verification) run once each and the whole module runs under `timeout` in scripts/bench.sh.

Run: .venv/bin/python -m bench.bench_evidence (from the repository root; `make bench` does).
`--database sqlite|postgresql` selects one database; `--packets N` seals fewer (a quick try).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import TestDatabase, create_database, drop_database

from bench.bench_gates import distribution
from bench.bench_list import database_size
from bench.bench_workflows import source_commit
from bench.common import (
    database_settings,
    database_version,
    exit_cleanly_on_sigterm,
    log,
    write_result,
)
from stella.adapters.db.unit_of_work import SqlAlchemyUnitOfWork
from stella.adapters.evidence_bundle import BundleWriter, read_bundle
from stella.adapters.policy.rego import RegoPolicyEvaluator
from stella.adapters.signing.dsse import key_id_from_pem, verify_envelope
from stella.adapters.signing.keyring import KeyRing
from stella.bootstrap import utc_now
from stella.domain.canonical import canonical_json
from stella.domain.evidence import PacketKind
from stella.domain.tenancy import Principal, Role
from stella.services.audit_chain import verify_chain
from stella.services.auth import create_tenant
from stella.services.context import CallContext
from stella.services.evidence import _seal
from stella.services.evidence_export import plan_export, write_bundle
from stella.services.evidence_verify import verify_bundle
from stella.services.ports import UnitOfWork

DATABASES = ("sqlite", "postgresql")
PACKETS = 10_000
PER_TRANSACTION = 100  # packets sealed per unit of work (one commit, one chain link)
SEAL_BUDGET = 240.0  # seconds to seal the packets of one database; stops early (and says so)
SIGN_SAMPLES = 1_000  # signatures alone, for reference
SAMPLE_BUDGET = 30.0  # seconds per reference measurement
SEED = 20_260_301
REGISTRY_HOST = "127.0.0.1:5000"  # only written into packets; never contacted here
SERVICES = ("api", "web", "worker", "billing", "search", "auth", "gateway", "reports")
ENVIRONMENTS = ("dev", "stage", "prod")
STEPS = ("pull", "verify", "stop-previous", "start", "health-check")


# --- the packets ----------------------------------------------------------------------------


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _log_text(rng: random.Random, components: list[dict[str, Any]], target: str) -> str:
    """About 1.5 kB of what an agent reports for one deployment."""
    lines = []
    for c in components:
        layers = rng.randint(3, 7)
        lines += [
            f"pull {c['repository']}@{c['digest']}",
            f"  {layers} layers, {rng.randint(20, 400)} MB, {rng.randint(300, 9000)} ms",
            f"verify RepoDigests of {c['name']}: {c['digest']} ok",
            f"start container {target}-{c['name']} ({rng.randint(40, 900)} ms)",
        ]
    lines.append(f"health check http://127.0.0.1:8080/healthz: 200 after {rng.randint(1, 9)} s")
    return "\n".join(lines) + "\n"


def packet_body(
    rng: random.Random, n: int, ids: dict[str, uuid.UUID], now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, uuid.UUID | None]]:
    """The body, components and index of deployment packet `n`, shaped like the body
    `evidence._job_body` builds for a finished deployment job."""
    names = rng.sample(SERVICES, rng.randint(3, 5))
    release = f"shop-{n % 50}"
    version = f"1.{n // 50 % 100}.{n % 7}"
    components = [
        {
            "name": name,
            "repository": f"{REGISTRY_HOST}/bench/{name}",
            "digest": _sha(f"{name}-{n}-{rng.random()}"),
        }
        for name in names
    ]
    env = ENVIRONMENTS[n % len(ENVIRONMENTS)]
    target = f"{env}-host-{n % 20}"
    created = now - timedelta(seconds=rng.randint(30, 600))
    started = created + timedelta(seconds=rng.randint(1, 10))
    finished = started + timedelta(seconds=rng.randint(5, 120))
    log_text = _log_text(rng, components, target)
    run_id = uuid.UUID(int=rng.getrandbits(128))
    step_times = [started + timedelta(seconds=4 * k) for k in range(len(STEPS) + 1)]
    body = {
        "who": {
            "requested_by": f"release-manager-{n % 5}",
            "executor": "agent",
            "agent": {
                "id": str(ids["agent"]),
                "name": f"agent-{env}-{n % 20}",
                "version": "stella 0.9.0",
                "certificate_serial": f"{rng.getrandbits(128):032x}",
                "certificate_fingerprint": _sha(f"cert-{n % 20}"),
            },
        },
        "what": {
            "kind": "deploy",
            "release": {"id": str(ids["release"]), "name": release, "version": version},
            "components": components,
            "environment": {"id": str(ids[env]), "slug": env},
            "target": {"id": str(ids["target"]), "name": target, "type": "docker_host"},
            "artifacts": {"compose.yaml": _sha(f"compose-{n}")},
        },
        "why": {
            "promotion_id": str(ids["promotion"]),
            "decision_envelope_digest": _sha(f"decision-{n}"),
            "decision_packet": None,
        },
        "how": {
            "executor": "agent",
            "capability": "docker",
            "attempt": 1,
            "executor_version": "stella 0.9.0",
            "task_digest": _sha(f"task-{n}"),
            "workflow": {
                "name": "deploy-docker",
                "version": 3,
                "run_id": str(run_id),
                "steps": [
                    {
                        "id": step,
                        "type": "deploy" if step == "start" else "script",
                        "state": "succeeded",
                        "attempts": 1,
                        "started_at": step_times[k].isoformat(),
                        "finished_at": step_times[k + 1].isoformat(),
                        "error": None,
                    }
                    for k, step in enumerate(STEPS)
                ],
            },
        },
        "when": {
            "created_at": created.isoformat(),
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat(),
            "time_source": "system clock (UTC)",
        },
        "outcome": {
            "state": "succeeded",
            "error": None,
            "result": {
                "containers": [
                    {"name": f"{target}-{c['name']}", "id": f"{rng.getrandbits(256):064x}"}
                    for c in components
                ]
            },
            "log": log_text,
            "log_sha256": _sha(log_text),
        },
        "attachments": [],
    }
    index: dict[str, uuid.UUID | None] = {
        "release_id": ids["release"],
        "environment_id": ids[env],
        "promotion_id": ids["promotion"],
    }
    return body, components, index


def fresh_ids(rng: random.Random, environments: dict[str, uuid.UUID]) -> dict[str, uuid.UUID]:
    """A new release, promotion and target per packet; environments are shared."""
    return environments | {
        name: uuid.UUID(int=rng.getrandbits(128), version=4)
        for name in ("release", "agent", "promotion", "target", "job")
    }


# --- the cases ------------------------------------------------------------------------------


def seal_packets(
    uow_factory: Any, keyring: KeyRing, tenant_id: uuid.UUID, count: int
) -> dict[str, Any]:
    """`count` packets, PER_TRANSACTION per unit of work, stopping at SEAL_BUDGET."""
    rng = random.Random(SEED)
    environments = {env: uuid.UUID(int=rng.getrandbits(128), version=4) for env in ENVIRONMENTS}
    transactions: list[float] = []
    body_bytes = envelope_bytes = 0
    sealed = 0
    truncated = False
    deadline = time.monotonic() + SEAL_BUDGET
    while sealed < count:
        if time.monotonic() > deadline:
            truncated = True
            break
        batch = []
        for n in range(sealed, min(sealed + PER_TRANSACTION, count)):
            ids = fresh_ids(rng, environments)
            body, components, index = packet_body(rng, n, ids, utc_now())
            body_bytes += len(canonical_json(body))
            batch.append((ids["job"], components, body, index))
        stored = []
        started = time.perf_counter()
        with uow_factory() as uow:
            for job_id, components, body, index in batch:
                packet = _seal(
                    uow,
                    keyring,
                    PacketKind.DEPLOYMENT,
                    tenant_id,
                    job_id,
                    components,
                    body,
                    index,
                    utc_now(),
                )
                if packet is None:
                    msg = f"packet of job {job_id} was not stored (a duplicate?)"
                    raise RuntimeError(msg)
                stored.append(packet.envelope)
            uow.commit()
        transactions.append(time.perf_counter() - started)
        envelope_bytes += sum(len(canonical_json(envelope)) for envelope in stored)
        sealed += len(batch)
    seconds = sum(transactions)
    return {
        "packets": sealed,
        "requested": count,
        "truncated_by_deadline": truncated,
        "per_transaction": PER_TRANSACTION,
        "seconds": round(seconds, 2),
        "packets_per_second": round(sealed / seconds, 1) if seconds else None,
        "ms_per_packet": round(seconds / sealed * 1000, 3) if sealed else None,
        "transaction": distribution(transactions),
        "mean_body_bytes": round(body_bytes / sealed) if sealed else None,
        "mean_envelope_bytes": round(envelope_bytes / sealed) if sealed else None,
    }


def signing_alone(keyring: KeyRing, tenant_id: uuid.UUID) -> dict[str, Any]:
    """`KeyRing.sign_statement` on bodies like the sealed ones (no database)."""
    rng = random.Random(SEED + 1)
    environments = {env: uuid.UUID(int=rng.getrandbits(128), version=4) for env in ENVIRONMENTS}
    spent = []
    deadline = time.monotonic() + SAMPLE_BUDGET
    for n in range(SIGN_SAMPLES):
        if time.monotonic() > deadline:
            break
        body, components, _ = packet_body(rng, n, fresh_ids(rng, environments), utc_now())
        subjects = [
            {"name": c["repository"], "digest": {"sha256": c["digest"].removeprefix("sha256:")}}
            for c in components
        ]
        predicate = {"packet": {"id": str(uuid.uuid4()), "tenant_id": str(tenant_id)}, **body}
        started = time.perf_counter()
        keyring.sign_statement(subjects, predicate, PacketKind.DEPLOYMENT.predicate_type)
        spent.append(time.perf_counter() - started)
    return distribution(spent)


def export_bundle(
    uow_factory: Any, keyring: KeyRing, ctx: CallContext, path: Path
) -> dict[str, Any]:
    """The bundle of a period covering every packet sealed (yesterday to tomorrow, UTC)."""
    today = utc_now().date()
    since = (today - timedelta(days=1)).isoformat()
    until = (today + timedelta(days=1)).isoformat()
    started = time.perf_counter()
    request = plan_export(uow_factory, ctx, since, until, None)
    with path.open("wb") as handle:
        writer = BundleWriter(handle)
        predicate = write_bundle(uow_factory, keyring, keyring.public_keys, ctx, request, writer)
        writer.close()
    seconds = time.perf_counter() - started
    return {
        "period": f"{since}..{until}",
        "seconds": round(seconds, 2),
        "bundle_bytes": path.stat().st_size,
        "counts": predicate["counts"],
        "packets_per_second": round(predicate["counts"]["packets"] / seconds, 1),
    }


def verify_offline(path: Path, keyring: KeyRing, expected: int) -> dict[str, Any]:
    """`read_bundle` + `verify_bundle` with only the public key; fails unless ok."""
    started = time.perf_counter()
    members = read_bundle(path)
    read_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = verify_bundle(
        members,
        [keyring.public_key_pem.encode()],
        key_id_from_pem,
        verify_envelope,
        RegoPolicyEvaluator(),
    )
    verify_seconds = time.perf_counter() - started
    if not report.ok:
        log(f"the bundle does not verify: {report.problem}")
        msg = f"offline verification failed: {report.problem}"
        raise RuntimeError(msg)
    if report.packets != expected or report.deployments != expected:
        msg = f"the bundle holds {report.packets} packets, {expected} were sealed"
        raise RuntimeError(msg)
    seconds = read_seconds + verify_seconds
    unpacked = sum(len(data) for data in members.values())
    # for reference: the signatures alone, and gzip of the same bytes (what the export pays)
    public = keyring.public_key_pem.encode()
    envelopes = [data for name, data in members.items() if name.startswith("packets/")]
    signatures = []
    deadline = time.monotonic() + SAMPLE_BUDGET
    for data in envelopes[:expected]:
        if time.monotonic() > deadline:
            break
        envelope = json.loads(data)
        started = time.perf_counter()
        verify_envelope(envelope, public)
        signatures.append(time.perf_counter() - started)
    started = time.perf_counter()
    gzip.compress(b"".join(members.values()), compresslevel=6)
    gzip_seconds = time.perf_counter() - started
    return {
        "ok": report.ok,
        "packets": report.packets,
        "deployments": report.deployments,
        "decisions_replayed": report.decisions_replayed,
        "audit_events": report.audit_events,
        "chain_entries": report.chain_entries,
        "members": len(members),
        "unpacked_bytes": unpacked,
        "read_seconds": round(read_seconds, 2),
        "verify_seconds": round(verify_seconds, 2),
        "seconds": round(seconds, 2),
        "packets_per_second": round(report.packets / seconds, 1),
        "verify_envelope_alone": distribution(signatures),
        "gzip_level6_of_members_seconds": round(gzip_seconds, 2),
    }


def verify_whole_chain(uow_factory: Any, keyring: KeyRing, ctx: CallContext) -> dict[str, Any]:
    started = time.perf_counter()
    report = verify_chain(uow_factory, ctx, verify_envelope, keyring.public_keys())
    seconds = time.perf_counter() - started
    if not report.ok:
        problem = report.problem.to_json() if report.problem else None
        msg = f"the audit chain does not verify: {problem}"
        raise RuntimeError(msg)
    return {
        "ok": report.ok,
        "size": report.size,
        "checked": report.checked,
        "evidence_packets": report.evidence_packets,
        "audit_events": report.audit_events,
        "checkpoint_size": (report.checkpoint or {}).get("size"),
        "seconds": round(seconds, 2),
        "entries_per_second": round(report.checked / seconds, 1),
    }


# --- main -----------------------------------------------------------------------------------


def bench_database(kind: str, tmp: Path, count: int) -> dict[str, Any]:
    database: TestDatabase = create_database(kind, tmp)
    try:
        engine = database.engine
        labels = {
            "database": kind,
            "database_version": database_version(engine),
            "database_settings": database_settings(engine),
        }

        def uow_factory(read_only: bool = False) -> UnitOfWork:
            return SqlAlchemyUnitOfWork(engine, read_only)

        issued = create_tenant(uow_factory, f"bench-{uuid.uuid4().hex[:10]}", "admin", utc_now)
        tenant_id = issued.user.tenant_id
        ctx = CallContext(Principal(issued.user.id, tenant_id, "admin", Role.ADMIN), None, utc_now)
        keyring = KeyRing(tmp / "key.pem")

        sealing = seal_packets(uow_factory, keyring, tenant_id, count)
        sealing["signing_alone"] = signing_alone(keyring, tenant_id)
        size = database_size(database)
        log(
            f"{kind}: sealed {sealing['packets']:,} packets in {sealing['seconds']} s "
            f"({sealing['packets_per_second']} packets/s; {sealing['mean_envelope_bytes']:,} "
            f"bytes per envelope); signing alone p50 {sealing['signing_alone'].get('p50_ms')} ms"
            f"; database {size / 1e6:.0f} MB"
        )
        exported = export_bundle(uow_factory, keyring, ctx, tmp / "bundle.tar.gz")
        log(
            f"{kind}: export of {exported['counts']['packets']:,} packets in "
            f"{exported['seconds']} s, {exported['bundle_bytes'] / 1e6:.1f} MB"
        )
        verified = verify_offline(tmp / "bundle.tar.gz", keyring, sealing["packets"])
        log(
            f"{kind}: offline verify in {verified['seconds']} s (read {verified['read_seconds']} s"
            f", verify {verified['verify_seconds']} s): {verified['packets_per_second']} "
            f"packets/s; verify_envelope alone p50 "
            f"{verified['verify_envelope_alone'].get('p50_ms')} ms"
        )
        chain = verify_whole_chain(uow_factory, keyring, ctx)
        log(
            f"{kind}: audit chain of {chain['checked']:,} entries verified in {chain['seconds']} "
            f"s ({chain['entries_per_second']} entries/s)"
        )
        return labels | {
            "database_bytes_after_sealing": size,
            "sealing": sealing,
            "export": exported,
            "verify": verified,
            "chain": chain,
        }
    finally:
        drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=DATABASES, default=None)
    parser.add_argument("--packets", type=int, default=PACKETS)
    args = parser.parse_args()
    count = max(1, min(args.packets, PACKETS))
    exit_cleanly_on_sigterm()
    started = time.perf_counter()
    load_before = os.getloadavg()
    commit = source_commit()
    results = []
    for kind in [args.database] if args.database else DATABASES:
        with tempfile.TemporaryDirectory(prefix=f"stella-bench-evidence-{kind}-") as tmp:
            results.append(bench_database(kind, Path(tmp), count))
    path = write_result(
        "evidence",
        {
            "benchmark": "evidence packets: sealing, export, offline verify, audit chain",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "commit": commit,
            "logical_cpus": os.cpu_count(),
            "load_average": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in os.getloadavg()],
            },
            "packets": count,
            "per_transaction": PER_TRANSACTION,
            "sign_samples": SIGN_SAMPLES,
            "duration_seconds": round(time.perf_counter() - started, 1),
            "results": results,
        },
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
