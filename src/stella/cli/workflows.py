"""`stella workflow …` and `stella run …`: templates, runs and a live view of a run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from stella.cli.client import CliError, StellaClient
from stella.cli.render import Output, console, show

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]
TERMINAL = {"succeeded", "failed", "cancelled", "rolled_back"}
STATE_STYLE = {
    "pending": "dim",
    "ready": "cyan",
    "running": "bold yellow",
    "waiting": "bold magenta",
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "dim",
    "rolled_back": "blue",
    "cancelled": "red",
    "rolling_back": "bold blue",
}

workflow_app = typer.Typer(help="Workflow templates (DAGs of steps).", no_args_is_help=True)
run_app = typer.Typer(help="Workflow runs.", no_args_is_help=True)


@workflow_app.command("apply")
def workflow_apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="workflow YAML or JSON")],
    output: OutputOpt = Output.TABLE,
) -> None:
    """Store the template; a new version only when its content changed."""
    try:
        text = file.read_text()
    except OSError as exc:
        msg = f"cannot read {file}: {exc.strerror}"
        raise CliError(msg) from None
    saved = StellaClient().request(
        "POST", "/workflows", content=text.encode(), headers={"Content-Type": "application/yaml"}
    )
    if output is Output.JSON:
        show(saved, output, [])
        return
    console.print(
        f"workflow {saved['name']} version {saved['version']} "
        f"({len(saved['steps'])} steps, digest {saved['digest'][:19]}…)"
    )


@workflow_app.command("list")
def workflow_list(output: OutputOpt = Output.TABLE) -> None:
    items = StellaClient().list_all("/workflows")
    latest: dict[str, Any] = {}
    for item in items:
        if item["name"] not in latest or item["version"] > latest[item["name"]]["version"]:
            latest[item["name"]] = item
    rows = [
        dict(t, steps=len(t["steps"])) for t in sorted(latest.values(), key=lambda t: t["name"])
    ]
    show(rows, output, ["name", "version", "steps", "on_failure", "created_at"])


@workflow_app.command("show")
def workflow_show(
    name: str,
    version: Annotated[int | None, typer.Option(help="default: latest")] = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    path = f"/workflows/{name}" if version is None else f"/workflows/{name}/versions/{version}"
    template = StellaClient().get(path)
    if output is Output.JSON:
        show(template, output, [])
        return
    console.print(
        f"[bold]{template['name']}[/bold] v{template['version']}  "
        f"on_failure={template['on_failure']}  {template['description']}"
    )
    show(template["steps"], output, ["id", "type", "depends_on", "when", "rollback", "timeout_ms"])


def _inputs(pairs: list[str] | None) -> dict[str, Any]:
    """`k=v` pairs; values that parse as JSON (numbers, booleans, objects) keep their type."""
    inputs: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            msg = f"--input takes KEY=VALUE, got '{pair}'"
            raise CliError(msg)
        try:
            inputs[key] = json.loads(value)
        except ValueError:
            inputs[key] = value
    return inputs


@run_app.command("start")
def run_start(
    workflow: str,
    input_: Annotated[list[str] | None, typer.Option("--input", "-i", help="KEY=VALUE")] = None,
    version: Annotated[int | None, typer.Option(help="default: latest")] = None,
    watch: Annotated[bool, typer.Option(help="follow the run live")] = False,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Start a run of WORKFLOW; prints the run id (or follows it with --watch)."""
    body: dict[str, Any] = {"workflow": workflow, "inputs": _inputs(input_)}
    if version is not None:
        body["version"] = version
    run = StellaClient().post("/workflow-runs", body)
    if watch:
        run_watch(run["id"])
        return
    if output is Output.JSON:
        show(run, output, [])
    else:
        print(run["id"])


@run_app.command("list")
def run_list(
    workflow: Annotated[str | None, typer.Option()] = None,
    state: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
    output: OutputOpt = Output.TABLE,
) -> None:
    items = StellaClient().list_all("/workflow-runs", limit=limit, workflow=workflow, state=state)
    show(
        items,
        output,
        ["id", "workflow", "version", "state", "steps_done", "steps_total", "created_at"],
    )


@run_app.command("show")
def run_show(run_id: str, output: OutputOpt = Output.TABLE) -> None:
    run = StellaClient().get(f"/workflow-runs/{run_id}")
    if output is Output.JSON:
        show(run, output, [])
        return
    console.print(_view(run, []))


@run_app.command("cancel")
def run_cancel(
    run_id: str, yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False
) -> None:
    """Cancel a run: running steps are killed; a rollback in progress stops."""
    if not yes and console.is_terminal:
        typer.confirm(f"Cancel run {run_id}?", abort=True)
    run = StellaClient().post(f"/workflow-runs/{run_id}/cancel")
    console.print(f"run {run['id']}: {run['state']} (cancellation requested)")


@run_app.command("approve")
def run_approve(run_id: str, step: str, comment: Annotated[str, typer.Option()] = "") -> None:
    run = StellaClient().post(f"/workflow-runs/{run_id}/steps/{step}/approve", {"comment": comment})
    console.print(f"step {step} approved; run is {run['state']}")


@run_app.command("reject")
def run_reject(run_id: str, step: str, reason: Annotated[str, typer.Option()] = "") -> None:
    run = StellaClient().post(f"/workflow-runs/{run_id}/steps/{step}/reject", {"reason": reason})
    console.print(f"step {step} rejected; run is {run['state']}")


@run_app.command("events")
def run_events(run_id: str, output: OutputOpt = Output.TABLE) -> None:
    items = StellaClient().list_all(f"/workflow-runs/{run_id}/events")
    show(items, output, ["seq", "at", "type", "step_id", "message"])


@run_app.command("watch")
def run_watch(
    run_id: str,
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 3600,
) -> None:
    """Follow a run live: the DAG's steps, a progress bar and the event log. Exit 0 on success."""
    client = StellaClient()
    cursor: str | None = None
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    run = client.get(f"/workflow-runs/{run_id}")
    with Live(_view(run, events), console=console, refresh_per_second=8, transient=False) as live:
        while time.monotonic() < deadline:
            page = client.get(f"/workflow-runs/{run_id}/events", cursor=cursor, limit=500)
            events.extend(page["items"])
            cursor = page["next_cursor"] or cursor
            run = client.get(f"/workflow-runs/{run_id}")
            live.update(_view(run, events))
            if run["state"] in TERMINAL and not page["items"]:
                break
            time.sleep(0.3)
    console.print()
    if run["state"] != "succeeded":
        raise typer.Exit(1)


def _view(run: dict[str, Any], events: list[dict[str, Any]]) -> Group:
    table = Table(title=f"run {run['id']} · {run['workflow']} v{run['version']}", expand=False)
    for column in ("step", "type", "state", "attempts", "detail"):
        table.add_column(column, overflow="fold")
    for step in run["steps"]:
        style = STATE_STYLE.get(step["state"], "")
        detail = step["error"] or ", ".join(f"{k}={v}" for k, v in step["outputs"].items())
        table.add_row(
            step["id"],
            step["type"],
            f"[{style}]{step['state']}[/]",
            str(step["attempts"]),
            detail[:80],
        )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
    )
    style = STATE_STYLE.get(run["state"], "")
    progress.add_task(
        f"[{style}]{run['state']}[/]", total=run["steps_total"], completed=run["steps_done"]
    )
    recent = [f"[dim]{e['seq']:>4}[/] {e['message']}" for e in events[-8:]]
    parts: list[Any] = [table, progress, *recent]
    if run.get("error"):
        parts.append(f"[bold red]error:[/] {run['error']}")
    return Group(*parts)
