"""A workflow's DAG laid out in layers and drawn as SVG (pure Python, no front-end library).

Steps are placed in columns by dependency depth (a step with no dependencies is in column 0,
any other one column right of its deepest dependency); within a column, steps are ordered by
the mean row of their dependencies (one barycentre pass), which keeps most edges short and
uncrossed. Every node is `<g id="node-<step>" class="node <state>">` so a live update can
restyle it by id; its state text is `<text id="node-<step>-state">`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

NODE_WIDTH = 168
NODE_HEIGHT = 46
COLUMN_GAP = 56
ROW_GAP = 18
MARGIN = 12
LABEL_CHARS = 22


@dataclass(frozen=True, slots=True)
class Node:
    """One step to draw: its id, the steps it depends on and its current state."""

    id: str
    depends_on: tuple[str, ...] = ()
    state: str = "pending"


@dataclass(frozen=True, slots=True)
class Placed:
    node: Node
    layer: int
    row: int
    x: int
    y: int


def layers(nodes: Sequence[Node]) -> dict[str, int]:
    """Each node's depth: 0 without dependencies, else 1 + the deepest dependency.

    Dependencies on unknown steps are ignored. Kahn's algorithm, so thousands of chained
    steps need no recursion; steps on a cycle (which a stored template never has) are put
    after everything else rather than looping.
    """
    deps = {n.id: [d for d in dict.fromkeys(n.depends_on) if d != n.id] for n in nodes}
    deps = {k: [d for d in v if d in deps] for k, v in deps.items()}
    waiting = {k: len(v) for k, v in deps.items()}
    children: dict[str, list[str]] = {}
    for node_id, parents in deps.items():
        for parent in parents:
            children.setdefault(parent, []).append(node_id)
    depth = {k: 0 for k, v in waiting.items() if v == 0}
    ready = list(depth)
    while ready:
        current = ready.pop()
        for child in children.get(current, []):
            depth[child] = max(depth.get(child, 0), depth[current] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    last = max(depth.values(), default=-1)
    for node in nodes:
        depth.setdefault(node.id, last + 1)
    return depth


def layout(nodes: Sequence[Node]) -> list[Placed]:
    """Positions of every node (columns left to right by depth, rows by barycentre)."""
    depth = layers(nodes)
    columns: dict[int, list[Node]] = {}
    for node in nodes:
        columns.setdefault(depth[node.id], []).append(node)
    row_of: dict[str, int] = {}
    placed: list[Placed] = []
    for layer in sorted(columns):
        members = columns[layer]
        order = {n.id: i for i, n in enumerate(members)}

        def key(node: Node, order: Mapping[str, int] = order) -> tuple[float, int]:
            rows = [row_of[d] for d in node.depends_on if d in row_of]
            return (sum(rows) / len(rows) if rows else float(order[node.id]), order[node.id])

        for row, node in enumerate(sorted(members, key=key)):
            row_of[node.id] = row
            x = MARGIN + layer * (NODE_WIDTH + COLUMN_GAP)
            y = MARGIN + row * (NODE_HEIGHT + ROW_GAP)
            placed.append(Placed(node, layer, row, x, y))
    return placed


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _edge(source: Placed, target: Placed) -> str:
    x1, y1 = source.x + NODE_WIDTH, source.y + NODE_HEIGHT // 2
    x2, y2 = target.x - 2, target.y + NODE_HEIGHT // 2
    bend = max(16, (x2 - x1) // 2)
    return (
        f'<path class="edge" data-from="{escape(source.node.id)}" '
        f'data-to="{escape(target.node.id)}" '
        f'd="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"/>'
    )


def _node(p: Placed) -> str:
    step, state = escape(p.node.id), escape(p.node.state)
    cx = p.x + 10
    return (
        f'<g id="node-{step}" class="node {state}">'
        f"<title>{step}</title>"
        f'<rect x="{p.x}" y="{p.y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="5"/>'
        f'<text class="node-id" x="{cx}" y="{p.y + 19}">{escape(_label(p.node.id))}</text>'
        f'<text id="node-{step}-state" class="node-state" x="{cx}" y="{p.y + 36}">'
        f"{state.replace('_', ' ')}</text></g>"
    )


def render_svg(nodes: Sequence[Node], title: str = "Workflow steps") -> str:
    """The DAG as an inline SVG document fragment (every text is escaped)."""
    placed = layout(nodes)
    if not placed:
        return ""
    by_id = {p.node.id: p for p in placed}
    width = max(p.x for p in placed) + NODE_WIDTH + MARGIN
    height = max(p.y for p in placed) + NODE_HEIGHT + MARGIN
    edges = [
        _edge(by_id[dep], p)
        for p in placed
        for dep in dict.fromkeys(p.node.depends_on)
        if dep in by_id
    ]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="dag-title">',
        f'<title id="dag-title">{escape(title)}</title>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#8795a1"/></marker></defs>',
        '<g class="edges">',
        *edges,
        "</g>",
        '<g class="nodes">',
        *(_node(p) for p in placed),
        "</g></svg>",
    ]
    return "".join(parts)


def node_classes(states: Iterable[tuple[str, str]]) -> dict[str, str]:
    """`{"node-<step>": "node <state>"}` for a live update of the drawn DAG."""
    return {f"node-{step}": f"node {state}" for step, state in states}
