"""A journey as a graph of nodes and edges: what `siyu graph` draws (Mermaid, SVG) and what
the validator walks to find steps no customer can reach.

In language v1 every step hangs off the entry by its own offset (`at`), so the steps form a
chain in time order; exit and goal are side nodes reached from the entry at any time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from siyu.language.durations import format_duration
from siyu.language.spec import JourneySpec


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # entry | step | exit | goal
    title: str
    lines: tuple[str, ...] = ()  # details under the title


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""


@dataclass
class JourneyGraph:
    name: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def _where(event: str, where: str | None) -> str:
    return f"{event} where {where}" if where else event


def build_graph(spec: JourneySpec) -> JourneyGraph:
    graph = JourneyGraph(spec.journey)
    graph.nodes.append(
        Node("entry", "entry", "entry", (_where(spec.entry.event, spec.entry.where),))
    )
    previous, previous_at = "entry", None
    for step in sorted(spec.steps, key=lambda s: s.at):
        deadline = f"until +{format_duration(step.within)}" if step.within else "no deadline"
        graph.nodes.append(
            Node(
                f"step:{step.id}",
                "step",
                step.id,
                (
                    f"+{format_duration(step.at)} · {deadline}",
                    f"{step.send} · {step.template}",
                    step.purpose,
                ),
            )
        )
        wait = step.at - previous_at if previous_at is not None else step.at
        graph.edges.append(Edge(previous, f"step:{step.id}", f"wait {format_duration(wait)}"))
        previous, previous_at = f"step:{step.id}", step.at
    if spec.exit_when is not None:
        graph.nodes.append(
            Node("exit", "exit", "exit", (_where(spec.exit_when.event, spec.exit_when.where),))
        )
        graph.edges.append(Edge("entry", "exit", "any time"))
    if spec.goal is not None:
        graph.nodes.append(
            Node("goal", "goal", "goal", (_where(spec.goal.event, spec.goal.where),))
        )
        graph.edges.append(Edge("entry", "goal", f"within {format_duration(spec.goal.within)}"))
    return graph


def unreachable(graph: JourneyGraph) -> list[Node]:
    """Nodes no path from the entry leads to (a branch that nothing points at, ...)."""
    seen, queue = {"entry"}, deque(["entry"])
    while queue:
        current = queue.popleft()
        for edge in graph.edges:
            if edge.source == current and edge.target not in seen:
                seen.add(edge.target)
                queue.append(edge.target)
    return [n for n in graph.nodes if n.id not in seen]
