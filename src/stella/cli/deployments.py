"""`stella agent …`, `stella deployment …`, `stella drift check`, `stella rollback`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from stella.cli.client import CliError, StellaClient
from stella.cli.promotions import OutputOpt, show_promotion
from stella.cli.render import Output, console, show

agent_app = typer.Typer(help="Deployment agents: join tokens, enrolment, running, revoking")
token_app = typer.Typer(help="One-time join tokens agents enrol with")
agent_app.add_typer(token_app, name="token")
deployment_app = typer.Typer(help="Deployment jobs (one per target) and their artifacts")
drift_app = typer.Typer(help="Compare what targets run with what was deployed")

Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


@token_app.command("create")
def token_create(
    env: Annotated[str, typer.Option("--env", help="environment the agent will serve")],
    capabilities: Annotated[
        str, typer.Option(help="comma-separated: docker, compose, ssh")
    ] = "docker",
    ttl: Annotated[str, typer.Option(help="how long the token stays valid (≤ 7d)")] = "1h",
    output: OutputOpt = Output.TABLE,
) -> None:
    """Print a one-time join token for `stella agent run --join-token`."""
    body = {
        "environment": env,
        "capabilities": [c.strip() for c in capabilities.split(",") if c.strip()],
        "ttl": ttl,
    }
    created = StellaClient().post("/agents/join-tokens", body)
    if output is Output.JSON:
        show(created, output, [])
        return
    typer.echo(created["token"])


@agent_app.command("list")
def agent_list(output: OutputOpt = Output.TABLE) -> None:
    items = StellaClient().list_all("/agents")
    show(items, output, ["name", "state", "capabilities", "last_heartbeat", "version", "id"])


@agent_app.command("show")
def agent_show(agent: str, output: OutputOpt = Output.TABLE) -> None:
    found = StellaClient().get(f"/agents/{agent}")
    show([found], output, ["name", "state", "capabilities", "last_heartbeat", "health", "id"])


@agent_app.command("revoke")
def agent_revoke(agent: str, yes: Yes = False) -> None:
    """Revoke an agent: its certificate stops working immediately."""
    if not yes and console.is_terminal:
        typer.confirm(f"Revoke agent {agent}? It will stop deploying at once", abort=True)
    revoked = StellaClient().post(f"/agents/{agent}/revoke")
    typer.echo(f"agent {revoked['name']} revoked")


@agent_app.command("run")
def agent_run(
    server: Annotated[
        str | None, typer.Option(help="API URL to enrol with (first start only)")
    ] = None,
    join_token: Annotated[str | None, typer.Option(help="one-time join token")] = None,
    name: Annotated[str | None, typer.Option(help="agent name (first start only)")] = None,
    data_dir: Annotated[
        Path, typer.Option(help="keeps the agent's key, certificate and identity")
    ] = Path("/var/lib/stella-agent"),
    docker_host: Annotated[
        str | None, typer.Option(help="Docker engine (default: DOCKER_HOST or the local socket)")
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="compose lockfiles (default DATA_DIR/work)")
    ] = None,
    heartbeat: Annotated[
        float | None, typer.Option(help="seconds between heartbeats (default: the server's)")
    ] = None,
) -> None:
    """Enrol (first start) and run the agent: heartbeats, tasks, results; stops on SIGTERM."""
    from stella.adapters.tracing import configure_tracing
    from stella.agent.runner import AgentError, AgentOptions, run_agent
    from stella.logging_setup import configure_logging

    configure_logging(os.environ.get("STELLA_LOG_LEVEL", "info"))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    configure_tracing("agent")
    options = AgentOptions(
        data_dir=data_dir,
        server=server,
        join_token=join_token,
        name=name,
        docker_host=docker_host or os.environ.get("DOCKER_HOST"),
        work_dir=work_dir or data_dir / "work",
        heartbeat_seconds=heartbeat,
    )
    try:
        run_agent(
            options,
            lambda identity: typer.echo(
                f"agent {identity.name} ({identity.agent_id}) connected to {identity.agent_url}",
                err=True,
            ),
        )
    except AgentError as exc:
        raise CliError(str(exc)) from None


@deployment_app.command("list")
def deployment_list(
    env: Annotated[str | None, typer.Option("--env")] = None,
    target: Annotated[str | None, typer.Option()] = None,
    promotion: Annotated[str | None, typer.Option()] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    items = StellaClient().list_all(
        "/deployments", environment=env, target=target, promotion=promotion
    )
    show(
        items,
        output,
        ["id", "target", "kind", "release_version", "state", "attempt", "finished_at", "error"],
    )


@deployment_app.command("show")
def deployment_show(deployment_id: str, output: OutputOpt = Output.TABLE) -> None:
    job = StellaClient().get(f"/deployments/{deployment_id}")
    if output is Output.JSON:
        show(job, output, [])
        return
    show([job], output, ["id", "target", "kind", "release_version", "state", "error"])
    if job.get("log"):
        console.print(job["log"], markup=False, highlight=False)


@deployment_app.command("artifact")
def deployment_artifact(deployment_id: str, name: str = "docker-compose.lock.yml") -> None:
    """Print an immutable artifact of a deployment (task.json, docker-compose.lock.yml)."""
    typer.echo(StellaClient().text(f"/deployments/{deployment_id}/artifacts/{name}"), nl=False)


@drift_app.command("check")
def drift_check(
    env: Annotated[str | None, typer.Option("--env")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Exit status 0 when every target runs what was deployed, 3 when some drifted."""
    params = {"environment": env} if env else {}
    report: dict[str, Any] = StellaClient().get("/drift", **params)
    if output is Output.JSON:
        show(report, output, [])
    else:
        show(
            report["items"],
            output,
            ["target", "environment", "state", "version", "reason", "observed_at"],
        )
    if report["drifted"]:
        raise typer.Exit(3)


def rollback(
    env: Annotated[str, typer.Option("--env", help="environment to roll back")],
    to: Annotated[
        str | None, typer.Option(help="release id or name@version (default: the previous one)")
    ] = None,
    yes: Yes = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Request a gated rollback of ENV to an earlier release (approvals still apply)."""
    if not yes and console.is_terminal:
        target = to or "the previous release"
        typer.confirm(f"Roll {env} back to {target}?", abort=True)
    show_promotion(StellaClient().post("/rollbacks", {"environment": env, "to": to}), output)
