"""`siyu studio`'s editor, typed into and clicked in headless Chromium (Playwright driving
Debian's Chromium): a misspelt channel is marked on its line within a second of typing, the
fix and a template change show in the previews, an invalid text is refused with its problems
and the file left as it was, a valid edit is written as typed (comments and layout intact) and
the difference from the last commit follows. Writes come only from the studio's own page
(Host, Origin, token: asked over HTTP), never through a link, and never over a newer file.
A screenshot of each page is kept under the test's tmp_path and /tmp/studio-shots/."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session, sessionmaker

from siyu.language.check_project import check_project
from siyu.project import Project
from siyu.studio.checking import check_text
from siyu.studio.editing import save_journey
from siyu.studio.journey_view import view_of, view_on_disk
from siyu.studio.overview import journey_files
from siyu.studio.pages import journey_parts
from tests.browser import playwright_chromium, screenshot
from tests.conftest import Shop
from tests.project_copy import copy_project
from tests.studio_server import BUYERS, studio_after_first_purchase

TYPO = ("send: service_account", "send: service_acount")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The brand's journeys and templates, committed to a git repository of their own."""
    root = copy_project(tmp_path / "brand", ["journeys", "templates", "channels.yaml"])
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    identity = ["-c", "user.name=studio test", "-c", "user.email=studio@example.com"]
    for command in (["init", "-q"], ["add", "."], [*identity, "commit", "-q", "-m", "brand"]):
        subprocess.run(["git", *command], cwd=root, check=True, timeout=30)
    return root


@pytest.fixture
def studio(project: Path, sessions: sessionmaker[Session], shop: Shop) -> Iterator[str]:
    with studio_after_first_purchase(project, sessions, shop) as base:
        yield base


def _shot(page: Page, tmp_path: Path, name: str) -> None:
    screenshot(page, tmp_path, f"edit-{name}")  # the other studio pages' shots are there too


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def _token(client: httpx.Client, key: str) -> str:
    page = client.get(f"/journeys/{key}").text
    found = re.search(r'<meta name="siyu-token" content="([^"]+)">', page)
    assert found is not None
    return found.group(1)


def test_the_editors_check_is_siyu_validates(project: Path) -> None:
    """A text checked unsaved gets exactly the problems `siyu validate` adds once it is
    written to its file: the loader's (channels.yaml), the content rules' (an SMS template
    without its signature) and a journey name another file uses."""
    journeys = project / "journeys"
    good = (journeys / "first_purchase.yaml").read_text(encoding="utf-8")
    unsigned = "{{ customer.name }}您好，回T退订\n"
    (project / "templates" / "unsigned.j2").write_text(unsigned, encoding="utf-8")
    edits = {
        "first_purchase.yaml": good.replace(*TYPO),
        "birthday.yaml": good.replace("first-purchase-care", "unsigned-care").replace(
            "template: day14_coupon.j2", "template: unsigned.j2"
        ),
        "renewal_reminder.yaml": good,  # a second file named first-purchase-care
    }
    current = Project.find(project)
    baseline = set(check_project(current)[1])
    codes: set[str] = set()
    for name, text in edits.items():
        path = journeys / name
        before = path.read_text(encoding="utf-8")
        unsaved = check_text(current, path, text)
        path.write_text(text, encoding="utf-8")
        try:
            validated = set(check_project(current)[1]) - baseline
        finally:
            path.write_text(before, encoding="utf-8")
        others = {p.resolve() for p in current.journey_files()} - {path.resolve()}
        assert set(unsaved.problems) == {
            p for p in validated if Path(p.file).resolve() not in others
        }, name
        codes |= {p.code for p in unsaved.problems}
    assert codes == {"unknown-channel", "sms-signature", "duplicate-journey"}
    # the index says what the journey's page says: the content rules count there too
    (journeys / "birthday.yaml").write_text(edits["birthday.yaml"], encoding="utf-8")
    listed = {f.key: f for f in journey_files(current, None)}
    assert [p.code for p in listed["birthday"].problems] == ["sms-signature"]


def test_typing_checking_previewing_and_saving_in_a_real_browser(
    studio: str, project: Path, tmp_path: Path
) -> None:
    file = project / "journeys" / "first_purchase.yaml"
    original = file.read_text(encoding="utf-8")
    typo_line = _line_of(original, TYPO[0])
    with playwright_chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{studio}/?lang=en")
        _shot(page, tmp_path, "1-index")
        page.goto(f"{studio}/journeys/first_purchase?lang=en")
        editor = page.locator("#editor")
        assert editor.input_value() == original  # the text as on disk, first newline too
        day7 = page.locator('#previews tr[data-step="day7-content"]')
        expect(day7.first).to_contain_text("(wechat_openid)")
        html = page.content()
        for name in BUYERS:  # the database's customers, masked
            assert name not in html
        assert "顾*0" in html and "1380000" not in html
        _shot(page, tmp_path, "2-journey")
        page.goto(f"{studio}/journeys/first_purchase")  # Chinese first
        expect(page.locator("#status")).to_have_text("可上线")
        _shot(page, tmp_path, "2-journey-zh")
        page.goto(f"{studio}/journeys/first_purchase?lang=en")

        # a misspelt channel, typed (Backspace after service_ac): marked on its line, with
        # the did-you-mean, within a second
        after_ac = original.index(TYPO[0]) + len("send: service_ac") + 1
        editor.evaluate("(e, at) => e.setSelectionRange(at, at)", after_ac)
        started = time.monotonic()
        editor.press("Backspace")
        marked = page.locator(f"#L{typo_line}.problem")
        expect(marked).to_be_visible(timeout=1000)
        assert time.monotonic() - started < 1.0
        assert editor.input_value() == original.replace(*TYPO)
        expect(page.locator("#source")).to_contain_text("did you mean 'service_account'")
        expect(page.locator("#status")).to_have_text("1 problem(s)")
        expect(page.locator('#previews tr[data-step="day7-content"]').first).to_contain_text(
            "unknown channel"
        )
        expect(page.locator("#previews")).to_contain_text("the journey has problems")
        _shot(page, tmp_path, "3-typo-marked")

        # fixed by typing the c again: the mark goes, the preview shows the channel again. (Only
        # the first mark is held to a second, as the issue asks; a check takes about 0.07 s
        # after the 0.3 s pause, but CI's PostgreSQL pass once took longer on its 2 loaded cores:
        # the later steps wait up to Playwright's default 5 s.)
        editor.press("c")
        expect(page.locator("#status")).to_have_text("valid")
        expect(page.locator(".line.problem")).to_have_count(0)
        assert editor.input_value() == original
        # and a template changed: the SMS preview says what the other template says
        fixed = original.replace("template: day14_coupon.j2", "template: winback_sms.j2")
        editor.fill(fixed)
        day14 = page.locator('#previews tr[data-step="day14-repurchase"]').first
        expect(day14).to_contain_text("回归券")  # winback_sms.j2's coupon
        expect(day14).to_contain_text("signature ✓")
        expect(page.locator('#previews tr[data-step="day7-content"]').first).to_contain_text(
            "(wechat_openid)"
        )

        # text that is not a journey yet (half-typed YAML): the picture stays, dimmed
        editor.fill(original.replace("steps:\n", "steps: [\n"))
        expect(page.locator("#picture")).to_have_class("stale")
        expect(page.locator("#status")).to_contain_text("problem(s)")

        # saving what does not validate: refused with the problems, the file as it was
        editor.fill(original.replace(*TYPO))
        expect(marked).to_be_visible()
        page.locator("#save").click()
        expect(page.locator("#save-result")).to_contain_text("not saved: 1 problem")
        assert file.read_text(encoding="utf-8") == original
        _shot(page, tmp_path, "4-save-refused")

        # a valid edit: written as typed, every comment and the layout kept; the diff follows
        edited = original.replace("within: 3d  ", "within: 4d  ").replace(
            "steps:\n", "steps:                            # 四步\n"
        )
        assert edited != original
        editor.fill(edited)
        expect(page.locator("#status")).to_have_text("valid")
        page.locator("#save").click()
        expect(page.locator("#save-result")).to_have_text("saved first_purchase.yaml")
        on_disk = file.read_text(encoding="utf-8")
        assert on_disk == edited
        comments = [line.split("#", 1)[1] for line in original.splitlines() if "#" in line]
        assert all(comment in on_disk for comment in comments)
        diff = page.locator("#diff")
        expect(diff).to_contain_text("+    within: 4d")
        expect(diff).to_contain_text("-    within: 3d")
        _shot(page, tmp_path, "5-saved-diff")

        # the page's loaded version follows the save: a second save is not "changed on disk"
        editor.fill(edited + "\n# 二次保存\n")
        page.locator("#save").click()
        expect(page.locator("#save-result")).to_have_text("saved first_purchase.yaml")
        assert file.read_text(encoding="utf-8").endswith("# 二次保存\n")


def test_writes_come_only_from_the_studios_own_page(studio: str, project: Path) -> None:
    file = project / "journeys" / "first_purchase.yaml"
    original = file.read_text(encoding="utf-8")
    loaded = hashlib.sha256(original.encode("utf-8")).hexdigest()
    edited = original.replace("within: 3d", "within: 4d")
    client = httpx.Client(base_url=studio, timeout=30)
    token = _token(client, "first_purchase")
    body = {"text": edited, "loaded": loaded, "lang": "en"}
    port = studio.rsplit(":", 1)[1]
    refused = [
        client.post("/journeys/first_purchase/save", json=body),  # no token
        client.post("/journeys/first_purchase/save", json=body, headers={"X-Siyu-Token": "guess"}),
        client.post(
            "/journeys/first_purchase/save",
            json=body,
            headers={"X-Siyu-Token": token, "Origin": "http://evil.example"},
        ),
        client.post(  # DNS rebinding: another name resolving to 127.0.0.1
            "/journeys/first_purchase/save",
            json=body,
            headers={"X-Siyu-Token": token, "Host": f"evil.example:{port}"},
        ),
        client.post("/journeys/first_purchase/check", json=body),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403, 403]
    assert "another site" in refused[2].text  # siyu.studio.access, before any route
    assert "unknown host" in refused[3].text
    # a rebound name gets no page either (nor the token in it)
    rebound = client.get("/journeys/first_purchase", headers={"Host": f"evil.example:{port}"})
    assert rebound.status_code == 403 and token not in rebound.text
    assert file.read_text(encoding="utf-8") == original

    own = {"X-Siyu-Token": token, "Origin": studio}
    # a newer file on disk is never overwritten
    file.write_text(original + "# 同事的修改\n", encoding="utf-8")
    newer = client.post("/journeys/first_purchase/save", json=body, headers=own)
    assert newer.status_code == 409 and "changed on disk since you opened it" in newer.text
    assert file.read_text(encoding="utf-8").endswith("# 同事的修改\n")
    file.write_text(original, encoding="utf-8")
    saved = client.post("/journeys/first_purchase/save", json=body, headers=own)
    assert saved.status_code == 200 and saved.json()["ok"]
    assert file.read_text(encoding="utf-8") == edited
    assert not [p for p in file.parent.iterdir() if p.name.startswith(".")]  # no temp left
    invalid = {"text": edited.replace(*TYPO), "loaded": hashlib.sha256(edited.encode()).hexdigest()}
    chinese = client.post("/journeys/first_purchase/save", json=invalid, headers=own)
    assert (
        chinese.status_code == 422 and chinese.json()["message"] == "未保存：1 个问题，文件未改动"
    )
    assert file.read_text(encoding="utf-8") == edited


def test_a_linked_journey_is_never_saved_through(
    studio: str, project: Path, tmp_path: Path
) -> None:
    journeys = project / "journeys"
    outside = tmp_path / "outside.yaml"
    text = (journeys / "first_purchase.yaml").read_text(encoding="utf-8")
    outside.write_text(text.replace("first-purchase-care", "outside-care"), encoding="utf-8")
    (journeys / "outside.yaml").symlink_to(outside)
    (journeys / "inside.yaml").symlink_to(journeys / "birthday.yaml")
    client = httpx.Client(base_url=studio, timeout=30)
    for key, target in (("outside", outside), ("inside", journeys / "birthday.yaml")):
        before = target.read_text(encoding="utf-8")
        page = client.get(f"/journeys/{key}?lang=en").text
        assert "readonly" in page and 'id="save"' not in page
        chinese = client.get(f"/journeys/{key}").text  # the studio's own words in Chinese
        said = chinese.split('id="save-result">')[1].split("</p>")[0]
        assert said.startswith("此文件不能在工作台中保存: ") and "链接" in said, said
        assert "refused" not in said and "does not save" not in said, said
        token = _token(client, key)
        answer = client.post(
            f"/journeys/{key}/save",
            json={
                "text": before + "# x\n",
                "loaded": hashlib.sha256(before.encode()).hexdigest(),
                "lang": "en",
            },
            headers={"X-Siyu-Token": token},
        )
        assert answer.status_code == 403, key
        assert "link" in answer.json()["message"]
        answer = client.post(
            f"/journeys/{key}/save",
            json={
                "text": before,
                "loaded": hashlib.sha256(before.encode()).hexdigest(),
                "lang": "zh",
            },
            headers={"X-Siyu-Token": token},
        )
        assert answer.status_code == 403 and answer.json()["message"].startswith("未保存：")
        assert "链接" in answer.json()["message"] and "link" not in answer.json()["message"]
        assert target.read_text(encoding="utf-8") == before
        assert (journeys / f"{key}.yaml").is_symlink()


def test_without_a_database_or_git_the_page_says_so(project: Path, tmp_path: Path) -> None:
    """No database: the sample customer, said so, and no database file created; each
    variant previewed. Not a git repository: no diff, said so. Windows line ends stay Windows
    line ends on save."""
    shutil.rmtree(project / ".git")
    current = Project.find(project)
    path = project / "journeys" / "first_purchase.yaml"
    missing = tmp_path / "none" / "siyu.db"
    view = view_on_disk(current, path, f"sqlite:///{missing}")
    assert view.previews is not None and view.previews.source == "no-database"
    assert {m.preview.who for m in view.previews.messages} == {"sample data"}
    sms = next(m for m in view.previews.messages if m.step.send == "sms")
    assert sms.sms and sms.sms_parts == 1 and not sms.checks
    assert view.diff == (None, "the project is not a git repository")
    assert "项目不是 git 仓库" in str(journey_parts(view, "zh")["diff"])
    assert "not a git repository" in str(journey_parts(view, "en")["diff"])
    assert not missing.parent.exists()

    # an A/B test on the SMS step: one preview per variant, each its own template's, checked
    # for the signature and opt-out (siyu validate's rules check only the step's template)
    (project / "templates" / "unsigned.j2").write_text("{{ customer.name }}您好\n", "utf-8")
    text = path.read_text(encoding="utf-8")
    ab = text.replace(
        "    template: day14_coupon.j2",
        "    template: day14_coupon.j2\n"
        "    variants: [{id: coupon}, {id: bare, template: unsigned.j2}]",
    )
    assert ab != text
    previews = view_of(current, path, ab, None).previews
    assert previews is not None
    by_variant = {m.variant: m for m in previews.messages if m.step.id == "day14-repurchase"}
    assert by_variant["coupon"].preview.body is not None and not by_variant["coupon"].checks
    assert {p.code for p in by_variant["bare"].checks} == {"sms-signature", "sms-opt-out"}

    path.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
    loaded = hashlib.sha256(path.read_bytes()).hexdigest()
    saved = save_journey(current, path, text.replace("within: 3d", "within: 4d"), loaded)
    assert saved.ok, saved
    assert path.read_bytes().count(b"\r\n") == text.count("\n")
