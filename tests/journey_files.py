"""Writing small journey files and templates for tests."""

from __future__ import annotations

from pathlib import Path

from siyu.language.loader import load_journey
from siyu.language.references import Catalog
from siyu.language.spec import JourneySpec
from tests.recording_channel import RecordingChannel

TEMPLATES = {
    "hello.j2": "{{ customer.name }}您好 ({{ step }})",
    "a.j2": "A: {{ customer.name }}",
    "b.j2": "B: {{ customer.name }}",
}


def write_journey(
    tmp_path: Path,
    channels: dict[str, RecordingChannel],
    yaml_text: str,
    name: str = "journey.yaml",
) -> JourneySpec:
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    for file, body in TEMPLATES.items():
        (templates / file).write_text(body, encoding="utf-8")
    path = tmp_path / name
    path.write_text(yaml_text, encoding="utf-8")
    return load_journey(path, Catalog(set(channels), templates))
