"""The 17:00 sync: the CRM's CSV exports dropped into the inbox folder are imported with the
existing importer (siyu.importer), customers first, then orders, then events.

    inbox/                       SIYU_INBOX_DIR, default <project>/inbox
      mapping.yaml               the importer's mapping file (customers:, orders:, events:)
      customers-20261102.csv     any file named customers*.csv, orders*.csv, events*.csv
      done/2026-11-02/           imported files are moved here (a rerun imports nothing twice)

Bad rows are listed as file.csv:LINE: reason and skipped (as `siyu import` does); the sync
fails when more than `max_bad_share` of all rows are bad, or a file cannot be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from siyu.errors import SiyuError
from siyu.importer.csv_import import import_csv
from siyu.importer.mapping import load_mapping
from siyu.settings import settings

KINDS = ("customers", "orders", "events")


@dataclass
class SyncReport:
    files: list[dict[str, object]] = field(default_factory=list)
    rows: int = 0
    bad: int = 0
    problems: list[str] = field(default_factory=list)  # bad rows, file.csv:LINE: reason
    errors: list[str] = field(default_factory=list)  # files that could not be imported

    @property
    def bad_share(self) -> float:
        return self.bad / self.rows if self.rows else 0.0


def inbox_dir(project_root: Path) -> Path:
    return settings().inbox_dir or project_root / "inbox"


def sync_inbox(sessions: sessionmaker[Session], inbox: Path, day: date) -> SyncReport:
    report = SyncReport()
    files = [(kind, path) for kind in KINDS for path in sorted(inbox.glob(f"{kind}*.csv"))]
    if not files:
        return report
    mapping_file = inbox / "mapping.yaml"
    done = inbox / "done" / day.isoformat()
    for kind, path in files:
        try:
            mapping = load_mapping(mapping_file, kind)
            with sessions() as session, session.begin():
                result = import_csv(session, path, mapping)
        except SiyuError as error:
            report.errors.append(f"{path.name}: {error}")
            continue
        report.rows += result.rows
        report.bad += len(result.bad)
        report.problems += result.report(50)
        report.files.append(
            {
                "file": path.name,
                "kind": kind,
                "rows": result.rows,
                "inserted": result.inserted,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "bad": len(result.bad),
            }
        )
        done.mkdir(parents=True, exist_ok=True)
        path.rename(done / path.name)
    return report
