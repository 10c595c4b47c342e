"""SQLite's fsync level: durable by default (a lost `sent` receipt means a message sent twice),
lighter only when asked, and a wrong value is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from siyu.errors import ConfigError
from siyu.settings import settings
from siyu.storage.engine import make_engine


def synchronous_of(path: Path) -> int:
    settings.cache_clear()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return int(connection.scalar(text("PRAGMA synchronous")) or 0)
    finally:
        engine.dispose()


def test_commits_are_flushed_to_disk_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIYU_SQLITE_SYNCHRONOUS", raising=False)
    assert synchronous_of(tmp_path / "a.db") == 2  # FULL


def test_a_throwaway_database_may_skip_the_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIYU_SQLITE_SYNCHRONOUS", "off")
    assert synchronous_of(tmp_path / "a.db") == 0  # OFF


def test_a_wrong_level_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIYU_SQLITE_SYNCHRONOUS", "sometimes")
    with pytest.raises(ConfigError, match="SIYU_SQLITE_SYNCHRONOUS='sometimes'.*'OFF', 'NORMAL'"):
        synchronous_of(tmp_path / "a.db")
