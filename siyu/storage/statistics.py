"""PostgreSQL's planner statistics, refreshed before the statements that need them when
PostgreSQL's own counters say they are stale.

Why: a plan made from statistics taken while a table was empty (after a bulk load, or before
a tick's step first filled the ledger) can turn one index lookup per row into one table scan
per row. One measured tick's completion took 345 s instead of 6 s, until autoanalyze came
round. So a tick, and `siyu import` after it loads, analyses every table whose changes since
its last analysis pass autoanalyze's own threshold: what autoanalyze would do soon, done first.

SQLite keeps no statistics unless ANALYZE is run; its planner then takes indexes as
selective, which is what siyu's statements are written for, so nothing is done there.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, text

# The tables whose size a tick's statements depend on: read by entry, goals and exits, and
# written by the tick itself.
TICK_TABLES = ("customers", "orders", "events", "enrollments", "deliveries")

# autoanalyze's rule (threshold + scale factor × rows at the last analysis), with the server's
# own settings. reltuples is -1 for a table never analysed: counted as empty.
_STALE = text(
    """
    SELECT s.relname
    FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
    WHERE s.schemaname = current_schema()
      AND s.relname = ANY(:tables)
      AND s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
          + current_setting('autovacuum_analyze_scale_factor')::float8 * greatest(c.reltuples, 0)
    ORDER BY s.relname
    """
)


def refresh_stale_statistics(engine: Engine, tables: Iterable[str] = TICK_TABLES) -> list[str]:
    """ANALYZE each of `tables` whose statistics are stale; returns the ones analysed. A role
    that does not own a table gets PostgreSQL's warning and the table is skipped; a no-op on
    other databases."""
    if engine.dialect.name != "postgresql":
        return []
    wanted = list(tables)
    with engine.connect() as connection:
        stale = list(connection.execute(_STALE, {"tables": wanted}).scalars())
    if not stale:
        return []
    quote = engine.dialect.identifier_preparer.quote
    # Each ANALYZE in its own transaction, outside the phase's: its lock is held no longer.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in stale:
            connection.execute(text(f"ANALYZE {quote(table)}"))
    return stale
