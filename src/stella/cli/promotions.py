"""`stella promote`, `promotion`, `approve`, `reject`, `policy`, `decision`, `scan`, `keys`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from stella.cli.client import CliError, StellaClient
from stella.cli.render import Output, console, show

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
SETTLED = {"approved", "rejected", "blocked", "cancelled", "deployed", "failed", "rolled_back"}

promotion_app = typer.Typer(help="Promotions between environments.", no_args_is_help=True)
policy_app = typer.Typer(help="Rego policies for the policy gate.", no_args_is_help=True)
decision_app = typer.Typer(help="Signed decision records.", no_args_is_help=True)
scan_app = typer.Typer(help="Scan verdicts for the security gate.", no_args_is_help=True)
keys_app = typer.Typer(help="Public keys that verify decision records.", no_args_is_help=True)


def show_promotion(promotion: dict[str, Any], output: Output) -> None:
    if output is Output.JSON:
        show(promotion, output, [])
        return
    console.print(
        f"[bold]promotion {promotion['id']}[/bold]  {promotion['release']}  "
        f"{promotion['source_environment'] or '-'} → {promotion['target_environment']}  "
        f"state=[bold]{promotion['state']}[/bold]  requested by {promotion['requested_by']}"
    )
    rows = [
        dict(g, result="pass" if g["passed"] else ("waiting" if g["pending"] else "FAIL"))
        for g in promotion["gate_results"]
    ]
    show(rows, output, ["gate", "result", "reason"])
    if promotion["approvals"]:
        show(promotion["approvals"], output, ["user", "role", "decision", "comment", "at"])
    if promotion["decision"]:
        d = promotion["decision"]
        console.print(f"decision: {d['outcome']} ({d['reason']}), envelope {d['envelope_digest']}")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise CliError(msg) from None


def promote(
    release: Annotated[str, typer.Argument(help="release id or NAME@VERSION")],
    to: Annotated[str, typer.Option("--to", help="target environment")],
    source: Annotated[str | None, typer.Option("--from", help="default: the previous one")] = None,
    wait: Annotated[bool, typer.Option(help="wait until the promotion is settled")] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits at most")] = 3600,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Request a promotion; with --wait, exit 0 only when it ends approved (or deployed)."""
    client = StellaClient()
    body = {"release_id": release, "target_environment": to}
    if source:
        body["source_environment"] = source
    promotion = client.post("/promotions", body)
    deadline = time.monotonic() + timeout
    while wait and promotion["state"] not in SETTLED and time.monotonic() < deadline:
        time.sleep(1)
        promotion = client.get(f"/promotions/{promotion['id']}")
    show_promotion(promotion, output)
    if wait and promotion["state"] not in {"approved", "deployed"}:
        raise typer.Exit(1)


@promotion_app.command("show")
def promotion_show(promotion_id: str, output: OutputOpt = Output.TABLE) -> None:
    """A promotion with its gate table, approvals and decision."""
    show_promotion(StellaClient().get(f"/promotions/{promotion_id}"), output)


@promotion_app.command("list")
def promotion_list(
    env: Annotated[str | None, typer.Option(help="target environment")] = None,
    state: Annotated[str | None, typer.Option()] = None,
    release: Annotated[str | None, typer.Option(help="id or NAME@VERSION")] = None,
    limit: Annotated[int, typer.Option()] = 50,
    output: OutputOpt = Output.TABLE,
) -> None:
    items = StellaClient().list_all(
        "/promotions", limit=limit, environment=env, state=state, release=release
    )
    show(
        items,
        output,
        [
            "id",
            "release",
            "source_environment",
            "target_environment",
            "state",
            "requested_by",
            "requested_at",
        ],
    )


@promotion_app.command("events")
def promotion_events(promotion_id: str, output: OutputOpt = Output.TABLE) -> None:
    items = StellaClient().get(f"/promotions/{promotion_id}/events")["items"]
    show(items, output, ["seq", "at", "from", "to", "by", "reason"])


@promotion_app.command("cancel")
def promotion_cancel(
    promotion_id: str, yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False
) -> None:
    if not yes and console.is_terminal:
        typer.confirm(f"Cancel promotion {promotion_id}?", abort=True)
    show_promotion(StellaClient().post(f"/promotions/{promotion_id}/cancel"), Output.TABLE)


@promotion_app.command("reevaluate")
def promotion_reevaluate(promotion_id: str, output: OutputOpt = Output.TABLE) -> None:
    show_promotion(StellaClient().post(f"/promotions/{promotion_id}/reevaluate"), output)


@promotion_app.command("override")
def promotion_override(
    promotion_id: str,
    reason: Annotated[str, typer.Option(help="why the freeze must be broken (audited)")],
    gate: Annotated[str, typer.Option()] = "freeze_window",
) -> None:
    """Break-glass (admin): let a promotion through a freeze window."""
    body = {"gate": gate, "reason": reason}
    show_promotion(StellaClient().post(f"/promotions/{promotion_id}/override", body), Output.TABLE)


def approve(
    promotion_id: str,
    comment: Annotated[str, typer.Option()] = "",
    output: OutputOpt = Output.TABLE,
) -> None:
    """Approve a promotion (the gates are evaluated again)."""
    show_promotion(
        StellaClient().post(f"/promotions/{promotion_id}/approve", {"comment": comment}), output
    )


def reject(
    promotion_id: str, reason: Annotated[str, typer.Option()], output: OutputOpt = Output.TABLE
) -> None:
    """Reject a promotion; a rejection is final."""
    show_promotion(
        StellaClient().post(f"/promotions/{promotion_id}/reject", {"reason": reason}), output
    )


@policy_app.command("apply")
def policy_apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="a .rego file")],
    name: Annotated[str | None, typer.Option(help="default: the file name without .rego")] = None,
) -> None:
    """Store a policy version (a syntax error is reported with its line)."""
    policy = StellaClient().post("/policies", {"name": name or file.stem, "rego": _read(file)})
    console.print(f"policy {policy['name']} version {policy['version']} ({policy['hash'][:19]}…)")


@policy_app.command("list")
def policy_list(output: OutputOpt = Output.TABLE) -> None:
    show(
        StellaClient().get("/policies")["items"], output, ["name", "version", "hash", "created_at"]
    )


@policy_app.command("show")
def policy_show(name: str) -> None:
    policy = StellaClient().get(f"/policies/{name}")
    console.print(f"# {policy['name']} v{policy['version']} {policy['hash']}")
    print(policy["rego"])


@decision_app.command("get")
def decision_get(
    promotion_id: str, out: Annotated[Path, typer.Option("--out", "-o", help="file to write")]
) -> None:
    """Download a promotion's signed decision record (DSSE envelope)."""
    envelope = StellaClient().get(f"/promotions/{promotion_id}/decision")
    out.write_text(json.dumps(envelope, indent=2) + "\n")
    console.print(f"decision record written to {out}")


@decision_app.command("verify")
def decision_verify(
    file: Annotated[Path, typer.Argument(help="DSSE envelope (JSON)")],
    key: Annotated[Path, typer.Option("--key", help="Ed25519 public key (PEM)")],
) -> None:
    """Verify a decision record offline: no server is needed."""
    from stella.adapters.signing.dsse import VerificationError, verify_envelope

    try:
        envelope = json.loads(_read(file))
    except ValueError:
        msg = f"{file} is not JSON"
        raise CliError(msg) from None
    try:
        statement = verify_envelope(envelope, _read(key).encode())
    except VerificationError as exc:
        msg = f"verification failed: {exc}"
        raise CliError(msg) from None
    predicate = statement["predicate"]
    subjects = ", ".join(
        f"{s['name']}@sha256:{s['digest']['sha256'][:12]}…" for s in statement["subject"]
    )
    console.print(
        f"verified: promotion {predicate['promotion_id']} {predicate['outcome']} "
        f"({predicate['reason']}); {predicate['release']['name']} "
        f"{predicate['release']['version']} → {predicate['target_environment']}; {subjects}"
    )


@decision_app.command("replay")
def decision_replay(promotion_id: str, output: OutputOpt = Output.TABLE) -> None:
    """Re-run the gates on the recorded inputs; exit 1 when anything differs."""
    result = StellaClient().post(f"/promotions/{promotion_id}/replay")
    if output is Output.JSON:
        show(result, output, [])
    elif result["identical"]:
        console.print(
            f"identical: evaluation {result['evaluation_seq']} replays to "
            f"{result['outcome']} ({result['reason']})"
        )
    else:
        show(result["differences"], output, ["gate", "field", "recorded", "replayed"])
    if not result["identical"]:
        raise typer.Exit(1)


@keys_app.command("list")
def keys_list(output: OutputOpt = Output.TABLE) -> None:
    show(StellaClient().get("/keys")["keys"], output, ["keyid", "algorithm"])


@keys_app.command("export")
def keys_export(out: Annotated[Path, typer.Option("--out", "-o")]) -> None:
    """Write the decision-signing public key (PEM), for `stella decision verify --key`."""
    key = StellaClient().get("/keys")["keys"][0]
    out.write_text(key["public_key_pem"])
    console.print(f"public key {key['keyid']} written to {out}")
