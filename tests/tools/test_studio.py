"""`siyu studio`: the journeys at a glance with the ledger's figures, and a journey's page
with its picture, per-step figures and its file with each problem marked on its line, served
on 127.0.0.1 and looked at in headless Chromium. Nothing else is served: a request names a
journey file only as journeys/ lists it. The editor's typing and saving:
test_studio_edit.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from siyu.cli.main import app
from siyu.project import Project
from tests.browser import run_chromium
from tests.conftest import Shop
from tests.project_copy import copy_project
from tests.studio_server import studio_after_first_purchase

STUDIO_SCRIPT = '<script src="/static/studio.js" defer></script>'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = copy_project(tmp_path / "brand", ["journeys", "templates", "channels.yaml"])
    good = (root / "journeys" / "first_purchase.yaml").read_text(encoding="utf-8")
    # a marketer's typo: the channel of the day-7 step misspelt
    (root / "journeys" / "typo.yaml").write_text(
        good.replace("journey: first-purchase-care", "journey: typo-care").replace(
            "send: service_account", "send: service_acount"
        ),
        encoding="utf-8",
    )
    return root


@pytest.fixture
def studio(project: Path, sessions: sessionmaker[Session], shop: Shop) -> Iterator[str]:
    with studio_after_first_purchase(project, sessions, shop) as base:
        yield base


def test_the_journeys_at_a_glance_with_their_figures(studio: str) -> None:
    page = httpx.get(studio + "/?lang=en", timeout=30)
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'") and "script-src 'self';" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    html = page.text
    assert "<script" not in html  # the index has no script at all
    row = html.split('id="file-first_purchase"')[1].split("</tr>")[0]
    assert ">valid<" in row and "first-purchase-care" in row
    # four buyers enrolled; join-group and day-3 care sent to each one reachable on WeCom
    assert '<td class="n">4</td>' in row
    typo = html.split('id="file-typo"')[1].split("</tr>")[0]
    assert "1 problem(s)" in typo
    assert ">旅程<" in httpx.get(studio + "/", timeout=30).text  # Chinese first


def test_a_journeys_page_marks_the_problem_on_its_line_in_a_real_browser(
    studio: str, tmp_path: Path
) -> None:
    profile = tmp_path / "chromium-profile"
    dom = run_chromium(profile, "--dump-dom", f"{studio}/journeys/typo?lang=en")
    assert 'id="status"' in dom and "1 problem(s)" in dom
    marked = dom.split('<span class="line problem"')[1:]
    assert len(marked) == 1 and "service_acount" in marked[0].split("</span>")[1]
    assert "did you mean 'service_account'" in dom
    good = run_chromium(profile, "--dump-dom", f"{studio}/journeys/first_purchase?lang=en")
    assert '<figure id="picture"><svg' in good
    steps = good.split('id="steps"')[1].split("</table>")[0]
    assert "join-group" in steps and "day14-repurchase" in steps


def test_nothing_but_the_listed_journey_files_is_served(studio: str) -> None:
    for path in ("/journeys/..%2F..%2Fchannels", "/journeys/nope", "/etc/passwd", "/journeys/"):
        assert httpx.get(studio + path, timeout=30).status_code == 404, path


def test_elsewhere_than_loopback_a_short_token_is_refused_and_no_database_is_created(
    project: Path, tmp_path: Path
) -> None:
    """(the token itself: tests/tools/test_studio_run.py)"""
    missing = tmp_path / "none" / "siyu.db"
    result = CliRunner().invoke(
        app,
        ["studio", "--host", "0.0.0.0", "--database", f"sqlite:///{missing}"],
        env={"SIYU_PROJECT_DIR": str(project), "SIYU_STUDIO_TOKEN": "short"},
    )
    assert result.exit_code == 1
    assert "SIYU_STUDIO_TOKEN: at least 16 characters" in result.output
    assert "short" not in result.output
    from siyu.studio.overview import journey_files

    files = journey_files(Project.find(project), f"sqlite:///{missing}")
    assert {f.key for f in files} >= {"first_purchase", "typo"}
    assert all(f.figures is None for f in files) and not missing.parent.exists()


def test_hostile_journey_files_are_shown_as_problems_never_read_or_run(
    studio: str, project: Path, tmp_path: Path
) -> None:
    """A link to a file outside journeys/, a file over the size bound, markup in a journey's
    text: the page names each problem, shows none of the file behind the link, and escapes
    the markup (the pages' only script is the studio's own file)."""
    secret = tmp_path / "secret.yaml"
    secret.write_text("journey: stolen\npassword: hunter2\n", encoding="utf-8")
    journeys = project / "journeys"
    (journeys / "leak.yaml").symlink_to(secret)
    (journeys / "huge.yaml").write_text("journey: huge\n" + "# x\n" * 100_000, encoding="utf-8")
    good = (journeys / "first_purchase.yaml").read_text(encoding="utf-8")
    (journeys / "markup.yaml").write_text(
        good.replace("journey: first-purchase-care", "journey: markup-care").replace(
            "description:", 'description: "<script>alert(1)</script><img src=x onerror=1>" #', 1
        ),
        encoding="utf-8",
    )
    client = httpx.Client(base_url=studio, timeout=30)  # the files are read per request
    index = client.get("/?lang=en").text
    for page in (index, *(client.get(f"/journeys/{k}").text for k in ("leak", "huge", "markup"))):
        assert "hunter2" not in page and "<img" not in page
        assert page.replace(STUDIO_SCRIPT, "").count("<script") == 0  # only the studio's own
    leak = client.get("/journeys/leak?lang=en").text
    assert "leading outside journeys/: refused" in leak
    assert "larger than" in client.get("/journeys/huge?lang=en").text
    assert "&lt;script&gt;" in client.get("/journeys/markup?lang=en").text
