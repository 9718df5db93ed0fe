"""`stella evidence list|show|export|verify`, `stella audit verify|checkpoint`, `keys rotate`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from stella.cli.client import CliError, StellaClient
from stella.cli.promotions import keys_app
from stella.cli.render import Output, console, show
from stella.cli.resources import audit_app

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
evidence_app = typer.Typer(help="Sealed evidence packets and audit bundles.", no_args_is_help=True)


@evidence_app.command("list")
def evidence_list(
    release: Annotated[str | None, typer.Option(help="release id or name")] = None,
    env: Annotated[str | None, typer.Option("--env", help="environment slug")] = None,
    since: Annotated[str | None, typer.Option("--from", help="first day, 2026-03-01")] = None,
    until: Annotated[str | None, typer.Option("--to", help="last day (inclusive)")] = None,
    kind: Annotated[str | None, typer.Option(help="promotion_decision | deployment")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Sealed packets, newest first."""
    items = StellaClient().list_all(
        "/evidence",
        limit=limit,
        release=release,
        environment=env,
        to=until,
        kind=kind,
        **({"from": since} if since else {}),
    )
    show(items, output, ["id", "kind", "sealed_at", "subject_id", "digest"])


@evidence_app.command("show")
def evidence_show(packet: str, output: OutputOpt = Output.TABLE) -> None:
    """One packet: who, what, why, how and when."""
    found = StellaClient().get(f"/evidence/{packet}")
    if output is Output.JSON:
        typer.echo(json.dumps(found, indent=2))
        return
    predicate = found["statement"]["predicate"]
    console.print(f"[bold]{found['kind']}[/bold] packet {found['id']}  ({found['digest']})")
    console.print(f"sealed {found['sealed_at']} with key {found['keyid']}")
    for section in ("who", "what", "why", "how", "when", "outcome"):
        if section in predicate:
            value = predicate[section]
            if section == "why":
                value = {k: v for k, v in value.items() if k != "decision_record"}
            console.print(f"[bold]{section}[/bold]: {json.dumps(value, indent=2)}")


@evidence_app.command("correct")
def evidence_correct(
    packet: str,
    reason: Annotated[str, typer.Option(help="why the packet is corrected")],
    changes: Annotated[str, typer.Option(help="what is corrected, as a JSON object")] = "{}",
    output: OutputOpt = Output.TABLE,
) -> None:
    """Seal a correction (admin): a new revision that supersedes the packet."""
    try:
        parsed = json.loads(changes)
    except ValueError as exc:
        msg = f"--changes is not JSON: {exc}"
        raise CliError(msg) from None
    found = StellaClient().post(
        f"/evidence/{packet}/corrections", {"reason": reason, "changes": parsed}
    )
    show([found], output, ["id", "revision", "supersedes", "digest", "sealed_at"])


@evidence_app.command("export")
def evidence_export(
    since: Annotated[str, typer.Option("--from", help="first day, e.g. 2026-03-01")],
    until: Annotated[str, typer.Option("--to", help="last day (inclusive), e.g. 2026-03-31")],
    out: Annotated[Path, typer.Option("--out", "-o", help="bundle to write (.tar.gz)")],
    env: Annotated[str | None, typer.Option("--env", help="only this environment")] = None,
) -> None:
    """Download the period's signed evidence bundle (verify it with `stella evidence verify`)."""
    partial = out.with_name(out.name + ".part")
    try:
        with partial.open("wb") as handle:
            size = StellaClient(timeout=600).download(
                "/evidence/export", handle, to=until, environment=env, **{"from": since}
            )
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    console.print(f"evidence bundle written to {out} ({size} bytes)")


@evidence_app.command("verify")
def evidence_verify(
    file: Annotated[Path, typer.Argument(help="bundle from `stella evidence export`")],
    key: Annotated[
        list[Path], typer.Option("--key", help="trusted Ed25519 public key (PEM); repeatable")
    ],
    output: OutputOpt = Output.TABLE,
) -> None:
    """Verify a bundle offline (no server, no network); exit 1 naming the first problem."""
    from stella.adapters.evidence_bundle import BundleError, read_bundle
    from stella.adapters.policy.rego import RegoPolicyEvaluator
    from stella.adapters.signing.dsse import VerificationError, key_id_from_pem, verify_envelope
    from stella.services.evidence_verify import verify_bundle

    pems = []
    for path in key:
        try:
            pem = path.read_bytes()
            key_id_from_pem(pem)
        except OSError as exc:
            msg = f"cannot read key {path}: {exc.strerror}"
            raise CliError(msg) from None
        except VerificationError as exc:
            msg = f"{path}: {exc}"
            raise CliError(msg) from None
        pems.append(pem)
    try:
        members = read_bundle(file)
    except BundleError as exc:
        raise CliError(str(exc)) from None
    report = verify_bundle(members, pems, key_id_from_pem, verify_envelope, RegoPolicyEvaluator())
    if output is Output.JSON:
        typer.echo(json.dumps(report.to_json(), indent=2))
    elif report.ok:
        show(report.summary, output, ["sealed_at", "kind", "release", "target", "outcome", "id"])
        console.print(
            f"verified: {report.packets} packet(s) ({report.decisions_replayed} decision(s) "
            f"replayed identically, {report.deployments} deployment(s)), "
            f"{report.audit_events} audit event(s), {report.attachments} attachment(s), "
            f"{report.chain_entries} chain entries up to signed checkpoint "
            f"{report.checkpoint.get('size')} ({report.checkpoint.get('root_hash')})"
        )
    if not report.ok:
        msg = f"verification failed: {report.problem}"
        raise CliError(msg)


@audit_app.command("verify")
def audit_verify(output: OutputOpt = Output.TABLE) -> None:
    """Walk the audit hash chain on the server; exit 1 naming the first broken link."""
    report: dict[str, Any] = StellaClient(timeout=600).get("/audit/verify")
    if output is Output.JSON:
        typer.echo(json.dumps(report, indent=2))
    if not report["ok"]:
        problem = report["problem"]
        where = f"entry {problem['seq']}: " if problem.get("seq") is not None else ""
        msg = f"audit chain broken: {where}{problem['reason']}"
        raise CliError(msg)
    if output is not Output.JSON:
        checkpoint = report.get("checkpoint") or {}
        console.print(
            f"audit chain intact: {report['checked']} entries ({report['audit_events']} audit "
            f"events, {report['evidence_packets']} evidence packets); latest signed "
            f"checkpoint covers {checkpoint.get('size', 0)}"
        )
        for warning in report.get("warnings", []):
            console.print(f"warning: {warning}")


@audit_app.command("checkpoint")
def audit_checkpoint(output: OutputOpt = Output.TABLE) -> None:
    """Sign a checkpoint of the audit chain now (admin)."""
    found = StellaClient().post("/audit/checkpoints")
    show([found], output, ["size", "root_hash", "keyid", "created_at"])


@keys_app.command("rotate")
def keys_rotate(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Operators: replace the signing key (run where the server's key file is). The old public
    key stays listed for verification; running servers pick the new key up without restart."""
    from stella.adapters.db.engine import make_engine
    from stella.adapters.db.migrate import upgrade
    from stella.adapters.db.unit_of_work import SqlAlchemyUnitOfWork
    from stella.adapters.signing.keyring import KeyRing
    from stella.bootstrap import utc_now
    from stella.config import load_settings

    settings = load_settings()
    if not yes and console.is_terminal:
        typer.confirm(
            f"Rotate the signing key {settings.resolved_signing_key_file}? New decisions and "
            "packets will be signed with a new key",
            abort=True,
        )
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    ring = KeyRing(settings.resolved_signing_key_file)
    with SqlAlchemyUnitOfWork(engine) as uow:
        now = utc_now()
        uow.signing_keys.register(ring.keyid, ring.public_key_pem, now)
        rotation = ring.rotate()
        uow.signing_keys.register(rotation.current_keyid, rotation.current_public_pem, now)
        uow.signing_keys.retire(rotation.retired_keyid, now)
        uow.commit()
    console.print(f"retired {rotation.retired_keyid} (public key kept for verification)")
    console.print(f"signing now with {rotation.current_keyid}")
