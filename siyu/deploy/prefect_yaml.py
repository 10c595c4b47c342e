"""Writes prefect.yaml from the journeys: one deployment per journey (its name, the journey
flow's entrypoint, `journey` as parameter, the cron schedule in the journey's time zone).

The file is edited, not regenerated: comments, hand-written keys (tags, concurrency limits,
job variables) and other deployments are kept. A deployment of the journey flow whose journey
file is gone is removed. The result is checked with Prefect's own prefect.yaml model (the
check is passed in by the CLI, siyu.cli.deploy_cmd: the library does not import Prefect).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from siyu.errors import ConfigError
from siyu.language.spec import JourneySpec

ENTRYPOINT = "flows/journey_flow.py:journey_tick"
SKELETON = """\
# One deployment per journey, written by `siyu deploy` (hand-written keys are kept).
#   prefect server start
#   prefect work-pool create siyu --type process
#   prefect worker start --pool siyu
#   prefect deploy --all
#   siyu watchdog
name: siyu
prefect-version: 3.8.8

pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{ $PWD }}"  # resolved by `prefect deploy`: run it from the repository root

definitions:
  work_pools:
    siyu: &siyu_pool
      name: siyu
      work_queue_name: default
      job_variables:
        # the worker runs each flow from the repository root, so prefect.toml applies there
        working_dir: "{{ $PWD }}"
        env:
          # a deployed run reports it is alive; `siyu watchdog` marks one that stops Crashed
          PREFECT_FLOWS_HEARTBEAT_FREQUENCY: "30"

deployments: []
"""

# Seconds between a deployed run's heartbeats (Prefect's minimum, 30): what `siyu watchdog`'s
# automation listens for (siyu/cli/watchdog_cmd.py).
HEARTBEAT_SECONDS = 30
HEARTBEAT_SETTING = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"


@dataclass
class DeployChanges:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


def update_prefect_yaml(
    text: str | None, journeys: dict[str, tuple[JourneySpec, str]]
) -> tuple[str, DeployChanges]:
    """The new prefect.yaml text; `journeys` maps name → (spec, its file, for descriptions)."""
    yaml = _yaml()
    doc: Any = yaml.load(text if text is not None and text.strip() else SKELETON)
    if not isinstance(doc, CommentedMap):
        raise ConfigError("prefect.yaml: expected a mapping with a `deployments:` list")
    deployments = doc.get("deployments")
    if not isinstance(deployments, CommentedSeq):
        deployments = doc["deployments"] = CommentedSeq()
    pool = _pool(doc)
    changes = DeployChanges()
    if _ensure_heartbeats(pool):
        changes.notes.append(f"work pool: added {HEARTBEAT_SETTING} (for `siyu watchdog`)")
    by_name = {d.get("name"): d for d in deployments if isinstance(d, CommentedMap)}
    for name, (spec, file) in sorted(journeys.items()):
        wanted = _deployment(spec, file)
        current = by_name.get(name)
        if current is None:
            entry = CommentedMap(wanted)
            if pool is not None:
                entry["work_pool"] = pool
            deployments.append(entry)
            changes.added.append(name)
            continue
        before = _plain(current)
        for key, value in wanted.items():
            if _plain(current.get(key)) == _plain(value):
                continue  # untouched: keeps its quoting and comments
            if key == "parameters" and isinstance(current.get(key), CommentedMap):
                current[key]["journey"] = value["journey"]
            else:
                current[key] = value
        (changes.updated if _plain(current) != before else changes.unchanged).append(name)
    for index in reversed(range(len(deployments))):
        entry = deployments[index]
        if (
            isinstance(entry, CommentedMap)
            and entry.get("entrypoint") == ENTRYPOINT
            and entry.get("name") not in journeys
        ):
            changes.removed.append(str(entry.get("name")))
            del deployments[index]
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue(), changes


def _pool(doc: CommentedMap) -> Any:
    definitions = doc.get("definitions") or {}
    pools = definitions.get("work_pools") or {} if isinstance(definitions, dict) else {}
    return next(iter(pools.values()), None) if isinstance(pools, dict) else None


def _ensure_heartbeats(pool: Any) -> bool:
    """Give the work pool's runs heartbeats when it has none (True when added): without them
    a run whose machine died stays Running for ever. Deployed runs only: `siyu tick` runs in
    the operator's terminal, and a heartbeat costs each run up to a second at its end."""
    if not isinstance(pool, CommentedMap):
        return False
    job_variables = pool.get("job_variables")
    if job_variables is None:
        job_variables = pool["job_variables"] = CommentedMap()
    if not isinstance(job_variables, CommentedMap):
        return False
    env = job_variables.get("env")
    if env is None:
        last = next(reversed(job_variables), None)
        env = job_variables["env"] = CommentedMap()
        if last in job_variables.ca.items:  # the blank line after the block stays after it
            env.ca.items[HEARTBEAT_SETTING] = job_variables.ca.items.pop(last)
    if not isinstance(env, CommentedMap) or HEARTBEAT_SETTING in env:
        return False
    env[HEARTBEAT_SETTING] = DoubleQuotedScalarString(str(HEARTBEAT_SECONDS))
    return True


def _deployment(spec: JourneySpec, file: str) -> dict[str, Any]:
    schedule = CommentedMap(cron=spec.schedule, timezone=spec.timezone)
    description = f"{spec.description} ({file})" if spec.description else file
    return {
        "name": spec.journey,
        "description": description,
        "entrypoint": ENTRYPOINT,
        "parameters": CommentedMap(journey=spec.journey),
        "schedules": CommentedSeq([schedule]),
        # One tick at a time: a tick still running when the next is due makes the next one
        # cancelled, not queued (ticks are idempotent; the following tick catches up).
        "concurrency_limit": CommentedMap(limit=1, collision_strategy="CANCEL_NEW"),
    }


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def write_prefect_yaml(
    root: Path,
    journeys: dict[str, tuple[JourneySpec, str]],
    check: Callable[[str], list[str]],
) -> DeployChanges:
    """`check` returns the errors Prefect's own model finds in the text (siyu.cli.deploy_cmd's
    check_with_prefect: the library does not import Prefect)."""
    path = root / "prefect.yaml"
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    text, changes = update_prefect_yaml(current, journeys)
    errors = check(text)
    if errors:
        raise ConfigError("prefect.yaml would not load in Prefect: " + "; ".join(errors))
    if text != current:
        path.write_text(text, encoding="utf-8")
    return changes
