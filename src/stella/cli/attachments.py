"""`stella sbom`, `vex`, `attestation` and `attachment`: documents attached to image digests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from stella.cli.client import CliError, StellaClient
from stella.cli.render import Output, console, show
from stella.domain.attachment_formats import (
    AttachmentKind,
    DocumentRejected,
    formats_of,
    is_sha256_digest,
    openvex_product_digests,
    parse_json,
)

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
DigestOpt = Annotated[str, typer.Option("--digest", help="sha256:… of the image")]
FileArg = Annotated[Path, typer.Argument(help="the JSON document", show_default=False)]
COLUMNS = ["id", "kind", "format", "size", "digest", "source", "created_at"]

sbom_app = typer.Typer(help="SBOMs (CycloneDX, SPDX) attached to images.", no_args_is_help=True)
vex_app = typer.Typer(help="VEX documents (OpenVEX, CycloneDX VEX).", no_args_is_help=True)
attestation_app = typer.Typer(help="Attestations (in-toto, DSSE).", no_args_is_help=True)
attachment_app = typer.Typer(
    help="Documents attached to image digests: list, show, download, discover.",
    no_args_is_help=True,
)


def _format_opt(kind: AttachmentKind) -> Any:
    names = "|".join(formats_of(kind))
    return typer.Option("--format", help=f"{names}; default: detected from the document")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise CliError(msg) from None


def _upload(
    path: str, content: bytes, digest: str, format_name: str | None, output: Output
) -> dict[str, Any]:
    """POST one document; in table mode, say whether it was new. Returns the attachment."""
    params = {"digest": digest} | ({"format": format_name} if format_name else {})
    response = StellaClient().send(
        "POST",
        path,
        content=content,
        params=params,
        headers={"Content-Type": "application/json"},
    )
    attachment: dict[str, Any] = response.json()
    if output is Output.TABLE:
        state = "attached" if response.status_code == 201 else "already attached"
        console.print(
            f"{attachment['kind']} {attachment['id']} ({attachment['format']}, "
            f"{attachment['size']} bytes) {state} to {attachment['subject_digest']}"
        )
    return attachment


@sbom_app.command("upload")
def sbom_upload(
    file: FileArg,
    digest: DigestOpt,
    format_name: Annotated[str | None, _format_opt(AttachmentKind.SBOM)] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Attach an SBOM to an image digest (stored byte for byte)."""
    attachment = _upload("/sboms", _read(file), digest, format_name, output)
    if output is Output.JSON:
        show(attachment, output, [])


@vex_app.command("upload")
def vex_upload(
    file: FileArg,
    digest: Annotated[
        str | None,
        typer.Option("--digest", help="default: the digests the statements' products name"),
    ] = None,
    format_name: Annotated[str | None, _format_opt(AttachmentKind.VEX)] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Attach a VEX document to the image(s) it is about."""
    content = _read(file)
    digests = [digest] if digest else _product_digests(file, content)
    attachments = [_upload("/vex", content, each, format_name, output) for each in digests]
    if output is Output.JSON:  # one object for --digest, a list when the products chose
        show(attachments if digest is None else attachments[0], output, [])


def _product_digests(file: Path, content: bytes) -> list[str]:
    try:
        document = parse_json(content)
    except DocumentRejected as exc:
        msg = f"{file}: {exc}"
        raise CliError(msg) from None
    digests = openvex_product_digests(document)
    if not digests:
        msg = (
            f"{file} names no image digest in its products (pkg:oci/…?digest=sha256:… or "
            "sha256:…); give --digest"
        )
        raise CliError(msg)
    return digests


@attestation_app.command("upload")
def attestation_upload(
    file: FileArg,
    digest: DigestOpt,
    format_name: Annotated[str | None, _format_opt(AttachmentKind.ATTESTATION)] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Attach an attestation (in-toto Statement or DSSE envelope) to an image digest."""
    attachment = _upload("/attestations", _read(file), digest, format_name, output)
    if output is Output.JSON:
        show(attachment, output, [])


@attachment_app.command("list")
def attachment_list(
    digest: DigestOpt,
    kind: Annotated[AttachmentKind | None, typer.Option(help="only this kind")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """The documents attached to an image digest."""
    if not is_sha256_digest(digest):
        msg = f"--digest '{digest}' is not sha256:<64 lowercase hex>"
        raise CliError(msg)
    items = StellaClient().list_all("/attachments", digest=digest, kind=kind)
    show(items, output, COLUMNS)


@attachment_app.command("show")
def attachment_show(
    attachment_id: Annotated[str, typer.Argument(metavar="ID")],
    output: OutputOpt = Output.TABLE,
) -> None:
    """One attachment's metadata."""
    attachment = StellaClient().get(f"/attachments/{attachment_id}")
    show(attachment, output, ["id", "subject_digest", *COLUMNS[1:], "source_ref", "created_by"])


@attachment_app.command("download")
def attachment_download(
    attachment_id: Annotated[str, typer.Argument(metavar="ID")],
    out: Annotated[Path, typer.Option("--out", "-o", help="file to write the document to")],
) -> None:
    """Write the document exactly as it was uploaded."""
    response = StellaClient().send("GET", f"/attachments/{attachment_id}/content")
    try:
        out.write_bytes(response.content)
    except OSError as exc:
        msg = f"cannot write {out}: {exc.strerror}"
        raise CliError(msg) from None
    console.print(f"{len(response.content)} bytes ({response.headers.get('etag', '-')}) → {out}")


@attachment_app.command("discover")
def attachment_discover(
    digest: Annotated[str | None, typer.Option(help="an image digest a component has")] = None,
    release: Annotated[str | None, typer.Option(help="release id or NAME@VERSION")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Store the SBOMs, VEX and attestations the registry holds as referrers of the image(s)."""
    if (digest is None) == (release is None):
        msg = "give exactly one of --digest or --release"
        raise CliError(msg)
    body = {"digest": digest} if digest else {"release": release}
    found = StellaClient().post("/attachments/discover", body)
    if output is Output.JSON:
        show(found, output, [])
        return
    for subject in found["subjects"]:
        console.print(
            f"{subject['repository']}@{subject['digest']}: {subject['referrers']} referrer(s) "
            f"via {subject['method']}"
        )
    console.print(
        f"{len(found['added'])} added, {len(found['existing'])} already attached, "
        f"{len(found['skipped'])} skipped"
    )
    if found["added"] or found["existing"]:
        show(found["added"] + found["existing"], output, COLUMNS)
    for skipped in found["skipped"]:
        console.print(f"skipped {skipped['referrer']}: {skipped['reason']}")
