"""User commands: `stella env|target|component|release|integration|user|audit|apply`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from stella.cli.client import CliError, StellaClient
from stella.cli.render import Output, console, show, show_release

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
FileOpt = Annotated[
    Path | None, typer.Option("--file", "-f", help="YAML or JSON body (flags override it)")
]
LimitOpt = Annotated[int | None, typer.Option(help="Read at most this many items")]


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise CliError(msg) from None
    except yaml.YAMLError as exc:
        msg = f"{path} is not valid YAML/JSON: {str(exc).splitlines()[0]}"
        raise CliError(msg) from None
    if not isinstance(data, dict):
        msg = f"{path} must hold a mapping (an object)"
        raise CliError(msg)
    return data


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            msg = f"{option} takes KEY=VALUE, got '{item}'"
            raise CliError(msg)
        result[key] = value
    return result


def _merge(base: dict[str, Any], **flags: Any) -> dict[str, Any]:
    return base | {k: v for k, v in flags.items() if v is not None and v != {}}


ENV_COLUMNS = ["promotion_order", "slug", "name", "is_production", "state", "gates"]
TARGET_COLUMNS = ["name", "type", "environment_id", "labels", "state", "health"]
COMPONENT_COLUMNS = ["name", "repository", "id"]
RELEASE_COLUMNS = ["name", "version", "state", "created_at", "id"]
INTEGRATION_COLUMNS = ["name", "type", "url", "credentials_ref", "webhook_url"]

env_app = typer.Typer(help="Environments (dev → stage → prod).", no_args_is_help=True)
target_app = typer.Typer(help="Deployment targets.", no_args_is_help=True)
component_app = typer.Typer(help="Components and their pushed versions.", no_args_is_help=True)
release_app = typer.Typer(help="Digest-pinned, immutable releases.", no_args_is_help=True)
integration_app = typer.Typer(help="Registry integrations.", no_args_is_help=True)
user_app = typer.Typer(help="Users and their API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)


@env_app.command("list")
def env_list(output: OutputOpt = Output.TABLE) -> None:
    show(StellaClient().list_all("/environments"), output, ENV_COLUMNS)


@env_app.command("show")
def env_show(ref: str, output: OutputOpt = Output.TABLE) -> None:
    show(
        StellaClient().get(f"/environments/{ref}"), output, [*ENV_COLUMNS, "approval_policy", "id"]
    )


@env_app.command("create")
def env_create(
    file: FileOpt = None,
    name: Annotated[str | None, typer.Option()] = None,
    slug: Annotated[str | None, typer.Option()] = None,
    order: Annotated[int | None, typer.Option("--order", help="promotion order")] = None,
    production: Annotated[bool | None, typer.Option("--production/--no-production")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    body = _merge(
        _load(file), name=name, slug=slug, promotion_order=order, is_production=production
    )
    show(StellaClient().post("/environments", body), output, [*ENV_COLUMNS, "id"])


@target_app.command("list")
def target_list(
    env: Annotated[str | None, typer.Option(help="environment slug")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    show(StellaClient().list_all("/targets", environment=env), output, TARGET_COLUMNS)


@target_app.command("show")
def target_show(ref: str, output: OutputOpt = Output.TABLE) -> None:
    show(StellaClient().get(f"/targets/{ref}"), output, [*TARGET_COLUMNS, "connection", "id"])


@target_app.command("create")
def target_create(
    file: FileOpt = None,
    name: Annotated[str | None, typer.Option()] = None,
    env: Annotated[str | None, typer.Option(help="environment slug")] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="docker_host|compose_host|ssh_remote")
    ] = None,
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable")] = None,
    connection: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    body = _merge(
        _load(file),
        name=name,
        environment=env,
        type=type_,
        labels=_pairs(label, "--label"),
        connection=_pairs(connection, "--connection"),
    )
    show(StellaClient().post("/targets", body), output, [*TARGET_COLUMNS, "id"])


@component_app.command("list")
def component_list(output: OutputOpt = Output.TABLE) -> None:
    show(StellaClient().list_all("/components"), output, COMPONENT_COLUMNS)


@component_app.command("show")
def component_show(ref: str, output: OutputOpt = Output.TABLE) -> None:
    show(StellaClient().get(f"/components/{ref}"), output, [*COMPONENT_COLUMNS, "runtime"])


@component_app.command("create")
def component_create(
    file: FileOpt = None,
    name: Annotated[str | None, typer.Option()] = None,
    repository: Annotated[str | None, typer.Option(help="host[:port]/path")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    body = _merge(_load(file), name=name, repository=repository)
    show(StellaClient().post("/components", body), output, COMPONENT_COLUMNS)


@component_app.command("versions")
def component_versions(ref: str, limit: LimitOpt = 50, output: OutputOpt = Output.TABLE) -> None:
    items = StellaClient().list_all(f"/components/{ref}/versions", limit=limit)
    show(items, output, ["digest", "tag", "pushed_at"])


@release_app.command("list")
def release_list(
    name: Annotated[str | None, typer.Option()] = None,
    state: Annotated[str | None, typer.Option()] = None,
    limit: LimitOpt = 50,
    output: OutputOpt = Output.TABLE,
) -> None:
    items = StellaClient().list_all("/releases", limit=limit, name=name, state=state)
    show(items, output, RELEASE_COLUMNS)


@release_app.command("show")
def release_show(ref: str, output: OutputOpt = Output.TABLE) -> None:
    """REF is the release id or NAME@VERSION."""
    show_release(StellaClient().get(f"/releases/{ref}"), output)


@release_app.command("create")
def release_create(
    file: FileOpt = None,
    name: Annotated[str | None, typer.Option()] = None,
    version: Annotated[str | None, typer.Option(help="SemVer, e.g. 2.3.1")] = None,
    source_ref: Annotated[str | None, typer.Option(help="git SHA or tag")] = None,
    component: Annotated[
        list[str] | None, typer.Option("--component", "-c", help="NAME=IMAGE_REF, repeatable")
    ] = None,
    draft: Annotated[bool, typer.Option(help="create as draft")] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    body = _merge(
        _load(file),
        name=name,
        version=version,
        source_ref=source_ref,
        components=_pairs(component, "--component"),
        state="draft" if draft else None,
    )
    show_release(StellaClient().post("/releases", body), output)


@release_app.command("deprecate")
def release_deprecate(ref: str, output: OutputOpt = Output.TABLE) -> None:
    show_release(StellaClient().post(f"/releases/{ref}/deprecate"), output)


@release_app.command("activate")
def release_activate(ref: str, output: OutputOpt = Output.TABLE) -> None:
    show_release(StellaClient().post(f"/releases/{ref}/activate"), output)


@integration_app.command("list")
def integration_list(output: OutputOpt = Output.TABLE) -> None:
    show(StellaClient().list_all("/integrations"), output, INTEGRATION_COLUMNS)


@integration_app.command("show")
def integration_show(ref: str, output: OutputOpt = Output.TABLE) -> None:
    show(StellaClient().get(f"/integrations/{ref}"), output, [*INTEGRATION_COLUMNS, "id"])


@integration_app.command("create")
def integration_create(
    file: FileOpt = None,
    name: Annotated[str | None, typer.Option()] = None,
    url: Annotated[str | None, typer.Option(help="http(s)://host[:port]")] = None,
    credentials_ref: Annotated[
        str | None, typer.Option(help="env:NAME holding user:password")
    ] = None,
    webhook_secret_ref: Annotated[str | None, typer.Option(help="env:NAME")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    body = _merge(
        {"type": "registry"} | _load(file),
        name=name,
        url=url,
        credentials_ref=credentials_ref,
        webhook_secret_ref=webhook_secret_ref,
    )
    created = StellaClient().post("/integrations", body)
    show(created, output, [*INTEGRATION_COLUMNS, "id"])
    if output is Output.TABLE and created.get("webhook_secret"):
        console.print(f"webhook secret (shown once): {created['webhook_secret']}")


@integration_app.command("test")
def integration_test(ref: str) -> None:
    result = StellaClient().post(f"/integrations/{ref}/test")
    console.print(f"registry {result['host']}: reachable")


@user_app.command("create")
def user_create(
    name: str, role: Annotated[str, typer.Option(help="viewer|releaser|approver|admin")]
) -> None:
    """Prints only the new user's token."""
    print(StellaClient().post("/users", {"name": name, "role": role})["token"])


@user_app.command("list")
def user_list(output: OutputOpt = Output.TABLE) -> None:
    show(StellaClient().list_all("/users"), output, ["name", "role", "created_at", "id"])


token_app = typer.Typer(help="A user's API tokens: list, issue, revoke.", no_args_is_help=True)
user_app.add_typer(token_app, name="token")
TOKEN_COLUMNS = ["prefix", "created_at", "revoked_at", "id"]


@token_app.command("list")
def token_list(user: str, output: OutputOpt = Output.TABLE) -> None:
    """The user's tokens, active and revoked (prefixes only)."""
    show(StellaClient().get(f"/users/{user}/tokens")["items"], output, TOKEN_COLUMNS)


@token_app.command("create")
def token_create(user: str) -> None:
    """Issue a further token and print only it (rotate: create, switch over, revoke the old)."""
    print(StellaClient().post(f"/users/{user}/tokens")["token"])


@token_app.command("revoke")
def token_revoke(
    user: str,
    token_id: Annotated[
        str | None, typer.Option("--id", help="one token (see `token list`); default: all")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Revoke one token, or every active token of the user; their web sessions end too."""
    which = f"token {token_id}" if token_id else "every active token"
    if not yes and console.is_terminal:
        typer.confirm(f"Revoke {which} of {user}? Clients using it stop working", abort=True)
    client = StellaClient()
    if token_id:
        revoked = [client.post(f"/users/{user}/tokens/{token_id}/revoke")]
    else:
        revoked = client.post(f"/users/{user}/tokens/revoke")["items"]
    show(revoked, output, TOKEN_COLUMNS)


@audit_app.command("list")
def audit_list(
    resource_type: Annotated[str | None, typer.Option()] = None,
    action: Annotated[str | None, typer.Option()] = None,
    limit: LimitOpt = 50,
    output: OutputOpt = Output.TABLE,
) -> None:
    items = StellaClient().list_all(
        "/audit-events", limit=limit, resource_type=resource_type, action=action
    )
    show(items, output, ["occurred_at", "actor_name", "action", "resource_type", "resource_id"])


def apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="stella.yaml")],
    dry_run: Annotated[bool, typer.Option(help="print the plan, change nothing")] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create or update environments, integrations, components and targets from one file."""
    result = StellaClient().post("/apply", _load(file), dry_run=str(dry_run).lower())
    if output is Output.JSON:
        print(json.dumps(result, indent=2))
        return
    for entry in result["entries"]:
        changes = f" ({', '.join(entry['changes'])})" if entry["changes"] else ""
        console.print(f"{entry['action']:>9}  {entry['kind']} {entry['name']}{changes}")
    for name, secret in result["generated_webhook_secrets"].items():
        console.print(f"webhook secret of integration {name} (shown once): {secret}")
    if not result["changed"]:
        console.print("Nothing to change: the configuration already matches the file.")
    elif result["dry_run"]:
        console.print("Dry run: nothing was changed.")
