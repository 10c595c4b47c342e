"""The JSON Schema of the journey language, generated from the pydantic models (so it follows
spec.py), for editors: a journey file that starts with

    # yaml-language-server: $schema=../docs/journey.schema.json

gets completion and inline errors in VS Code (YAML extension) and other LSP editors.

Pydantic describes what the models hold (ISO 8601 durations, quiet hours as an object); the
schema must describe what marketers write (`3d`, "20:00-08:00"), so those are rewritten here.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from siyu.language.durations import format_duration
from siyu.language.spec import JourneySpec

SCHEMA_FILE = Path("docs/journey.schema.json")
SCHEMA_ID = "https://siyu.example/journey.schema.json"

DURATION = {
    "anyOf": [
        {"type": "string", "pattern": r"^\s*-?(\d+\s*[smhdwSMHDW]\s*)+$"},
        {"const": 0},
    ],
    "description": "a duration: 90s, 15m, 12h, 3d, 2w or combined like 1d12h",
}
# Models that a before-validator also accepts as a string.
STRING_FORMS = {
    "QuietHours": {
        "type": "string",
        "pattern": r"^\s*\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}\s*$",
        "description": 'a local time range, e.g. "20:00-08:00"; null turns quiet hours off',
    }
}
DESCRIPTIONS = {
    "journey": "the journey's name: lower-case letters, digits, - and _",
    "schedule": "how often the journey ticks (cron, read in `timezone`)",
    "timezone": "IANA time zone of the schedule, e.g. Asia/Shanghai",
    "entry": "who enters: an event and an optional SQL condition on its columns",
    "exit_when": "who leaves: nothing more is sent after this event",
    "goal": "what counts as success, within a window after entry",
    "steps": "the messages, each due `at` after entry",
    "send": "the channel (channels.yaml): wecom, wecom_group_invite, service_account, sms ...",
    "template": "the message template in templates/, e.g. day3_care.j2",
    "purpose": "marketing (needs consent, respects quiet hours) or notification",
    "within": "deadline after entry; later, the message is skipped as expired",
    "where": "a SQL condition on the event's columns, e.g. order_seq = 1",
}
SHARE = {
    "anyOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"},
    ],
    "default": 0,
    "description": "a share of entrants: 10% or 0.1",
}
SHARE_PROPERTIES = ("holdout",)
_DURATION_ADAPTER: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def _rewrite(node: Any, key: str | None = None) -> Any:
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "duration":
        out: dict[str, Any] = dict(DURATION)
        if "default" in node:
            out["default"] = format_duration(_DURATION_ADAPTER.validate_python(node["default"]))
        return out
    ref = node.get("$ref", "")
    name = ref.rsplit("/", 1)[-1]
    if name in STRING_FORMS:
        return {"anyOf": [STRING_FORMS[name], {"$ref": ref}]}
    out = {k: _rewrite(v, k) for k, v in node.items()}
    if key == "properties":
        for prop in SHARE_PROPERTIES:
            if prop in out:
                out[prop] = dict(SHARE)
        for prop, sub in out.items():
            if prop in DESCRIPTIONS and isinstance(sub, dict) and "description" not in sub:
                sub["description"] = DESCRIPTIONS[prop]
    if isinstance(out.get("default"), str) and out.get("format") == "duration":
        out.pop("format")
    return out


def journey_schema() -> dict[str, Any]:
    schema: dict[str, Any] = _rewrite(JourneySpec.model_json_schema())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "siyu journey",
    }


def schema_text() -> str:
    return json.dumps(journey_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write_schema(root: Path) -> Path:
    path = root / SCHEMA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(), encoding="utf-8")
    return path
