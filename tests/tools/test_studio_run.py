"""`siyu studio`: a customer's story (looked up by id, external id or masked mobile, every
personal field masked), the token it asks for when bound to another address than loopback,
the Host and Origin checks, and a backtest run from a journey's page, in headless Chromium
driven by Playwright. The studio is the real command, served on a free port."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick
from siyu.project import Project
from siyu.storage.models import ChannelIdentity, Customer
from siyu.studio.backtest import Backtest, Backtests
from siyu.studio.backtest_page import backtest_page
from siyu.studio.story import _masked
from tests.browser import browser_page, screenshot
from tests.conftest import Shop, local
from tests.project_copy import copy_project
from tests.recording_channel import recording_channels
from tests.studio_server import running_studio

MOBILES = ("13812345678", "13899995678", "13911112222")  # the first two mask alike
NAMES = ("王小明", "李晓红", "张伟国")
EXTERNAL = "CRM0000042"


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The brand's project, committed in a git repository."""
    root = copy_project(tmp_path / "brand", ["journeys", "templates", "channels.yaml"])
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "the brand's journeys")
    return root


def _edit_since_the_commit(root: Path) -> None:
    """The first-purchase journey's file without its join-group step, not committed."""
    path = root / "journeys" / "first_purchase.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("  - id: join-group")
    path.write_text(text[:start] + text[text.index("  - id: day3-care") :], encoding="utf-8")


@pytest.fixture
def people(project: Path, sessions: sessionmaker[Session], shop: Shop) -> list[int]:
    """Three customers who entered the first-purchase journey weeks ago, with known personal
    data; four first buyers of the last days, for the backtest; then the journey's file
    edited since its commit."""
    spec = Project.find(project).journey("first-purchase-care")
    ids = [
        shop.customer(name, identities=("mobile", "wecom_external_userid", "email"))
        for name in NAMES
    ]
    with sessions() as session, session.begin():
        for customer, mobile in zip(ids, MOBILES, strict=True):
            session.execute(
                update(ChannelIdentity)
                .where(ChannelIdentity.customer_id == customer, ChannelIdentity.kind == "mobile")
                .values(value=mobile)
            )
        session.execute(update(Customer).where(Customer.id == ids[0]).values(external_id=EXTERNAL))
    for buyer in ids:
        shop.order(buyer, local(0, 13), seq=1)
    ctx = EngineContext(sessions, project / "templates", dict(recording_channels()))  # type: ignore[arg-type]
    for day in (0, 1, 2):
        run_tick(ctx, spec, local(day, 12))
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)  # 10:00 +8
    for n in range(4):
        buyer = shop.customer(f"新客{n}")
        shop.order(buyer, today - timedelta(days=2), seq=1)
    _edit_since_the_commit(project)
    return ids


@pytest.fixture
def studio(project: Path, sessions: sessionmaker[Session], people: list[int]) -> Iterator[str]:
    with running_studio(project, str(sessions.kw["bind"].url)) as (base, _):
        yield base


def _personal(sessions: sessionmaker[Session]) -> list[str]:
    """Every name and channel identity in the database, as stored."""
    with sessions() as session:
        names = list(session.scalars(select(Customer.name)))
        values = list(session.scalars(select(ChannelIdentity.value)))
    return [*names, *values, EXTERNAL]


def test_a_customers_story_by_id_external_id_and_masked_mobile_all_masked(
    studio: str, people: list[int], sessions: sessionmaker[Session]
) -> None:
    client = httpx.Client(base_url=studio, timeout=60)
    personal = _personal(sessions)
    pages = {
        "id": client.get("/customers", params={"q": str(people[2]), "lang": "en"}),
        "external id": client.get("/customers", params={"q": EXTERNAL, "lang": "en"}),
        "masked mobile": client.get("/customers", params={"q": "139****2222", "lang": "en"}),
        "several": client.get("/customers", params={"q": "138****5678", "lang": "en"}),
        "chosen": client.get("/customers", params={"id": str(people[1]), "lang": "en"}),
    }
    for what, page in pages.items():
        assert page.status_code == 200, what
        for value in personal:
            assert value not in page.text, (what, value)
    story = pages["external id"].text
    assert f"customer {people[0]}: 王*明" in story and "CRM***042" in story
    assert "138****5678" in story and "wm0***" in story and "c***@example.com" in story
    timeline = story.split('class="source timeline">')[1].split("</pre>")[0]
    assert "first-purchase-care" in story and "join-group (wecom_group_invite): sent" in timeline
    assert f"customer {people[2]}: 张*国" in pages["masked mobile"].text
    assert f"customer {people[2]}: 张*国" in pages["id"].text
    candidates = pages["several"].text.split('id="candidates"')[1].split("</ul>")[0]
    assert f"/customers?id={people[0]}" in candidates and f"/customers?id={people[1]}" in candidates
    assert "王*明" in candidates and "李*红" in candidates and "张*国" not in candidates
    assert f"customer {people[1]}: 李*红" in pages["chosen"].text


def test_a_customers_story_on_the_chinese_page_has_a_chinese_timeline_still_masked(
    studio: str, people: list[int], sessions: sessionmaker[Session]
) -> None:
    page = httpx.get(studio + "/customers", params={"q": EXTERNAL}, timeout=60)  # zh first
    assert page.status_code == 200
    for value in _personal(sessions):
        assert value not in page.text, value
    assert f"顾客 {people[0]}: 王*明" in page.text and "CRM***042" in page.text
    timeline = page.text.split('class="source timeline">')[1].split("</pre>")[0]
    lines = timeline.splitlines()
    assert lines[0] == f"顾客 {people[0]} 在旅程“first-purchase-care”中（时间为 Asia/Shanghai）"
    assert lines[1].startswith("  进入于 ") and "，版本 1，" in lines[1]
    sent = next(line for line in lines if line.startswith("    join-group "))
    assert re.fullmatch(
        r"    join-group \(wecom_group_invite\): 已发送 \d{4}-\d\d-\d\d \d\d:\d\d"
        r"（第 1 次尝试，服务商消息 ID [^）]+）",
        sent,
    ), sent
    for english in ("entered ", ": sent ", "not due yet", "attempt ", "provider id"):
        assert english not in timeline, english
    # a value inside a Chinese sentence, with no space around it, is masked too
    line = f"失败：模板渲染失败：{NAMES[0]}您好（服务商消息 ID {MOBILES[0]}）{EXTERNAL}。"
    masked = _masked(line, [("name", NAMES[0]), ("external_id", EXTERNAL)])
    assert masked == "失败：模板渲染失败：王*明您好（服务商消息 ID 138****5678）CRM***042。"


def test_an_unknown_customer_is_said_with_what_was_typed_escaped(studio: str) -> None:
    typed = "<b>CRM9</b>"
    page = httpx.get(studio + "/customers", params={"q": typed, "lang": "en"}, timeout=30)
    assert page.status_code == 404
    assert "no customer found for “&lt;b&gt;CRM9&lt;/b&gt;”" in page.text and "<b>" not in page.text
    nobody = httpx.get(studio + "/customers", params={"q": "150****0000", "lang": "en"}, timeout=30)
    assert "no customer found" in nobody.text
    chinese = httpx.get(studio + "/customers", params={"q": typed}, timeout=30).text
    assert "没有找到顾客 “&lt;b&gt;CRM9&lt;/b&gt;”" in chinese and ">查找<" in chinese  # zh first


def test_no_database_is_created_by_looking_a_customer_up(project: Path, tmp_path: Path) -> None:
    missing = tmp_path / "none" / "siyu.db"
    with running_studio(project, f"sqlite:///{missing}") as (base, _):
        page = httpx.get(base + "/customers", params={"q": "42", "lang": "en"}, timeout=30)
        assert page.status_code == 200 and "no database" in page.text
    assert not missing.parent.exists()


def test_on_loopback_only_its_own_host_names_are_served_and_writes_only_from_itself(
    studio: str,
) -> None:
    port = studio.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", f"10.0.0.1:{port}"):
        refused = httpx.get(studio + "/", headers={"Host": host}, timeout=30)
        assert refused.status_code == 403 and "unknown host" in refused.text, host
    assert httpx.get(f"http://localhost:{port}/", timeout=30).status_code == 200
    form = {"days": "1"}
    other = httpx.post(
        studio + "/journeys/first_purchase/backtest",
        data=form,
        headers={"Origin": "http://evil.example"},
        timeout=30,
    )
    assert other.status_code == 403 and "other origin" in other.text
    bad = httpx.post(studio + "/journeys/first_purchase/backtest", data={"days": "x"}, timeout=30)
    assert bad.status_code == 400


def test_bound_elsewhere_every_request_carries_the_token(project: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none' / 'siyu.db'}"
    env = {"SIYU_STUDIO_TOKEN": ""}  # unset: a new token, printed once
    with running_studio(project, url, "--host", "0.0.0.0", env=env) as (base, process):
        assert process.stdout is not None
        printed = process.stdout.readline()
        token = re.search(r"\?token=([A-Za-z0-9_-]{20,})", printed)
        assert token, printed
        assert httpx.get(base + "/", timeout=30).status_code == 401
        assert httpx.get(base + "/?token=wrong", timeout=30).status_code == 401
        port = base.rsplit(":", 1)[1]
        wrong = httpx.Client(base_url=base, cookies={f"siyu_studio_{port}": "x" * 32})
        assert wrong.get("/", timeout=30).status_code == 401
        client = httpx.Client(base_url=base, timeout=30)
        first = client.get(f"/journeys/first_purchase?lang=en&token={token.group(1)}")
        assert first.status_code == 303
        assert first.headers["location"] == "/journeys/first_purchase?lang=en"
        cookie = first.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert client.get("/").status_code == 200  # the cookie, from now on
        assert client.get("/journeys/first_purchase?lang=en").status_code == 200
        with browser_page() as page:
            page.goto(base + "/?lang=en")
            assert "401" in page.content()
            screenshot(page, tmp_path, "run-401-without-token")


def test_a_backtest_from_the_journeys_page_in_a_real_browser(
    studio: str, tmp_path: Path, people: list[int]
) -> None:
    """Looked up a customer by typing in the header's form, then the journey's page: its file
    now (no join-group) against its last commit (with it), over the last 3 days."""
    with browser_page() as page:
        page.goto(studio + "/?lang=en")
        screenshot(page, tmp_path, "run-index-with-search")
        page.fill("#find-customer input[name=q]", "138****5678")
        page.press("#find-customer input[name=q]", "Enter")
        page.wait_for_selector("#candidates")
        screenshot(page, tmp_path, "run-customer-candidates")
        page.click(f"#candidates a[href*='id={people[0]}']")
        page.wait_for_selector("#story")
        assert "王*明" in page.content() and "王小明" not in page.content()
        screenshot(page, tmp_path, "run-customer-story")

        page.goto(studio + "/journeys/first_purchase?lang=en")
        screenshot(page, tmp_path, "run-journey-backtest-form")
        # a full-page screenshot of a page this long leaves headless Chromium's clicks
        # landing nowhere (the click sent no request; requestSubmit() did): load it again
        page.goto(studio + "/journeys/first_purchase?lang=en")
        page.fill("#backtest input[name=days]", "3")
        page.click("#run-backtest")
        page.wait_for_selector("#state")
        seen_running = page.query_selector("progress#progress") is not None
        # the page reloads itself each second until the backtest is done
        page.wait_for_selector("progress#progress:not([value='0']), #compare", timeout=180_000)
        if page.query_selector("progress#progress") is not None:
            screenshot(page, tmp_path, "run-backtest-progress")
        page.wait_for_selector("#compare", timeout=180_000)
        screenshot(page, tmp_path, "run-backtest-done")
        html = page.content()
    assert seen_running, "the first page after the click shows the backtest running"
    assert "backtest done" in html
    now = _funnel(html, "a-funnel")
    committed = _funnel(html, "b-funnel")
    assert "join-group" not in now and committed["join-group"]["sent"] == 4
    assert now["day3-care"]["sent"] == committed["day3-care"]["sent"] == 4
    assert "A: the file now" in html and "B: last committed version" in html


def test_a_backtest_replays_the_editors_unsaved_text_against_the_saved_file(
    studio: str, project: Path, tmp_path: Path, people: list[int]
) -> None:
    """Typed, not saved: the day-3 step renamed in the editor. The backtest replays the
    editor's text beside the file on disk, and the file stays as it was."""
    file = project / "journeys" / "first_purchase.yaml"
    saved = file.read_text(encoding="utf-8")
    with browser_page() as page:
        page.goto(studio + "/journeys/first_purchase?lang=en")
        page.fill("#editor", saved.replace("id: day3-care", "id: day3-care-v2"))
        page.fill("#backtest input[name=days]", "3")
        page.click("#run-backtest")
        page.wait_for_selector("#compare", timeout=180_000)
        screenshot(page, tmp_path, "run-backtest-of-the-editors-text")
        html = page.content()
    assert "A: the editor's text (not saved)" in html  # as the browser's DOM serialises it
    assert "B: the file now" in html
    edited, on_disk = _funnel(html, "a-funnel"), _funnel(html, "b-funnel")
    assert "day3-care" not in edited and edited["day3-care-v2"]["sent"] == 4
    assert "day3-care-v2" not in on_disk and on_disk["day3-care"]["sent"] == 4
    assert file.read_text(encoding="utf-8") == saved


def test_an_editors_text_with_problems_is_not_replayed(project: Path, database_url: str) -> None:
    current = Project.find(project)
    path = project / "journeys" / "first_purchase.yaml"
    typo = path.read_text(encoding="utf-8").replace("send: service_account", "send: sms_x")
    run = _finished(Backtests(database_url).start(current, path.stem, path, 1, typo))
    assert run.state == "failed" and run.error is not None
    assert run.error.startswith("the editor's text: line 38: step 'day7-content': unknown")


def test_a_finished_backtest_shows_its_reports_in_the_pages_language(
    studio: str, people: list[int]
) -> None:
    """The reports are rendered once, when the backtest finishes; its page in Chinese and in
    English then shows each in that language."""
    started = httpx.post(
        studio + "/journeys/first_purchase/backtest?lang=zh", data={"days": "3"}, timeout=30
    )
    assert started.status_code == 303
    done = studio + started.headers["location"].split("?")[0]
    deadline = time.monotonic() + 180
    while 'id="compare"' not in (zh := httpx.get(done, timeout=30).text):
        assert "回测失败" not in zh and time.monotonic() < deadline, zh
        time.sleep(0.5)
    en = httpx.get(done, params={"lang": "en"}, timeout=30).text
    chinese = ("漏斗", "各渠道每日发送", "转化趋势", "实验")
    english = ("Funnel", "Daily sends by channel", "Conversion over time", "Experiments")
    for heading in chinese:
        assert zh.count(f"<h2>{heading}</h2>") == 2 and f"<h2>{heading}</h2>" not in en
    for heading in english:
        assert en.count(f"<h2>{heading}</h2>") == 2 and f"<h2>{heading}</h2>" not in zh
    assert "<tr><th>步骤</th><th>变体</th><th>应发</th><th>已发送</th>" in zh
    assert "<tr><th>日期</th><th>join-group</th>" in zh  # sent per day and step
    assert "此旅程没有对照组或变体（或没有设定目标）" in zh  # its experiments: none
    assert not re.search(r"<h2[^>]*>[A-Za-z]", zh) and "<th>step</th>" not in zh
    assert "回测 " in zh and "没有真正发送任何消息" in zh and "no message really sent" in en
    assert "回测完成" in zh and "A: 当前文件" in zh and "B: 上次提交的版本" in zh
    for version in ("a-funnel", "b-funnel"):  # the same figures under either language's words
        words = _funnel(en, version)
        zh_words = _funnel(zh, version, everyone="全部")
        assert words and {step: list(row.values()) for step, row in words.items()} == {
            step: list(row.values()) for step, row in zh_words.items()
        }
    assert _funnel(zh, "b-funnel", everyone="全部")["join-group"]["已发送"] == 4


def _funnel(html: str, table: str, everyone: str = "all") -> dict[str, dict[str, int]]:
    """A report's funnel table: step → column → count, the rows of every variant (`everyone`:
    the variant column's word for all of them)."""
    rows = html.split(f'id="{table}">')[1].split("</table>")[0].split("<tr>")[1:]
    head = re.findall(r"<th>(.*?)</th>", rows[0])
    found: dict[str, dict[str, int]] = {}
    for row in rows[1:]:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        if len(cells) == len(head) and cells[1] == everyone:
            found[cells[0]] = {h: int(c) for h, c in zip(head[2:], cells[2:], strict=True)}
    return found


def test_one_backtest_at_a_time_per_journey_and_no_scratch_copy_left_behind(
    project: Path, sessions: sessionmaker[Session], people: list[int], tmp_path: Path
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    url = str(sessions.kw["bind"].url)
    with running_studio(project, url, env={"TMPDIR": str(scratch)}) as (base, _):
        start = base + "/journeys/first_purchase/backtest?lang=en"
        first = httpx.post(start, data={"days": "60"}, timeout=30)
        again = httpx.post(start, data={"days": "60"}, timeout=30)
        assert first.status_code == again.status_code == 303
        assert first.headers["location"] == again.headers["location"]
        page = httpx.get(base + first.headers["location"], timeout=30).text
        assert "backtest running" in page and '<meta http-equiv="refresh" content="1">' in page
    assert list(scratch.iterdir()) == []  # stopped with the studio, its copy removed


def _finished(run: Backtest) -> Backtest:
    deadline = time.monotonic() + 60
    while run.state == "running":
        assert time.monotonic() < deadline, "the backtest did not finish"
        time.sleep(0.1)
    return run


def test_a_backtest_that_cannot_run_says_why_in_one_line(
    project: Path, database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    current = Project.find(project)
    journeys = project / "journeys"
    good = journeys / "first_purchase.yaml"
    typo = journeys / "typo.yaml"
    typo.write_text(
        good.read_text(encoding="utf-8")
        .replace("journey: first-purchase-care", "journey: typo-care")
        .replace("send: service_account", "send: service_acount"),
        encoding="utf-8",
    )
    missing = tmp_path / "none" / "siyu.db"
    cases = [
        (Backtests(database_url), typo, "typo.yaml: line 38: step 'day7-content': unknown"),
        (Backtests(f"sqlite:///{missing}"), good, "no database at "),
        (Backtests(database_url), good, "no customers in the database"),  # tables, no one
    ]
    chinese = [
        "typo.yaml：第 38 行：step 'day7-content': unknown",
        "没有数据库：",
        "数据库里没有顾客",
    ]
    for (backtests, path, said), zh in zip(cases, chinese, strict=True):
        run = _finished(backtests.start(current, path.stem, path, 1))
        assert run.state == "failed" and run.error is not None
        assert run.error.startswith(said) and "\n" not in run.error, run.error
        html = backtest_page(run, "en")
        assert f'<p class="bad" id="error">{escape(run.error)}</p>' in html
        shown = backtest_page(run, "zh").split('id="error">')[1].split("</p>")[0]
        assert shown.startswith(escape(zh)), shown  # the validator's problem as it is
    assert not missing.parent.exists()
