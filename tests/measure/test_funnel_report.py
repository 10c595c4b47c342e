"""The funnel and the HTML report from a real run: counts per step and variant, clicks and
goals, and a page that a real headless Chromium renders with its charts."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick
from siyu.metrics.funnel import build_funnel
from siyu.metrics.results import experiment_results
from siyu.reports.html_report import render_report, report_body
from siyu.storage.models import Delivery, Enrollment, Event
from tests.browser import run_chromium
from tests.conftest import Shop, local
from tests.journey_files import write_journey
from tests.recording_channel import RecordingChannel

JOURNEY = """\
journey: measured
quiet_hours: null
holdout: 30%
entry: {event: order_paid, where: order_seq = 1, lookback: 1d}
goal: {event: order_paid, where: order_seq >= 2, within: 30d}
steps:
  - id: hello
    send: sms
    template: hello.j2
    variants: [{id: a, template: a.j2}, {id: b, template: b.j2}]
  - {id: later, at: 2d, send: wecom, template: hello.j2}
"""


def run_journey(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> tuple[object, list[int]]:
    spec = write_journey(tmp_path, channels, JOURNEY)
    ctx = EngineContext(sessions, tmp_path / "templates", dict(channels))  # type: ignore[arg-type]
    customers = [shop.customer(f"客户{i}") for i in range(60)]
    customers.append(shop.customer("无手机", identities=("wecom_external_userid",)))
    for customer in customers:
        shop.order(customer, local(0, 9), seq=1)
    for day in range(4):
        run_tick(ctx, spec, local(day, 10))
    # the first 20 customers buy again on day 5; five of them clicked a link of `hello`
    for customer in customers[:20]:
        shop.order(customer, local(5, 12), seq=2)
    with sessions() as session, session.begin():
        for customer in customers[:5]:
            session.add(
                Event(
                    customer_id=customer,
                    name="link_clicked",
                    occurred_at=local(1, 9),
                    properties={"journey": "measured", "step": "hello", "variant": None},
                )
            )
    run_tick(ctx, spec, local(6, 10))
    return spec, customers


def test_funnel_counts_per_step_variant_and_day(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    spec, customers = run_journey(tmp_path, sessions, shop, channels)
    with sessions() as session:
        funnel = build_funnel(session, spec)  # type: ignore[arg-type]
        experiments = experiment_results(session, spec)  # type: ignore[arg-type]
    assert funnel.enrolled == 61
    hello = funnel.steps[0]
    held = hello.total.skipped["holdout"]
    assert held == funnel.holdout > 0
    assert hello.total.due == 61
    assert hello.total.skipped["no_address:mobile"] <= 1  # the customer without a mobile
    assert hello.total.delivered == len(channels["sms"].messages)
    assert hello.total.sent == hello.total.delivered  # the recording channel accepts all
    assert sum(s.delivered for s in hello.variants.values()) == hello.total.delivered
    assert set(hello.variants) == {"a", "b"}
    clicked_and_sent = hello.total.clicked
    assert 0 < clicked_and_sent <= 5
    assert funnel.goal_reached == 20
    assert funnel.goal_treated + funnel.goal_holdout == 20
    # sends per day by channel add up to what was delivered
    assert sum(d.sent_by_channel["sms"] for d in funnel.days) == hello.total.delivered
    assert sum(d.sent_by_step["hello"] for d in funnel.days) == hello.total.delivered
    later = funnel.steps[1]
    assert [d.day.isoformat() for d in funnel.days if d.sent_by_step["later"]] == [
        "2026-11-04"
    ]  # 2 d after entry
    assert later.total.delivered == sum(d.sent_by_step["later"] for d in funnel.days) > 0
    with sessions() as session:  # goal after delivery, counted the slow way
        pairs = session.execute(
            select(Delivery.step_id, Delivery.sent_at, Enrollment.goal_reached_at)
            .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
            .where(Delivery.status == "sent")
        ).all()
    for step in funnel.steps:
        expected = sum(1 for s, sent, won in pairs if s == step.step_id and won and won >= sent)
        assert step.total.goal == expected > 0
    names = [e.name for e in experiments]
    assert names == ["treated vs holdout", "hello: b vs a"]
    assert all(e.comparison.warning for e in experiments)  # 61 customers prove nothing


def test_the_report_is_self_contained_and_renders_in_headless_chromium(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    spec, _ = run_journey(tmp_path, sessions, shop, channels)
    with sessions() as session:
        page = render_report(session, spec, local(7))  # type: ignore[arg-type]
    assert not re.search(r"""(src|href)=["']https?://""", page), "the page loads nothing"
    assert "<script" not in page
    report = tmp_path / "report.html"
    report.write_text(page, encoding="utf-8")

    profile = tmp_path / "chromium-profile"
    screenshot = tmp_path / "report.png"
    dom = run_chromium(profile, "--dump-dom", report.as_uri())
    # the browser parsed the page into the elements the charts and tables are made of
    assert '<main id="report">' in dom
    assert dom.count("<svg") >= 4  # funnel per step, daily sends, conversion, experiments
    assert 'class="bar"' in dom and 'class="series"' in dom and 'class="ci"' in dom
    assert "too small to conclude" in dom
    run_chromium(profile, f"--screenshot={screenshot}", "--window-size=1000,2400", report.as_uri())
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000  # a drawn page, not a blank one


def test_the_reports_sections_in_chinese_for_the_studio(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    """report_body(lang="zh"), as the studio's Chinese pages show it: the same figures under
    Chinese headings, column headers and verdicts; English stays the default."""
    spec, _ = run_journey(tmp_path, sessions, shop, channels)
    with sessions() as session:
        zh = report_body(session, spec, "副标题", lang="zh")  # type: ignore[arg-type]
        en = report_body(session, spec, "subtitle")  # type: ignore[arg-type]
    for heading in ("漏斗", "各渠道每日发送", "转化趋势", "实验"):
        assert f"<h2>{heading}</h2>" in zh
    assert "<h2>Funnel</h2>" in en and "<h2>Experiments</h2>" in en
    assert not re.search(r"<h2[^>]*>[A-Za-z]", zh)
    header = "<tr><th>步骤</th><th>变体</th><th>应发</th><th>已发送</th><th>已送达</th>"
    assert header + "<th>失败</th><th>跳过</th><th>延后</th><th>点击</th><th>达成目标</th>" in zh
    assert "<th>对比</th><th>对照</th><th>实验</th><th>差值</th><th>95% 置信区间</th>" in zh
    assert "<td>实验组 vs 对照组</td>" in zh and "<td>hello: b vs a</td>" in zh
    assert "样本太小，无法下结论" in zh and "too small to conclude" not in zh
    assert re.search(r"<p>进入旅程 \d+ 人（对照组 \d+ 人）", zh)
    for english in ("<th>step</th>", "<th>verdict</th>", "enrolled (", "<td>all</td>"):
        assert english in en and english not in zh, english
    figures = re.compile(r"<td>(\d+)</td>")
    assert figures.findall(zh) == figures.findall(en)  # the same numbers in both
