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
