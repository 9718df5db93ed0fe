"""Operator commands that work on the database directly: server, db, admin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stella.domain.tenancy import Role

if TYPE_CHECKING:
    from stella.bootstrap import Container

# Database and server modules are imported inside the commands: the API-client commands of the
# CLI then start without loading SQLAlchemy, uvicorn and the registry adapters.
DEFAULT_TENANT = "default"

db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
admin_app = typer.Typer(
    help="Tenants, first admin and users (needs database access).", no_args_is_help=True
)


def _container() -> Container:
    from stella.adapters.db.migrate import upgrade
    from stella.bootstrap import build_container
    from stella.config import load_settings

    container = build_container(load_settings())
    upgrade(container.engine)
    return container


def write_token_file(path: Path, token: str) -> None:
    """Write the token as one line, readable by the owner only (0600 from the first byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    path.chmod(0o600)


def server(
    worker: Annotated[
        bool | None, typer.Option("--worker/--no-worker", help="run the embedded worker")
    ] = None,
    agent_listener: Annotated[
        bool,
        typer.Option(
            "--agent-listener/--no-agent-listener",
            help="serve the mutual-TLS agent listener on STELLA_AGENT_LISTEN",
        ),
    ] = True,
) -> None:
    """Migrate the database, create the admin on first start, serve API + UI (+ a worker)."""
    import uvicorn

    from stella.adapters.tracing import configure_tracing
    from stella.api.agent_app import start_agent_listener
    from stella.api.app import create_app
    from stella.bootstrap import utc_now
    from stella.config import load_settings
    from stella.logging_setup import configure_logging
    from stella.services.auth import bootstrap

    settings = load_settings()
    configure_logging(settings.log_level)
    configure_tracing("server")
    container = _container()
    issued = bootstrap(container.uow, utc_now)
    if issued is not None:
        write_token_file(settings.admin_token_path, issued.token)
        typer.echo(f"admin token written to {settings.admin_token_path}", err=True)
    embedded = (
        container.make_worker()
        if (settings.embedded_worker if worker is None else worker)
        else None
    )
    listener = start_agent_listener(container) if agent_listener else None
    if listener is not None:
        typer.echo(f"agent listener on {settings.resolved_agent_url} (mutual TLS)", err=True)
    if embedded is not None:
        embedded.start()
    typer.echo(f"serving on http://{settings.listen}", err=True)
    try:
        uvicorn.run(
            create_app(container),
            host=settings.listen_host,
            port=settings.listen_port,
            log_config=None,
            access_log=False,
        )
    finally:
        if listener is not None:
            listener.should_exit = True
        if embedded is not None:
            embedded.stop()


def worker_command(
    name: Annotated[str | None, typer.Option(help="worker id (default host:pid:random)")] = None,
) -> None:
    """Run a standalone worker: claim and execute workflow steps until SIGTERM."""
    import signal

    from stella.adapters.db.migrate import current_revision, head_revision
    from stella.adapters.tracing import configure_tracing
    from stella.bootstrap import build_container
    from stella.config import load_settings
    from stella.logging_setup import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    configure_tracing("worker")
    container = build_container(settings)
    if current_revision(container.engine) != head_revision():
        typer.echo("error: the database is not migrated; run `stella db upgrade` first", err=True)
        raise typer.Exit(1)
    runner = container.make_worker(name)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop(wait=False))
    signal.signal(signal.SIGINT, lambda *_: runner.stop(wait=False))
    typer.echo(f"worker {runner.engine.worker_id} started", err=True)
    runner.run_forever()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from stella.adapters.db.migrate import current_revision

    container = _container()
    typer.echo(f"database at revision {current_revision(container.engine)}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision and the newest one this version ships."""
    from stella.adapters.db.migrate import current_revision, head_revision
    from stella.bootstrap import build_container
    from stella.config import load_settings

    container = build_container(load_settings())
    typer.echo(f"current: {current_revision(container.engine)}  head: {head_revision()}")


@admin_app.command("bootstrap")
def admin_bootstrap() -> None:
    """Create the default tenant and its admin; prints the admin token once."""
    from stella.bootstrap import utc_now
    from stella.services.auth import bootstrap

    container = _container()
    issued = bootstrap(container.uow, utc_now)
    if issued is None:
        typer.echo(
            "error: already bootstrapped; use `stella admin create-user NAME --role admin`",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(issued.token)


@admin_app.command("create-user")
def admin_create_user(
    name: str,
    role: Annotated[Role, typer.Option(help="viewer|releaser|approver|admin")],
    tenant: Annotated[str, typer.Option(help="tenant name")] = DEFAULT_TENANT,
) -> None:
    """Create a user; prints only the token."""
    from stella.bootstrap import utc_now
    from stella.services.auth import create_user_as_operator
    from stella.services.specs import UserSpec

    container = _container()
    issued = create_user_as_operator(container.uow, tenant, UserSpec(name=name, role=role), utc_now)
    typer.echo(issued.token)


@admin_app.command("create-tenant")
def admin_create_tenant(
    name: str, admin: Annotated[str, typer.Option(help="name of its first admin")] = "admin"
) -> None:
    """Create another tenant with its first admin; prints that admin's token."""
    from stella.bootstrap import utc_now
    from stella.services.auth import create_tenant

    container = _container()
    typer.echo(create_tenant(container.uow, name, admin, utc_now).token)
