"""`stella scan upload|show`, `stella advisories import|show`, `stella exposure`,
`stella waiver create|list|revoke`, `stella verdict show`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from stella.cli.client import CliError, StellaClient
from stella.cli.promotions import scan_app
from stella.cli.render import Output, console, show

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
advisories_app = typer.Typer(help="The offline advisory feed (OSV).", no_args_is_help=True)
waiver_app = typer.Typer(help="Expiring exceptions for one advisory.", no_args_is_help=True)
verdict_app = typer.Typer(help="Security verdicts of image digests.", no_args_is_help=True)

SCAN_FORMATS = ("trivy", "grype", "sarif", "cyclonedx", "native")


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise CliError(msg) from None
    except ValueError as exc:
        msg = f"{path} is not JSON ({exc})"
        raise CliError(msg) from None


def _detect(report: Any) -> str:
    """The scanner that wrote `report`, by the fields each one always writes."""
    if isinstance(report, list):
        return "native"
    if not isinstance(report, dict):
        return "native"
    if "Results" in report and "SchemaVersion" in report:
        return "trivy"
    if "matches" in report and ("descriptor" in report or "source" in report):
        return "grype"
    if "runs" in report and str(report.get("version", "")).startswith("2.1"):
        return "sarif"
    if report.get("bomFormat") == "CycloneDX":
        return "cyclonedx"
    if "findings" in report:
        return "native"
    msg = f"cannot tell which scanner wrote this report; pass --format ({', '.join(SCAN_FORMATS)})"
    raise CliError(msg)


@scan_app.command("upload")
def scan_upload(
    file: Annotated[Path, typer.Argument(help="the scanner's JSON report")],
    digest: Annotated[str, typer.Option(help="sha256:… of the scanned image")],
    format_name: Annotated[
        str | None, typer.Option("--format", help=f"one of {', '.join(SCAN_FORMATS)} (detected)")
    ] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Upload a scan report (Trivy, Grype, SARIF 2.1, CycloneDX, native) for an image."""
    report = _json_file(file)
    fmt = format_name or _detect(report)
    if fmt == "native":
        findings = report if isinstance(report, list) else report.get("findings", [])
        body: dict[str, Any] = {"digest": digest, "format": "native", "findings": findings}
    else:
        body = {"digest": digest, "format": fmt, "report": report}
    scan = StellaClient().post("/scans", body)
    if output is Output.JSON:
        typer.echo(json.dumps(scan, indent=2))
        return
    console.print(
        f"scan {scan['id']} ({scan['format']}): {scan['findings']} finding(s), "
        f"{len(scan['blocking'])} critical/high not marked unreachable"
    )


@scan_app.command("show")
def scan_show(scan_id: str, output: OutputOpt = Output.TABLE) -> None:
    """A scan's normalised findings."""
    scan = StellaClient().get(f"/scans/{scan_id}")
    if output is Output.JSON:
        typer.echo(json.dumps(scan, indent=2))
        return
    console.print(f"scan {scan['id']} of {scan['digest']} ({scan['format']})")
    show(
        scan["findings"],
        output,
        ["advisory_id", "severity", "package", "installed_version", "fixed_version", "reachable"],
    )


@advisories_app.command("import")
def advisories_import(
    source: Annotated[Path, typer.Argument(help="a zip or directory of OSV JSON files, or one")],
    output: OutputOpt = Output.TABLE,
) -> None:
    """Import an offline OSV feed; every stored SBOM is matched again (admin)."""
    if source.is_dir():
        import io
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(source.rglob("*.json")):
                archive.write(path, str(path.relative_to(source)))
        body, kind = buffer.getvalue(), "application/zip"
    else:
        try:
            body = source.read_bytes()
        except OSError as exc:
            msg = f"cannot read {source}: {exc.strerror}"
            raise CliError(msg) from None
        kind = "application/zip" if body[:4] == b"PK\x03\x04" else "application/json"
    summary = StellaClient(timeout=600).request(
        "POST", "/advisories/import", content=body, headers={"Content-Type": kind}
    )
    if output is Output.JSON:
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(
        f"{summary['added']} added, {summary['updated']} updated, {summary['unchanged']} "
        f"unchanged, {len(summary['skipped'])} skipped; "
        f"{len(summary['verdict_changes'])} verdict(s) changed"
    )
    for skipped in summary["skipped"]:
        console.print(f"skipped {skipped['source']}: {skipped['reason']}")
    for change in summary["verdict_changes"]:
        console.print(
            f"{change['environment']}: {', '.join(change['releases']) or change['digest']} "
            f"{change['old'] or 'new'} → {change['new']} ({change['reason']})"
        )


@advisories_app.command("show")
def advisories_show(advisory: str, output: OutputOpt = Output.TABLE) -> None:
    found = StellaClient().get(f"/advisories/{advisory}")
    if output is Output.JSON:
        typer.echo(json.dumps(found, indent=2))
        return
    show([found], output, ["id", "aliases", "severity", "summary"])


def exposure(
    advisory: Annotated[str, typer.Argument(help="CVE-…, GHSA-… or an OSV id")],
    output: OutputOpt = Output.TABLE,
) -> None:
    """Where an image affected by the advisory runs now; exit 3 when it runs anywhere."""
    found = StellaClient().get("/exposure", advisory=advisory)
    if output is Output.JSON:
        typer.echo(json.dumps(found, indent=2))
    else:
        rows = [
            {
                "environment": e["environment"],
                "release": e["release"],
                "targets": ", ".join(e["targets"]) or "-",
                "packages": ", ".join(
                    f"{f['package']} {f['installed_version']} (fixed {f['fixed_version']})"
                    for d in e["digests"]
                    for f in d["findings"]
                ),
            }
            for e in found["environments"]
        ]
        if rows:
            show(rows, output, ["environment", "release", "targets", "packages"])
        else:
            console.print(f"{advisory}: nothing running now is affected")
        if not found["known"]:
            console.print(f"note: {advisory} is not in the imported advisory feed")
    if found["environments"]:
        raise typer.Exit(3)


@waiver_app.command("create")
def waiver_create(
    advisory: Annotated[str, typer.Option(help="CVE-…, GHSA-… or an OSV id")],
    package: Annotated[str, typer.Option(help="package name or purl")],
    reason: Annotated[str, typer.Option(help="why this is acceptable (audited)")],
    ttl: Annotated[str, typer.Option(help="how long: 7d, 72h, P30D")] = "7d",
    env: Annotated[str | None, typer.Option("--env", help="only this environment")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Let one advisory on one package through the security gate until the waiver expires."""
    body = {"advisory": advisory, "package": package, "reason": reason, "ttl": ttl}
    if env:
        body["environment"] = env
    found = StellaClient().post("/waivers", body)
    show([found], output, ["id", "advisory", "package", "environment", "expires_at"])


@waiver_app.command("list")
def waiver_list(
    include_revoked: Annotated[bool, typer.Option("--all", help="revoked ones too")] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    items = StellaClient().get("/waivers", include_revoked=include_revoked)["items"]
    show(items, output, ["id", "advisory", "package", "environment", "expires_at", "revoked_at"])


@waiver_app.command("revoke")
def waiver_revoke(waiver_id: str, yes: Yes = False) -> None:
    if not yes and console.is_terminal:
        typer.confirm(f"Revoke waiver {waiver_id}? Promotions may be blocked again", abort=True)
    found = StellaClient().post(f"/waivers/{waiver_id}/revoke")
    typer.echo(f"waiver {found['id']} revoked")


@verdict_app.command("show")
def verdict_show(
    digest: Annotated[str, typer.Option(help="sha256:… of the image")],
    output: OutputOpt = Output.TABLE,
) -> None:
    """The image's verdict in every environment now, and how it changed."""
    found = StellaClient().get("/verdicts", digest=digest)
    if output is Output.JSON:
        typer.echo(json.dumps(found, indent=2))
        return
    show(found["verdicts"], output, ["environment", "state", "reason"])
    if found["history"]:
        show(
            found["history"],
            output,
            ["computed_at", "environment", "previous_state", "state", "cause"],
        )
