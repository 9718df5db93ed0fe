"""Output of read commands: Rich tables for people, `--output json` for scripts."""

from __future__ import annotations

import enum
import json
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


class Output(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def show(data: Any, output: Output, columns: list[str], title: str | None = None) -> None:
    """Print one object or a list of objects."""
    if output is Output.JSON:
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    rows = data if isinstance(data, list) else [data]
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(_lookup(row, c)) for c in columns))
    console.print(table)


def _lookup(row: dict[str, Any], column: str) -> Any:
    value: Any = row
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def show_release(release: dict[str, Any], output: Output) -> None:
    """A release with its pinned component digests."""
    if output is Output.JSON:
        show(release, output, [])
        return
    console.print(
        f"[bold]{release['name']} {release['version']}[/bold]  state={release['state']}  "
        f"id={release['id']}  source_ref={release.get('source_ref') or '-'}"
    )
    show(release["components"], output, ["name", "repository", "digest", "resolved_from_tag"])
