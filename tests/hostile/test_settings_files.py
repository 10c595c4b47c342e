"""The project's settings files (channels.yaml, policies.yaml, segments.yaml, alerts.yaml,
lint.yaml) are read within the same bounds as journeys: size, aliases, depth, regular files
only. A hostile file is one clear problem naming it, never a hang, a traceback or a silently
missing policy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from siyu.alerts.config import load_alerts
from siyu.channels.registry import ChannelConfigError, load_channel_config
from siyu.errors import SiyuError
from siyu.policies import load_policies
from siyu.segments.config import load_segments

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)
LOADERS: dict[str, Callable[[Path], Any]] = {
    "channels.yaml": load_channel_config,
    "policies.yaml": load_policies,
    "segments.yaml": load_segments,
    "alerts.yaml": load_alerts,
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(LOADERS))
@pytest.mark.parametrize(
    ("kind", "says"),
    [("laughs", "once aliases are expanded"), ("deep", "nests deeper"), ("device", "regular")],
)
def test_a_hostile_settings_file_is_one_problem_naming_it(
    tmp_path: Path, name: str, kind: str, says: str
) -> None:
    path = tmp_path / name
    if kind == "laughs":
        path.write_text(LAUGHS, encoding="utf-8")
    elif kind == "deep":
        path.write_text("a: " + "[" * 200 + "]" * 200 + "\n", encoding="utf-8")
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises((SiyuError, ChannelConfigError)) as raised:
        LOADERS[name](path)
    message = str(raised.value)
    assert name in message and "Traceback" not in message
    assert says in message or (kind == "device" and "outside" in message), message
