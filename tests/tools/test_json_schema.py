"""The exported JSON Schema follows the pydantic models and accepts what marketers write."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from siyu.language.json_schema import SCHEMA_FILE, schema_text
from tests.tools.project_files import ROOT


def example() -> Any:
    return YAML(typ="safe").load((ROOT / "journeys" / "first_purchase.yaml").read_text("utf-8"))


def test_committed_schema_is_current() -> None:
    committed = (ROOT / SCHEMA_FILE).read_text(encoding="utf-8")
    assert committed == schema_text(), "stale schema: run `siyu schema` and commit it"


def test_example_journeys_point_to_the_schema() -> None:
    for path in (ROOT / "journeys").glob("*.yaml"):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../docs/journey.schema.json", path


def test_schema_accepts_the_example_and_marketer_spellings() -> None:
    schema = json.loads(schema_text())
    journey = example()
    journey["quiet_hours"] = "21:00-09:00"
    journey["steps"][0]["at"] = "1d12h"
    jsonschema.validate(journey, schema)


@pytest.mark.parametrize(
    ("path", "value"),
    [(("steps", 0, "at"), "3 days"), (("steps", 0, "sned"), "wecom"), (("quiet_hours",), "8pm")],
)
def test_schema_refuses_what_the_loader_refuses(path: tuple[Any, ...], value: Any) -> None:
    journey = example()
    target = journey
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(journey, json.loads(schema_text()))


def test_schema_accepts_the_complete_language_and_rejects_a_bad_condition() -> None:
    import json

    import jsonschema
    from ruamel.yaml import YAML

    schema = json.loads((ROOT / "docs" / "journey.schema.json").read_text(encoding="utf-8"))
    doc = YAML(typ="safe").load(
        "journey: x\nholdout: 10%\n"
        "entry: {calendar: '0 10 * * 3', audience: \"city = 'x'\", reentry: {after: 30d}}\n"
        "steps:\n  - id: a\n    at: {from: customer.birthday, annual: true, offset: 10h}\n"
        "    within: 1d\n    send: sms\n    template: t.j2\n"
        "    if: {all: [{event: browse, since: 7d}, {not: {reachable: wecom}}]}\n"
        "    variants: [{id: v1, weight: 1, template: a.j2}]\n"
    )
    jsonschema.validate(doc, schema)
    doc["steps"][0]["if"] = {"evnt": "browse"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
