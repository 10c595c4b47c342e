"""A journey graph as Mermaid text (for docs, GitHub, the Prefect artifact) and as a small
self-drawn SVG (no browser, no network): the entry on top, steps down the middle in time
order with their waits on the arrows, exit and goal on the right."""

from __future__ import annotations

import base64
from html import escape

from siyu.graph.model import JourneyGraph, Node

SHAPES = {"entry": ("([", "])"), "step": ("[", "]"), "exit": ("{{", "}}"), "goal": ("((", "))")}
COLOURS = {"entry": "#dbeafe", "step": "#f8fafc", "exit": "#fee2e2", "goal": "#dcfce7"}
WIDTH, BOX_W, LINE_H, GAP = 640, 300, 18, 46


def _mermaid_id(node_id: str) -> str:
    return node_id.replace(":", "_").replace("-", "_")


def to_mermaid(graph: JourneyGraph) -> str:
    lines = ["flowchart TD"]
    for node in graph.nodes:
        left, right = SHAPES[node.kind]
        label = "<br/>".join([f"<b>{node.title}</b>", *node.lines]).replace('"', "'")
        lines.append(f'    {_mermaid_id(node.id)}{left}"{label}"{right}')
    for edge in graph.edges:
        arrow = f"-->|{edge.label}|" if edge.label else "-->"
        style = arrow.replace("-->", "-.->") if edge.target in ("exit", "goal") else arrow
        lines.append(f"    {_mermaid_id(edge.source)} {style} {_mermaid_id(edge.target)}")
    return "\n".join(lines) + "\n"


def to_markdown_image(graph: JourneyGraph) -> str:
    """The SVG as a markdown image with a data URI. The Prefect UI renders markdown artifacts
    but not Mermaid (a ```mermaid block shows as source); an image it draws as a picture."""
    data = base64.b64encode(to_svg(graph).encode("utf-8")).decode("ascii")
    return f"![{escape(graph.name)}](data:image/svg+xml;base64,{data})"


def _box(node: Node, x: int, y: int) -> tuple[str, int]:
    rows = [node.title, *node.lines]
    height = 12 + LINE_H * len(rows)
    radius = 18 if node.kind in ("entry", "goal") else 4
    parts = [
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{height}" rx="{radius}" '
        f'fill="{COLOURS[node.kind]}" stroke="#334155"/>'
    ]
    for i, row in enumerate(rows):
        weight = ' font-weight="bold"' if i == 0 else ""
        parts.append(
            f'<text x="{x + BOX_W // 2}" y="{y + 20 + i * LINE_H}" text-anchor="middle"{weight}>'
            f"{escape(row)}</text>"
        )
    return "\n".join(parts), height


def to_svg(graph: JourneyGraph) -> str:
    """The chain entry → steps down the left column; exit and goal in the right column."""
    body: list[str] = []
    places: dict[str, tuple[int, int, int]] = {}  # id → x, y, height
    y = 40
    for node in graph.nodes:
        if node.kind in ("entry", "step"):
            svg, height = _box(node, 20, y)
            body.append(svg)
            places[node.id] = (20, y, height)
            y += height + GAP
    side_y = 40 + (places["entry"][2] + GAP if "entry" in places else 0)
    for node in graph.nodes:
        if node.kind in ("exit", "goal"):
            svg, height = _box(node, WIDTH - BOX_W + 10, side_y)
            body.append(svg)
            places[node.id] = (WIDTH - BOX_W + 10, side_y, height)
            side_y += height + GAP
    for edge in graph.edges:
        sx, sy, sh = places[edge.source]
        tx, ty, th = places[edge.target]
        if tx == sx:  # down the chain
            x1, y1, x2, y2 = sx + BOX_W // 2, sy + sh, tx + BOX_W // 2, ty
            dash, lx, ly = "", x1 + 8, (y1 + y2) // 2 + 4
        else:  # to the side
            x1, y1, x2, y2 = sx + BOX_W, sy + sh // 2, tx, ty + th // 2
            dash, lx, ly = ' stroke-dasharray="5 4"', (x1 + x2) // 2 - 30, (y1 + y2) // 2 - 6
        body.append(
            f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#334155"'
            f'{dash} marker-end="url(#arrow)"/>'
        )
        if edge.label:
            body.append(f'<text x="{lx}" y="{ly}" font-size="12">{escape(edge.label)}</text>')
    height = max(y, side_y) + 10
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH + 20}" height="{height}" '
        f'font-family="sans-serif" font-size="13">\n'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#334155"/>'
        "</marker></defs>\n"
        # opaque, so the picture reads on dark pages too (the Prefect UI's dark theme)
        '<rect width="100%" height="100%" fill="#ffffff"/>\n'
        f'<text x="20" y="24" font-size="16" font-weight="bold">{escape(graph.name)}</text>\n'
        + "\n".join(body)
        + "\n</svg>\n"
    )
