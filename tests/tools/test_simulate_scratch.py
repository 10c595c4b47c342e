"""The backtest's scratch copy gets the indexes the engine's per-tick scans rely on, even
when the copied database was last migrated before they existed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

from siyu.simulate.scratch import add_missing_indexes
from siyu.storage.engine import make_engine
from siyu.storage.migrate import upgrade
from siyu.storage.models import Base


def test_a_copy_of_an_older_schema_gets_the_missing_indexes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0003")  # before migration 0004's scan indexes
    engine = make_engine(url)
    declared = {
        (table.name, index.name)
        for table in Base.metadata.tables.values()
        for index in table.indexes
    }

    def present() -> set[tuple[str, str | None]]:
        found = inspect(engine)
        return {
            (table, index["name"])
            for table in found.get_table_names()
            for index in found.get_indexes(table)
        }

    assert ("deliveries", "ix_deliveries_channel_updated") not in present()
    add_missing_indexes(engine)
    assert declared <= present()
    add_missing_indexes(engine)  # a second time changes nothing
    engine.dispose()
