"""The demo's parts: unthrottled channels only for the local sandbox, and the sandbox's state
kept as JSON so that `siyu sandbox --state` shows the demo's messages and resolves their join
links after the demo has ended."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from siyu.channels.ratelimit import TokenBucket
from siyu.channels.registry import ChannelConfigError, build_channels
from siyu.errors import ConfigError
from siyu.sandbox.cli import load_state
from siyu.sandbox.server import start_sandbox
from siyu.sandbox.state import SandboxState, WeComTask
from tests.channels.conftest import fast_config

JOIN = "http://127.0.0.1:8765/_sandbox/join/cafe01"


def _limiters(throttle: bool) -> list[TokenBucket | None]:
    channels = build_channels(fast_config(), base_url="http://127.0.0.1:1", throttle=throttle)
    found = [channel.rt.http._limiter for channel in channels.values()]  # type: ignore[attr-defined]
    for channel in channels.values():
        channel.close()
    return found


def test_rate_limits_are_dropped_only_when_asked() -> None:
    assert all(isinstance(limiter, TokenBucket) for limiter in _limiters(True))
    assert _limiters(False) == [None] * len(fast_config().channels)


def test_rate_limits_are_never_dropped_for_a_real_provider() -> None:
    remote = fast_config().model_copy(update={"allow_remote": True})
    with pytest.raises(ChannelConfigError, match="only for the local sandbox"):
        build_channels(remote, base_url="https://qyapi.weixin.qq.com", throttle=False)


def test_the_flow_takes_throttle_as_a_plain_parameter_defaulting_to_on() -> None:
    from flows.journey_flow import journey_tick

    parameter = inspect.signature(journey_tick.fn).parameters["throttle"]
    assert parameter.default is True and parameter.annotation in (bool, "bool")


def _recorded() -> SandboxState:
    state = SandboxState()
    with state.lock:
        state.join_ways["cafe01"] = {
            "config_id": "cafe01",
            "chat_id_list": ["wrOg-group"],
            "state": "siyu",
            "qr_code": JOIN,
        }
        link = {"msgtype": "link", "link": {"title": "加入会员群", "url": JOIN}}
        message = state.record(
            "wecom",
            "add_msg_template",
            "wm-1",
            "欢迎<b>入群</b>",
            key="wm-1|k",
            status="pending",
            provider_id="msg1",
            attachments=[link],
        )
        task = WeComTask("msg1", "zhangsan", ["wm-1"], {"content": "欢迎"}, [link], 1)
        task.message_ids["wm-1"] = message.id
        state.tasks["msg1"] = task
        state.confirm_task(task)
        state.record("sms", "SendSms", "138****0000", "回T退订", key="s|1")
    return state


def test_saved_state_is_json_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "var" / "sandbox-state.json"
    _recorded().save(path)
    saved = json.loads(path.read_text(encoding="utf-8"))  # JSON, never pickle
    assert [m["status"] for m in saved["messages"]] == ["sent", "sent"]
    state, loaded = load_state(path)
    assert loaded == 2
    assert state.tasks["msg1"].results == {"wm-1": 1}
    assert state.stats()["channels"]["wecom"]["delivered"] == 1
    with state.lock:  # a new message continues the numbering
        assert state.record("sms", "SendSms", "x", "y", key="s|2").id == 3


def test_the_inbox_shows_loaded_messages_and_their_join_links_resolve(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _recorded().save(path)
    state, _ = load_state(path)
    with (
        start_sandbox(state=state) as sandbox,
        httpx.Client(base_url=sandbox.url, trust_env=False) as client,
    ):
        page = client.get("/_sandbox/inbox").text
        assert "<p>2 messages." in page
        assert "欢迎&lt;b&gt;入群&lt;/b&gt;" in page  # escaped, as every content
        assert f'<a href="{JOIN}">加入会员群</a>' in page
        joined = client.get("/_sandbox/join/cafe01")
        assert joined.status_code == 200 and "wrOg-group" in joined.text
        assert client.get("/_sandbox/join/nope").status_code == 404


def test_no_state_file_is_a_fresh_sandbox_and_a_missing_one_is_one_line(tmp_path: Path) -> None:
    state, loaded = load_state(None)  # `siyu sandbox` without --state: live journeys' keys
    assert loaded == 0 and state.messages == []  # never collide with the demo's
    with pytest.raises(ConfigError, match="no sandbox state at .*missing.json"):
        load_state(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"messages": [{"id": "x"}], "tasks": [], "join_ways": {}}',
        '{"messages": [], "tasks": []}',
    ],
)
def test_a_bad_state_file_is_one_line_naming_it(tmp_path: Path, content: str) -> None:
    from siyu.cli.main import app

    path = tmp_path / "state.json"
    path.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(app, ["sandbox", "--state", str(path), "--port", "8765"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: not a sandbox state file (")
    assert "Traceback" not in result.output


def test_message_ids_must_be_dense(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _recorded().save(path)
    saved = json.loads(path.read_text(encoding="utf-8"))
    saved["messages"][0]["id"] = 7
    path.write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(ValueError, match="message ids are not 1..n"):
        SandboxState().load(path)


def test_a_local_prefect_api_that_never_starts_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import siyu.demo
    from siyu.cli.main import app

    def timed_out(*_: object) -> None:
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")

    monkeypatch.setattr(siyu.demo, "run_demo", timed_out)
    result = CliRunner().invoke(app, ["demo", "--database", str(tmp_path / "d.db")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Prefect's local API did not start in time (a busy machine?): run the demo again, or "
        "give it longer with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
    )
    assert "Traceback" not in result.output
