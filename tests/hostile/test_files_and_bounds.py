"""Hostile and broken files, and the bounds on what a journey or template can make the
engine do (issue 13, items 1, 2, 5, 6 and the render-error part of 9):

- journeys and templates are read only from inside journeys/ and templates/: a link leading
  out, an absolute or `..` name, a FIFO, a device and an over-size file are refused by
  `validate` with file:line:col, never rendered by a tick, and never quoted in a message;
- YAML size, alias expansion and nesting are bounded; no RecursionError or MemoryError
  reaches the user;
- rendering is bounded in time, loops and size (per channel); a broken or hostile template
  never hangs `validate` nor another journey's tick;
- two files with one journey name refuse to run until renamed;
- a render error's reason names the template's line and the kind of error, not the data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

import flows.journey_flow  # noqa: F401  (Prefect's log handler must not be set up inside CliRunner)
from siyu.engine.context import EngineContext
from siyu.engine.render import TemplateCache, message_limit, render_message
from siyu.engine.tick import run_tick
from siyu.errors import ConfigError
from siyu.language.check_project import check_project, content_problems
from siyu.language.loader import Catalog, check_journey_file, load_journey
from siyu.language.problems import Problem, SpecError, format_problems
from siyu.limits import limits
from siyu.project import Project
from siyu.storage.migrate import upgrade
from siyu.storage.models import Delivery
from tests.conftest import ROOT, Shop, local
from tests.recording_channel import RecordingChannel, recording_channels

pytestmark = pytest.mark.timeout(120)

SECRET = "hostile-marker-7f3a9c"  # in this process's environment, so in /proc/self/environ
CUSTOMER = {"id": 1, "name": "欧阳娜娜", "city": "上海", "timezone": "Asia/Shanghai"}
HELLO = "{{ customer.name }}您好"


@pytest.fixture(autouse=True)
def _fresh_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SIYU_HOSTILE_TEST_SECRET", SECRET)
    limits.cache_clear()
    yield
    limits.cache_clear()


def set_limit(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    limits.cache_clear()


def journey_text(name: str, template: str = "hello.j2", send: str = "wecom") -> str:
    return (
        f"journey: {name}\nquiet_hours: null\n"
        "entry: {event: order_paid, where: order_seq = 1}\n"
        f"steps:\n  - {{id: hello, at: 0h, send: {send}, template: '{template}'}}\n"
    )


def template_column(send: str) -> int:
    """The column of the step's `template:` value in journey_text."""
    return len(f"  - {{id: hello, at: 0h, send: {send}, template: ") + 1


def project(tmp: Path, journeys: dict[str, str], templates: dict[str, str]) -> Project:
    (tmp / "journeys").mkdir(parents=True, exist_ok=True)
    (tmp / "templates").mkdir(exist_ok=True)
    (tmp / "channels.yaml").write_text(
        (ROOT / "channels.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    for file, text in journeys.items():
        (tmp / "journeys" / file).write_text(text, encoding="utf-8")
    for file, text in templates.items():
        (tmp / "templates" / file).write_text(text, encoding="utf-8")
    return Project(tmp.resolve())


def report(problems: list[Problem]) -> str:
    return format_problems(problems) if problems else ""


def catalog(tmp: Path) -> Catalog:
    return Catalog(set(recording_channels()), tmp / "templates")


def validate_cli(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    from siyu.cli.main import app

    monkeypatch.chdir(root)
    monkeypatch.setenv("SIYU_PROJECT_DIR", str(root))
    result = CliRunner().invoke(app, ["validate"])
    return result.exit_code, result.output + str(result.exception or "")


# --- files: confined to journeys/ and templates/ -------------------------------------------


@pytest.mark.parametrize("target", ["/proc/self/environ", "/etc/passwd"])
def test_a_template_linked_out_of_templates_is_refused_by_validate(
    tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, {"j.yaml": journey_text("j", "evil.j2", send="webhook")}, {})
    (root.templates_dir / "evil.j2").symlink_to(target)
    _specs, problems = check_project(root)
    text = report(problems)
    refused = [p for p in problems if p.code == "outside-folder"]
    assert {Path(p.file).name for p in refused} == {"j.yaml", "evil.j2"}
    in_journey = next(p for p in refused if p.file.endswith("j.yaml"))
    assert (in_journey.line, in_journey.column) == (5, template_column("webhook"))
    assert "evil.j2" in in_journey.message and "outside templates/" in in_journey.message
    assert SECRET not in text and "root:" not in text
    code, output = validate_cli(root.root, monkeypatch)
    assert code == 1 and "outside-folder" in output
    assert SECRET not in output and "root:x" not in output and "Traceback" not in output
    with pytest.raises(SpecError):
        root.journey("j")


@pytest.mark.parametrize("target", ["/proc/self/environ", "/etc/passwd"])
def test_a_template_linked_out_of_templates_is_never_rendered_by_a_tick(
    tmp_path: Path, target: str, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """The link appears after the journey was validated (or the tick skips validation):
    the renderer itself refuses it; the message fails with a reason, nothing is sent."""
    channels = recording_channels()
    root = project(tmp_path, {"j.yaml": journey_text("j", send="webhook")}, {"hello.j2": HELLO})
    spec = load_journey(root.journeys_dir / "j.yaml", catalog(tmp_path), root.journeys_dir)
    (root.templates_dir / "hello.j2").unlink()
    (root.templates_dir / "hello.j2").symlink_to(target)
    rows = tick(sessions, shop, root, spec, channels)
    assert [r.status for r in rows] == ["failed"]
    assert "refused" in (rows[0].reason or "") and "outside templates/" in (rows[0].reason or "")
    assert channels["webhook"].messages == []
    assert all(SECRET not in (r.content or "") and "root:x" not in (r.content or "") for r in rows)


def test_a_template_swapped_for_a_link_after_it_was_cached_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path, {}, {"hello.j2": HELLO})
    cache = TemplateCache(root.templates_dir)
    assert render_message(root.templates_dir, "hello.j2", {"customer": CUSTOMER}, cache).body
    (root.templates_dir / "hello.j2").unlink()
    (root.templates_dir / "hello.j2").symlink_to("/proc/self/environ")
    rendered = render_message(root.templates_dir, "hello.j2", {"customer": CUSTOMER})
    assert rendered.body is None and "outside templates/" in (rendered.error or "")
    assert SECRET not in (rendered.error or "")


@pytest.mark.parametrize(
    "name", ["/proc/self/environ", "/etc/passwd", "../outside.j2", "sub/../../outside.j2"]
)
def test_absolute_and_dotdot_template_names_are_refused_with_the_journeys_position(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "outside.j2").write_text(f"{{# {SECRET} #}}\n{{{{ broken", encoding="utf-8")
    root = project(tmp_path, {"j.yaml": journey_text("j", name)}, {"hello.j2": HELLO})
    spec, problems = check_journey_file(
        root.journeys_dir / "j.yaml", catalog(tmp_path), root.journeys_dir
    )
    (problem,) = problems
    assert spec is not None and problem.code == "outside-folder"
    assert (Path(problem.file).name, problem.line, problem.column) == (
        "j.yaml",
        5,
        template_column("wecom"),
    )
    text = report(problems)
    assert SECRET not in text and "root:" not in text and "HOME=" not in text
    assert "'{{ broken" not in text
    code, output = validate_cli(root.root, monkeypatch)
    assert code == 1 and SECRET not in output and "root:x" not in output
    rendered = render_message(root.templates_dir, name, {"customer": CUSTOMER})
    assert rendered.body is None and SECRET not in (rendered.error or "")


@pytest.mark.parametrize("named", ["/etc/passwd", "/proc/self/environ", "../outside.yaml"])
def test_a_journey_file_named_on_the_command_line_must_be_inside_the_project(
    tmp_path: Path, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from siyu.cli.main import app

    (tmp_path / "outside.yaml").write_text(f"journey: x\n{SECRET}: [\n", encoding="utf-8")
    root = project(tmp_path / "p", {"j.yaml": journey_text("j")}, {"hello.j2": HELLO})
    (root.root / "drafts").mkdir()
    (root.root / "drafts" / "j2.yaml").write_text(journey_text("j2"), encoding="utf-8")
    monkeypatch.chdir(root.root)
    monkeypatch.setenv("SIYU_PROJECT_DIR", str(root.root))
    result = CliRunner().invoke(app, ["graph", named])
    output = result.output + str(result.exception or "")
    # refused as not a journey file (no .yaml) or as outside the project: never read
    assert result.exit_code == 1 and ("outside" in output or "not a journey file" in output)
    assert SECRET not in output and "root:x" not in output and "Traceback" not in output
    assert CliRunner().invoke(app, ["graph", "drafts/j2.yaml"]).exit_code == 0


def test_an_include_of_a_file_outside_templates_is_refused_at_render(tmp_path: Path) -> None:
    (tmp_path / "outside.j2").write_text(SECRET, encoding="utf-8")
    root = project(tmp_path, {}, {"a.j2": "{% include '../outside.j2' %}您好"})
    (root.templates_dir / "b.j2").symlink_to("/etc/passwd")
    (root.templates_dir / "c.j2").write_text("{% include 'b.j2' %}您好", encoding="utf-8")
    for name in ("a.j2", "c.j2"):
        rendered = render_message(root.templates_dir, name, {"customer": CUSTOMER})
        assert rendered.body is None and SECRET not in (rendered.error or "")
        assert "root:x" not in (rendered.error or "")


def test_a_link_inside_templates_to_another_template_is_fine(tmp_path: Path) -> None:
    root = project(tmp_path, {"j.yaml": journey_text("j", "alias.j2")}, {"hello.j2": HELLO})
    (root.templates_dir / "alias.j2").symlink_to(root.templates_dir / "hello.j2")
    _specs, problems = check_project(root)
    assert problems == []
    assert render_message(root.templates_dir, "alias.j2", {"customer": CUSTOMER}).body == (
        "欧阳娜娜您好"
    )


def test_a_fifo_in_templates_is_refused_without_waiting(tmp_path: Path) -> None:
    root = project(tmp_path, {"j.yaml": journey_text("j", "pipe.j2")}, {"hello.j2": HELLO})
    os.mkfifo(root.templates_dir / "pipe.j2")
    started = time.monotonic()
    _specs, problems = check_project(root)
    rendered = render_message(root.templates_dir, "pipe.j2", {"customer": CUSTOMER})
    assert time.monotonic() - started < 10
    assert {p.code for p in problems} == {"not-a-file"}
    assert {Path(p.file).name for p in problems} == {"pipe.j2", "j.yaml"}
    assert rendered.body is None and "not a regular file" in (rendered.error or "")


def test_dev_zero_as_a_journey_file_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path, {"good.yaml": journey_text("good")}, {"hello.j2": HELLO})
    (root.journeys_dir / "zero.yaml").symlink_to("/dev/zero")
    started = time.monotonic()
    specs, problems = root.check_all()
    assert time.monotonic() - started < 10
    assert list(specs) == ["good"]
    (problem,) = problems
    assert problem.code == "outside-folder" and problem.file.endswith("zero.yaml")
    for device in ("/dev/zero", "/dev/urandom"):
        _spec, found = check_journey_file(Path(device), catalog(tmp_path))
        assert [p.code for p in found] == ["not-a-file"]
    assert root.journey("good").journey == "good"  # the device does not stop another journey


def test_an_oversize_journey_or_template_is_refused_without_being_read(tmp_path: Path) -> None:
    big_journey = journey_text("big") + "# " + "x" * limits().journey_bytes + "\n"
    big_template = HELLO + "\n" + "x" * (limits().template_bytes + 1)
    root = project(
        tmp_path,
        {"big.yaml": big_journey, "j.yaml": journey_text("j", "big.j2")},
        {"hello.j2": HELLO, "big.j2": big_template},
    )
    _specs, problems = check_project(root)
    too_large = {Path(p.file).name for p in problems if p.code == "too-large"}
    assert too_large == {"big.yaml", "big.j2", "j.yaml"}  # j.yaml: at its `template:` line
    messages = {Path(p.file).name: p.message for p in problems if p.code == "too-large"}
    assert "SIYU_MAX_JOURNEY_BYTES" in messages["big.yaml"]
    assert "SIYU_MAX_TEMPLATE_BYTES" in messages["big.j2"]
    rendered = render_message(root.templates_dir, "big.j2", {"customer": CUSTOMER})
    assert rendered.body is None and "SIYU_MAX_TEMPLATE_BYTES" in (rendered.error or "")


def test_the_file_size_caps_are_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path, {"j.yaml": journey_text("j")}, {"hello.j2": HELLO})
    assert check_project(root)[1] == []
    set_limit(monkeypatch, "SIYU_MAX_TEMPLATE_BYTES", "20")
    assert {(Path(p.file).name, p.code) for p in check_project(root)[1]} == {
        ("j.yaml", "too-large"),  # at its `template:` line
        ("hello.j2", "too-large"),
    }
    # the cap holds for every YAML file of the project: channels.yaml must fit under it
    cap = len((root.root / "channels.yaml").read_bytes()) + 100
    padded = journey_text("j").replace("quiet_hours", f"description: {'x' * cap}\nquiet_hours")
    (root.journeys_dir / "j.yaml").write_text(padded, encoding="utf-8")
    set_limit(monkeypatch, "SIYU_MAX_JOURNEY_BYTES", str(cap))
    assert {(Path(p.file).name, p.code) for p in root.check_all()[1]} == {("j.yaml", "too-large")}


# --- YAML: size, aliases, depth ---------------------------------------------------------------


def billion_laughs(levels: int = 9, name: str = "laughs") -> str:
    lines = [f"journey: {name}", "quiet_hours: null", "x0: &a0 {customer: 'order_count > 1'}"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"x{level}: &a{level} {{all: [{refs}]}}")
    lines += [
        "entry: {event: order_paid}",
        "steps:",
        f"  - {{id: hello, send: wecom, template: hello.j2, if: *a{levels}}}",
    ]
    return "\n".join(lines) + "\n"


def test_billion_laughs_in_a_condition_is_refused_quickly(tmp_path: Path) -> None:
    root = project(tmp_path, {"laughs.yaml": billion_laughs()}, {"hello.j2": HELLO})
    started = time.monotonic()
    spec, problems = check_journey_file(root.journeys_dir / "laughs.yaml", catalog(tmp_path))
    assert time.monotonic() - started < 10
    assert spec is None
    (problem,) = problems
    assert problem.code == "too-large" and "SIYU_MAX_YAML_NODES" in problem.message
    assert problem.location().endswith("laughs.yaml")


@pytest.mark.parametrize("depth", [100, 5_000, 50_000])
def test_deep_nesting_is_one_problem_not_a_traceback(tmp_path: Path, depth: int) -> None:
    text = journey_text("deep") + "deep: " + "[" * depth + "]" * depth + "\n"
    root = project(tmp_path, {"deep.yaml": text}, {"hello.j2": HELLO})
    spec, problems = check_journey_file(root.journeys_dir / "deep.yaml", catalog(tmp_path))
    assert spec is None
    (problem,) = problems
    assert problem.code in ("too-deep", "too-large")
    assert "nest" in problem.message


def test_a_deeply_nested_template_is_one_problem_not_a_traceback(tmp_path: Path) -> None:
    deep = "{{ " + "(" * 5_000 + "1" + ")" * 5_000 + " }}"
    root = project(tmp_path, {"j.yaml": journey_text("j", "deep.j2")}, {"deep.j2": deep})
    _specs, problems = check_project(root)
    assert problems and all(p.code in ("too-deep", "template-syntax") for p in problems)
    rendered = render_message(root.templates_dir, "deep.j2", {"customer": CUSTOMER})
    assert rendered.body is None and rendered.error


# --- rendering: time, loops, size -------------------------------------------------------------

HOSTILE_TEMPLATES = {
    "power": "{{ 10 ** 100000000 }}",
    "power-of-powers": "{{ (10 ** 10) ** (10 ** 8) }}",
    "power-chain": "{% set a = 7**4000 %}{{ a * a }}",
    "big-string": "{{ 'x' * 100000000 }}",
    "big-list": "{{ ([1] * 100000000)|length }}",
    "doubling": "{% set a = 'x' * 60000 %}"
    + "".join("{% set a = a ~ a %}" for _ in range(40))
    + "{{ a|length }}",
    "adding": "{% set a = 'x' * 60000 %}" + "{% set a = a + a %}" * 40 + "{{ a|length }}",
    "nested-loops": "{% for a in range(100000) %}{% for b in range(100000) %}"
    "{% endfor %}{% endfor %}",
    "nested-loops-output": "{% for a in range(100000) %}{% for b in range(100000) %}"
    "{{ b }}{% endfor %}{% endfor %}",
    "loop-output": "{% for i in range(10000) %}{{ 'x' * 60000 }}{% endfor %}",
    "center": "{{ 'x'|center(1000000000) }}",
    "str-center": "{{ 'x'.center(1000000000) }}",
    "format-width": "{{ '%1000000000d'|format(1) }}",
    "str-format-width": "{{ '{:>1000000000}'.format(1) }}",
    "percent": "{{ '%1000000000s' % 'x' }}",
    "join": "{% set a = 'x' * 60000 %}{{ [a, a, a, a, a, a]|join }}",
    "replace": "{% set a = 'x' * 60000 %}{{ a|replace('x', a) }}",
    "printed-list": "{% set a = 'x' * 60000 %}{{ [a] * 60000 }}",
    "printed-literal": "{% set a = 'x' * 60000 %}{{ [" + "a, " * 2000 + "] }}",
    "string-filter": "{% set a = 'x' * 60000 %}{{ ([a] * 60000)|string|length }}",
    "tojson": "{% set a = 'x' * 60000 %}{{ [a, a, a]|tojson|length }}",
    "format-list": "{% set a = 'x' * 60000 %}{{ '%s' % ([a, a],) }}",
    "str-format-list": "{% set a = 'x' * 60000 %}{{ '{}'.format([a, a]) }}",
    "concat-list": "{% set a = 'x' * 60000 %}{{ 'x' ~ [a, a] }}",
    "recursive-macro": "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TEMPLATES))
def test_a_hostile_template_is_a_bounded_render_failure(tmp_path: Path, name: str) -> None:
    root = project(tmp_path, {}, {"t.j2": HOSTILE_TEMPLATES[name] + "您好"})
    started = time.monotonic()
    rendered = render_message(root.templates_dir, "t.j2", {"customer": CUSTOMER})
    assert time.monotonic() - started < 15
    assert rendered.body is None
    assert rendered.error and rendered.error.startswith("t.j2")
    assert "Traceback" not in rendered.error and len(rendered.error) < 300


@pytest.mark.parametrize("name", sorted(HOSTILE_TEMPLATES))
def test_validate_does_not_hang_on_a_hostile_template_no_journey_uses(
    tmp_path: Path, name: str
) -> None:
    root = project(
        tmp_path,
        {"j.yaml": journey_text("j")},
        {"hello.j2": HELLO, "unused.j2": HOSTILE_TEMPLATES[name]},
    )
    started = time.monotonic()
    check_project(root)
    assert time.monotonic() - started < 15


def test_render_time_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_limit(monkeypatch, "SIYU_MAX_RENDER_LOOPS", "100000000")
    set_limit(monkeypatch, "SIYU_MAX_RENDER_SECONDS", "0.5")
    root = project(tmp_path, {}, {"t.j2": HOSTILE_TEMPLATES["nested-loops"]})
    started = time.monotonic()
    rendered = render_message(root.templates_dir, "t.j2", {"customer": CUSTOMER})
    assert time.monotonic() - started < 5
    assert "SIYU_MAX_RENDER_SECONDS" in (rendered.error or "")


def test_loop_iterations_are_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    template = "{% for i in range(50) %}{{ i }}{% endfor %}"
    root = project(tmp_path, {}, {"t.j2": template})
    assert render_message(root.templates_dir, "t.j2", {}).body
    set_limit(monkeypatch, "SIYU_MAX_RENDER_LOOPS", "10")
    rendered = render_message(root.templates_dir, "t.j2", {})
    assert rendered.body is None and "SIYU_MAX_RENDER_LOOPS" in (rendered.error or "")


def test_ordinary_templates_still_render(tmp_path: Path) -> None:
    template = (
        "{{ customer.name }}您好，{{ '%.2f'|format(199) }} {{ 3 * 4 }} {{ 2 ** 10 }}"
        "{% for c in ['a', 'b'] %}{{ loop.index }}{{ c ~ '!' }}{% endfor %}"
        "{{ ['x', 'y']|join('-') }} {{ 'ab'|replace('a', 'c') }} {{ 'a' + 'b' }}"
        " {{ '{:>3}'.format(7) }} {{ 'x'|center(5) }}|"
    )
    root = project(tmp_path, {}, {"t.j2": template})
    rendered = render_message(root.templates_dir, "t.j2", {"customer": CUSTOMER})
    assert rendered.body == "欧阳娜娜您好，199.00 12 10241a!2b!x-y cb ab   7   x  |"


@pytest.mark.parametrize(
    ("identity_kind", "text", "setting"),
    [
        ("mobile", "【悦享】" + "好" * 600, "SIYU_MAX_SMS_CHARS"),
        ("wecom_external_userid", "好" * 1500, "SIYU_MAX_WECOM_BYTES"),  # 4,500 UTF-8 bytes
        ("customer_id", "x" * 70_000, "SIYU_MAX_MESSAGE_CHARS"),
    ],
)
def test_each_channel_has_its_message_limit(
    tmp_path: Path, identity_kind: str, text: str, setting: str
) -> None:
    root = project(tmp_path, {}, {"t.j2": text, "short.j2": "【悦享】您好"})
    limit = message_limit(RecordingChannel("c", identity_kind))
    cache = TemplateCache(root.templates_dir, limit)
    rendered = render_message(root.templates_dir, "t.j2", {}, cache)
    assert rendered.body is None and setting in (rendered.error or "")
    assert render_message(root.templates_dir, "short.j2", {}, cache).body == "【悦享】您好"


def test_a_message_over_the_channels_limit_fails_that_customer_in_a_tick(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """`'x' * 100000000` used to store 100 MB per recipient and post it: now each message
    fails with the reason, the channel gets nothing and the ledger stores no body."""
    channels = recording_channels()
    root = project(
        tmp_path,
        {"j.yaml": journey_text("j", "big.j2", send="sms")},
        {"big.j2": "【悦享】{{ customer.name }}{{ 'x' * 100000000 }}"},
    )
    spec = load_journey(root.journeys_dir / "j.yaml", catalog(tmp_path), root.journeys_dir)
    rows = tick(sessions, shop, root, spec, channels)
    assert [r.status for r in rows] == ["failed"]
    assert "render_error" in (rows[0].reason or "")
    assert rows[0].content is None or len(rows[0].content) < 1000
    assert channels["sms"].messages == []


# --- journeys by name: duplicates, isolation --------------------------------------------------


def test_two_files_with_one_journey_name_refuse_to_run_naming_both(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "a.yaml": journey_text("same"),
            "b.yaml": journey_text("same"),
            "c.yaml": journey_text("c"),
        },
        {"hello.j2": HELLO},
    )
    with pytest.raises(ConfigError) as raised:
        root.journey("same")
    assert "a.yaml" in str(raised.value) and "b.yaml" in str(raised.value)
    specs, problems = root.check_all()
    assert "same" not in specs and "c" in specs
    assert sorted(Path(p.file).name for p in problems if p.code == "duplicate-journey") == [
        "a.yaml",
        "b.yaml",
    ]
    assert list(root.journeys_by_name()) == ["c"]
    assert root.journey("c").journey == "c"  # other journeys still run


@pytest.mark.parametrize("command", [["summary", "same"], ["explain", "same", "1"]])
def test_commands_that_load_a_journey_by_name_refuse_a_duplicate(
    tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from siyu.cli.main import app

    root = project(
        tmp_path,
        {"a.yaml": journey_text("same"), "b.yaml": journey_text("same")},
        {"hello.j2": HELLO},
    )
    monkeypatch.chdir(root.root)
    monkeypatch.setenv("SIYU_PROJECT_DIR", str(root.root))
    database = f"sqlite:///{tmp_path / 'siyu.db'}"
    upgrade(database)  # a database siyu can use: the journey's name is what is refused
    result = CliRunner().invoke(app, [*command, "--database", database])
    assert result.exit_code == 1
    assert "a.yaml" in result.output and "b.yaml" in result.output


def test_a_duplicate_in_a_file_that_does_not_parse_still_counts(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"a.yaml": journey_text("same") + "steps: [oops\n", "b.yaml": journey_text("same")},
        {"hello.j2": HELLO},
    )
    with pytest.raises(ConfigError, match="a.yaml.*b.yaml"):
        root.journey("same")


BROKEN_OTHERS = {
    "bad-yaml": ({"aaa.yaml": "journey: other\nsteps: [\n"}, {}),
    "billion-laughs": ({"aaa.yaml": billion_laughs(name="other")}, {}),
    "dev-zero": ({}, {}),
    "hostile-template": (
        {"aaa.yaml": journey_text("other", "power.j2")},
        {"power.j2": "{{ 10 ** 100000000 }}{% for a in range(10**5) %}{% endfor %}"},
    ),
    "linked-template": ({"aaa.yaml": journey_text("other", "evil.j2")}, {}),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_OTHERS))
def test_a_broken_other_journey_does_not_stop_this_journeys_tick(tmp_path: Path, kind: str) -> None:
    journeys, templates = BROKEN_OTHERS[kind]
    root = project(
        tmp_path, {"zzz.yaml": journey_text("good"), **journeys}, {"hello.j2": HELLO, **templates}
    )
    if kind == "dev-zero":
        (root.journeys_dir / "aaa.yaml").symlink_to("/dev/zero")
    if kind == "linked-template":
        (root.templates_dir / "evil.j2").symlink_to("/proc/self/environ")
    started = time.monotonic()
    spec = root.journey("good")  # what `siyu tick good` and the flow do before the tick
    assert content_problems(root, spec) == []
    assert time.monotonic() - started < 10
    if kind in ("bad-yaml", "billion-laughs", "linked-template"):
        with pytest.raises(SpecError):
            root.journey("other")


def test_the_flow_ticks_a_journey_while_another_journey_file_is_broken(
    prefect_harness: None,
    project_env: str,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.journey_flow import journey_tick

    root = project(
        tmp_path,
        {"zzz.yaml": journey_text("good"), "aaa.yaml": billion_laughs()},
        {"hello.j2": HELLO},
    )
    (root.journeys_dir / "abc.yaml").symlink_to("/dev/zero")
    monkeypatch.setenv("SIYU_PROJECT_DIR", str(root.root))
    monkeypatch.setenv("SIYU_CHANNEL_BASE_URL", "http://127.0.0.1:9")
    results = journey_tick(journey="good", now=local(0).isoformat())
    assert "hello" in results


def test_all_journeys_tick_runs_the_good_journeys_and_then_reports_the_broken(
    prefect_harness: None,
    project_env: str,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.all_journeys_flow import all_journeys_tick

    root = project(
        tmp_path,
        {"zzz.yaml": journey_text("good"), "aaa.yaml": journey_text("bad", "evil.j2")},
        {"hello.j2": HELLO},
    )
    (root.templates_dir / "evil.j2").symlink_to("/proc/self/environ")
    monkeypatch.setenv("SIYU_PROJECT_DIR", str(root.root))
    monkeypatch.setenv("SIYU_CHANNEL_BASE_URL", "http://127.0.0.1:9")
    with pytest.raises(SpecError) as raised:
        all_journeys_tick(now=local(0).isoformat())
    assert "aaa.yaml" in str(raised.value) and "zzz.yaml" not in str(raised.value)
    assert SECRET not in str(raised.value)
    with sessions() as session:  # the good journey ran: its version row exists
        from siyu.storage.models import Journey

        assert session.scalars(select(Journey.name)).all() == ["good"]


# --- render errors: where and what, never the customer's data --------------------------------


LEAKY_TEMPLATES = [
    "{{ {}[customer.name] }}",
    "{{ customer.name|int(default=None) + 1 }}",
    "{{ customer.name.nope }}",
    "{{ customer.name ~ 1 / 0 }}",
    "{{ 'x'|localtime(customer.name) }}",
    "{{ event.when|localtime(customer.timezone) }}",
]


@pytest.mark.parametrize("template", LEAKY_TEMPLATES)
def test_a_render_error_names_the_line_and_kind_but_not_the_data(
    tmp_path: Path, template: str
) -> None:
    root = project(tmp_path, {}, {"t.j2": "第一行\n" + template})
    from datetime import UTC, datetime

    context = {
        "customer": {**CUSTOMER, "timezone": "Mars/欧阳娜娜"},
        "event": {"when": datetime(2026, 1, 1, tzinfo=UTC)},
    }
    rendered = render_message(root.templates_dir, "t.j2", context)
    assert rendered.body is None and rendered.error
    assert rendered.error.startswith("t.j2:2: "), rendered.error
    assert "欧阳娜娜" not in rendered.error and "Mars/" not in rendered.error


def test_the_ledger_and_explain_show_no_customer_name_for_a_render_error(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    from siyu.reports.explain import explain

    channels = recording_channels()
    root = project(
        tmp_path,
        {"j.yaml": journey_text("j", "leak.j2")},
        {"leak.j2": "您好\n{{ {}[customer.name] }}"},
    )
    spec = load_journey(root.journeys_dir / "j.yaml", catalog(tmp_path), root.journeys_dir)
    rows = tick(sessions, shop, root, spec, channels)
    assert [r.status for r in rows] == ["failed"]
    reason = rows[0].reason or ""
    assert reason.startswith("render_error: leak.j2:2: UndefinedError") and "欧阳娜娜" not in reason
    with sessions() as session:
        lines = explain(session, spec, rows[0].customer_id, local(2))
    assert any("leak.j2:2" in line for line in lines)
    assert all("欧阳娜娜" not in line for line in lines)


# --- helpers ----------------------------------------------------------------------------------


def tick(
    sessions: sessionmaker[Session],
    shop: Shop,
    root: Project,
    spec: object,
    channels: dict[str, RecordingChannel],
) -> list[Delivery]:
    """One customer named 欧阳娜娜 buys, then one tick: the ledger rows it wrote."""
    ctx = EngineContext(sessions, root.templates_dir, dict(channels))  # type: ignore[arg-type]
    run_tick(ctx, spec, local(0))  # type: ignore[arg-type]
    buyer = shop.customer("欧阳娜娜")
    shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(1, 11))  # type: ignore[arg-type]
    with sessions() as session:
        return list(session.scalars(select(Delivery)))
