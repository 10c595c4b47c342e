"""A journey as a graph of nodes and edges: what `siyu graph` draws (Mermaid, SVG) and what
the validator walks to find steps no customer can reach.

In language v1 every step hangs off the entry by its own offset (`at`), so the steps form a
chain in time order; exit and goal are side nodes reached from the entry at any time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta

from siyu.language.durations import format_duration
from siyu.language.spec import (
    AllCondition,
    Anchor,
    AnyCondition,
    Condition,
    CustomerCondition,
    EventCondition,
    JourneySpec,
    NotCondition,
    SegmentCondition,
    Step,
    StepCondition,
)


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


def _where(event: str | None, where: str | None) -> str:
    return f"{event} where {where}" if where else str(event)


def _entry_label(spec: JourneySpec) -> str:
    entry = spec.entry
    if entry.calendar is not None:
        return f"calendar {entry.calendar}" + (f" · {entry.audience}" if entry.audience else "")
    if entry.segment is not None:
        return f"entering segment {entry.segment}"
    return _where(entry.event, entry.where)


def _timing(step: Step) -> str:
    if isinstance(step.at, Anchor):
        yearly = "yearly " if step.at.annual else ""
        return f"{yearly}{step.at.from_} {format_duration(step.at.offset)}"
    return f"+{format_duration(step.at)}"


def _condition(condition: Condition) -> str:
    if isinstance(condition, AllCondition):
        return " and ".join(_condition(c) for c in condition.all)
    if isinstance(condition, AnyCondition):
        return "(" + " or ".join(_condition(c) for c in condition.any) + ")"
    if isinstance(condition, NotCondition):
        return f"not {_condition(condition.not_)}"
    if isinstance(condition, EventCondition):
        return f"{_where(condition.event, condition.where)} since {condition.since}"
    if isinstance(condition, CustomerCondition):
        return condition.customer
    if isinstance(condition, StepCondition):
        return f"{condition.step} {condition.status}"
    if isinstance(condition, SegmentCondition):
        return f"in segment {condition.segment}"
    return f"reachable on {condition.reachable}"


def _sort_key(step: Step) -> tuple[int, timedelta]:
    # Anchored steps are timed by a date column, not the entry: they come after the chain.
    return (1, step.at.offset) if isinstance(step.at, Anchor) else (0, step.at)


def build_graph(spec: JourneySpec) -> JourneyGraph:
    graph = JourneyGraph(spec.journey)
    entry_lines = [_entry_label(spec)]
    if spec.holdout:
        entry_lines.append(f"holdout {spec.holdout:.0%}")
    graph.nodes.append(Node("entry", "entry", "entry", tuple(entry_lines)))
    previous, previous_at = "entry", timedelta(0)
    for step in sorted(spec.steps, key=_sort_key):
        deadline = f"until +{format_duration(step.within)}" if step.within else "no deadline"
        lines = [f"{_timing(step)} · {deadline}", f"{step.send} · {step.template}", step.purpose]
        if step.if_ is not None:
            lines.append(f"if {_condition(step.if_)}")
        if step.variants:
            lines.append("variants " + ", ".join(f"{v.id}×{v.weight:g}" for v in step.variants))
        graph.nodes.append(Node(f"step:{step.id}", "step", step.id, tuple(lines)))
        if isinstance(step.at, Anchor):
            graph.edges.append(Edge(previous, f"step:{step.id}", f"at {_timing(step)}"))
        else:
            wait = step.at - previous_at
            graph.edges.append(Edge(previous, f"step:{step.id}", f"wait {format_duration(wait)}"))
            previous_at = step.at
        previous = f"step:{step.id}"
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
