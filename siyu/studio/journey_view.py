"""Everything a journey's page shows of one text of its file (as on disk, or as the editor
holds it): the check, the ledger's figures, the previews and the difference from the last
commit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from siyu.language.project_files import Refused
from siyu.project import Project
from siyu.studio.checking import Checked, check_on_disk, check_text
from siyu.studio.editing import committed_diff, writable_journey
from siyu.studio.overview import JourneyFile, add_figures
from siyu.studio.previews import Previews, journey_previews


@dataclass(frozen=True)
class JourneyView:
    entry: JourneyFile  # the journey and problems of `text`, the ledger's figures
    checked: Checked
    text: str
    previews: Previews | None  # None: the text does not parse into a journey
    diff: tuple[list[str] | None, str]  # committed_diff's lines and what they compare with
    not_saved: str | None = None  # None: the editor may save; else why not


def find_journey_file(project: Project, key: str) -> Path | None:
    """The file of journeys/ that `key` names as the index lists it; a path is never built
    from the request."""
    return next((p for p in project.journey_files() if p.stem == key), None)


def view_on_disk(project: Project, path: Path, database_url: str | None) -> JourneyView:
    """The page as first shown: the file's text, or why it cannot be read or saved."""
    text, checked = check_on_disk(project, path)
    if text is None:
        entry = JourneyFile(path.stem, path, None, checked.problems)
        refusal = checked.problems[0].message
        return JourneyView(entry, checked, f"# {refusal}\n", None, (None, ""), refusal)
    why: str | None = None
    try:
        writable_journey(project, path)
    except Refused as refused:
        why = refused.message
    return view_of(project, path, text, database_url, why, checked)


def view_of(
    project: Project,
    path: Path,
    text: str,
    database_url: str | None,
    not_saved: str | None = None,
    checked: Checked | None = None,
) -> JourneyView:
    """The page's parts for `text` (checked here unless `checked` is its check)."""
    checked = checked or check_text(project, path, text)
    entry = JourneyFile(path.stem, path, checked.spec, checked.problems)
    add_figures([entry], database_url)
    previews = (
        journey_previews(project, checked.spec, database_url, checked.valid)
        if checked.spec
        else None
    )
    diff = committed_diff(project, path, text)
    return JourneyView(entry, checked, text, previews, diff, not_saved)
