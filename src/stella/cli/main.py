"""Entry point of the `stella` command: assembles the sub-commands, reports errors in one line."""

from __future__ import annotations

import sys

import typer

from stella.cli import (
    attachments,
    deployments,
    evidence,
    operators,
    promotions,
    resources,
    security,
    workflows,
)
from stella.cli.client import CliError
from stella.domain.errors import ConfigurationError, StellaError

app = typer.Typer(
    name="stella",
    help="Stella Release Orchestrator. STELLA_URL / STELLA_TOKEN select the server and token.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(resources.env_app, name="env")
app.add_typer(resources.target_app, name="target")
app.add_typer(resources.component_app, name="component")
app.add_typer(resources.release_app, name="release")
app.add_typer(resources.integration_app, name="integration")
app.add_typer(resources.user_app, name="user")
app.add_typer(resources.audit_app, name="audit")
app.add_typer(workflows.workflow_app, name="workflow")
app.add_typer(workflows.run_app, name="run")
app.command("apply")(resources.apply)
app.command("promote")(promotions.promote)
app.command("approve")(promotions.approve)
app.command("reject")(promotions.reject)
app.add_typer(promotions.promotion_app, name="promotion")
app.add_typer(promotions.policy_app, name="policy")
app.add_typer(promotions.decision_app, name="decision")
app.add_typer(promotions.scan_app, name="scan")
app.add_typer(promotions.keys_app, name="keys")
app.add_typer(deployments.agent_app, name="agent")
app.add_typer(deployments.deployment_app, name="deployment")
app.add_typer(deployments.drift_app, name="drift")
app.add_typer(evidence.evidence_app, name="evidence")
app.add_typer(security.advisories_app, name="advisories")
app.add_typer(security.waiver_app, name="waiver")
app.add_typer(security.verdict_app, name="verdict")
app.command("exposure")(security.exposure)
app.command("rollback")(deployments.rollback)
app.command("server")(operators.server)
app.command("worker")(operators.worker_command)
app.add_typer(operators.db_app, name="db")
app.add_typer(operators.admin_app, name="admin")
app.add_typer(attachments.sbom_app, name="sbom")
app.add_typer(attachments.vex_app, name="vex")
app.add_typer(attachments.attestation_app, name="attestation")
app.add_typer(attachments.attachment_app, name="attachment")


def main() -> None:
    """Run the CLI; known failures print `error: …` on one line and exit non-zero."""
    try:
        code = app(standalone_mode=False)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (CliError, StellaError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors: unknown command or option
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc}", err=True)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
