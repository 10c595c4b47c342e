"""Where a node of a loaded YAML file is: 1-based line and column, for error messages."""

from __future__ import annotations

from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq


def position(raw: Any, loc: tuple[str | int, ...], *, key: bool = False) -> tuple[int, int]:
    """1-based (line, column) of the node at `loc`, or of its nearest ancestor that has one.
    With key=True, the position of the last mapping key itself (for unknown keys)."""
    node, best = raw, (1, 1)
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, CommentedMap) and part in node:
            line, col = node.lc.key(part) if (key and last) else node.lc.value(part)
            best = (line + 1, col + 1)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line, col = node.lc.item(part)
            best = (line + 1, col + 1)
            node = node[part]
        else:
            break
    return best
