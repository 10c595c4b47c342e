"""One settings object (siyu/settings.py) for every SIYU_* variable, read nowhere else; and
mypy --strict as part of `make lint`."""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from siyu.importer.limits import ImportLimits
from siyu.limits import _ENV as LIMIT_VARIABLES
from siyu.settings import Settings, SettingsError, overridden, settings, variable

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("siyu", "tasks", "flows", "db", "bench")
# Reads os.environ under a name it does not know in advance: the secret_env that channels.yaml
# gives each channel (e.g. SIYU_WECOM_CONTACT_SECRET), never a fixed setting.
SECRET_READER = Path("siyu/channels/secrets.py")


def _documented_names() -> set[str]:
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = set()
    for path in texts:
        found |= set(re.findall(r"SIYU_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_*])", path.read_text("utf-8")))
    return found


def _channel_secret_names() -> set[str]:
    config = YAML(typ="safe").load((ROOT / "channels.yaml").read_text("utf-8"))
    return {c["secret_env"] for c in config["channels"].values() if c.get("secret_env")}


def test_every_documented_variable_is_a_setting() -> None:
    settings_names = {variable(name) for name in Settings.model_fields}
    bounds = set(LIMIT_VARIABLES.values()) | {
        f"SIYU_IMPORT_{spec.name.upper()}" for spec in fields(ImportLimits)
    }
    known = settings_names | bounds | _channel_secret_names() | {"SIYU_TEST_POSTGRES_URL"}
    documented = _documented_names()
    assert {"SIYU_DATABASE_URL", "SIYU_UNSUBSCRIBE_SECRET", "SIYU_MAX_YAML_NODES"} <= documented
    assert documented - known == set()
    # and each setting says what it is
    for name, info in Settings.model_fields.items():
        assert info.description, name


def _environment_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, key) of each use of os.environ / os.getenv whose key is not a plain literal
    outside SIYU_ (a name, an expression, or a SIYU_ string)."""
    found = []
    for node in ast.walk(tree):
        key: ast.expr | None = None
        if isinstance(node, ast.Call):
            func = node.func
            on_environ = (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "environ"
            )
            getenv = isinstance(func, ast.Attribute) and func.attr == "getenv"
            if not (on_environ or getenv):
                continue
            key = node.args[0] if node.args else None
        elif isinstance(node, ast.Subscript) and (
            isinstance(node.value, ast.Attribute) and node.value.attr == "environ"
        ):
            key = node.slice
        elif isinstance(node, ast.Compare) and any(
            isinstance(c, ast.Attribute) and c.attr == "environ" for c in node.comparators
        ):
            key = node.left
        else:
            continue
        literal = isinstance(key, ast.Constant) and isinstance(key.value, str)
        if not literal or str(key.value).startswith("SIYU_"):  # type: ignore[union-attr]
            found.append((node.lineno, ast.unparse(key) if key is not None else "(all)"))
    return found


def test_no_module_but_settings_reads_a_siyu_variable() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if relative in (Path("siyu/settings.py"), SECRET_READER):
                continue
            tree = ast.parse(path.read_text("utf-8"))
            offenders += [f"{relative}:{line}: {key}" for line, key in _environment_reads(tree)]
    assert offenders == []


def test_the_check_finds_a_read() -> None:
    tree = ast.parse(
        'import os\nos.environ.get("SIYU_X")\nos.getenv("SIYU_Y")\nos.environ[NAME]\n'
        '"SIYU_Z" in os.environ\nos.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")\n'
    )
    assert [line for line, _ in _environment_reads(tree)] == [2, 3, 4, 5]


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(variable(name), raising=False)
    current = settings()
    assert current.database_url == "sqlite:///var/siyu.db"
    assert current.link_base_url == "http://127.0.0.1:8765"
    assert current.marketer_sql_timeout == 30.0
    assert current.max_duration_days == 3660
    assert current.sandbox_max_body_bytes == 1024 * 1024
    assert current.step_partitions == 1 and current.partition_runner == "threads"
    assert current.project_dir is None and current.unsubscribe_secret is None
    assert current.batch_size == 500 and current.late_events_hours == 168


def test_the_engine_takes_its_batch_size_and_late_event_window_from_the_settings() -> None:
    from datetime import timedelta

    from siyu.project import Project
    from siyu.storage.engine import make_engine, make_sessionmaker

    sessions = make_sessionmaker(make_engine("sqlite://"))
    with overridden(batch_size="2000", late_events_hours="24"):
        ctx = Project(ROOT).engine_context(sessions, {})
    assert ctx.batch_size == 2000 and ctx.late_events == timedelta(hours=24)
    default = Project(ROOT).engine_context(sessions, {})
    assert default.batch_size == 500 and default.late_events == timedelta(days=7)


def test_a_bad_value_is_one_line_naming_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIYU_STEP_PARTITIONS", "many")
    with pytest.raises(SettingsError) as raised:
        settings()
    message = str(raised.value)
    assert message.startswith("SIYU_STEP_PARTITIONS='many': ") and "\n" not in message
    monkeypatch.setenv("SIYU_STEP_PARTITIONS", "0")
    with pytest.raises(SettingsError, match="SIYU_STEP_PARTITIONS='0': input should be greater"):
        settings()
    monkeypatch.setenv("SIYU_STEP_PARTITIONS", "")  # empty is unset
    assert settings().step_partitions == 1


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hostile-settings-secret-0123456789"
    monkeypatch.setenv("SIYU_UNSUBSCRIBE_SECRET", secret)
    assert secret not in repr(settings()) and secret not in str(settings())
    assert settings().unsubscribe_secret is not None
    assert settings().unsubscribe_secret.get_secret_value() == secret


def test_a_flag_overrides_the_variable_for_its_block_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIYU_DATABASE_URL", "sqlite:///var/outer.db")
    with overridden(database_url="sqlite:///var/flag.db"):
        assert settings().database_url == "sqlite:///var/flag.db"
    assert settings().database_url == "sqlite:///var/outer.db"
    monkeypatch.delenv("SIYU_DATABASE_URL")
    with overridden(database_url="sqlite:///var/flag.db"):
        assert settings().database_url == "sqlite:///var/flag.db"
    assert settings().database_url == "sqlite:///var/siyu.db"
    with pytest.raises(KeyError):
        variable("no_such_setting")


def test_make_lint_runs_mypy_strict_on_every_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["mypy"]
    assert config["strict"] is True and set(config["files"]) == set(PACKAGES)
    lint = (ROOT / "Makefile").read_text("utf-8").split("\nlint:")[1].split("\n\n")[0]
    assert "$(BIN)/mypy" in lint
