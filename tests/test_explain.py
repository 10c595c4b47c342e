"""`siyu explain`: every decision about one customer, in words."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick
from siyu.reports.explain import explain
from tests.conftest import Shop, canonical_journey, local
from tests.recording_channel import RecordingChannel


def test_explain_tells_each_step_story(
    ctx: EngineContext,
    shop: Shop,
    sessions: sessionmaker[Session],
    channels: dict[str, RecordingChannel],
) -> None:
    spec = canonical_journey(channels)
    buyer = shop.customer("周杰", identities=("mobile", "wecom_external_userid"))
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 22), seq=1)  # 22:00: quiet hours
    run_tick(ctx, spec, local(0, 22.5))
    with sessions() as session:
        night = explain(session, spec, buyer, local(0, 22.5))
        night_zh = explain(session, spec, buyer, local(0, 22.5), lang="zh")
    assert (
        "join-group (wecom_group_invite): deferred: quiet hours until 2026-11-03 08:00"
        in "\n".join(night)
    )
    assert "join-group (wecom_group_invite): 延后：免打扰时段，直到 2026-11-03 08:00" in night_zh[2]

    for day in range(1, 9):
        run_tick(ctx, spec, local(day, 11))
    shop.order(buyer, local(9, 15), seq=2)  # repurchase on day 9
    run_tick(ctx, spec, local(9, 16))
    with sessions() as session:
        text = "\n".join(explain(session, spec, buyer, local(9, 16)))
    assert "exited at 2026-11-11 15:00 (exit_when); goal reached 2026-11-11 15:00" in text
    assert "join-group (wecom_group_invite): sent 2026-11-03 11:00" in text
    assert "day7-content (service_account): skipped" in text and "no wechat_openid" in text
    assert "day14-repurchase (sms): not sent: the customer left the journey first" in text
    with sessions() as session:
        assert explain(session, spec, 999999, local(9))[0] == "no customer with id 999999"
        assert explain(session, spec, 999999, local(9), "zh")[0] == "没有 ID 为 999999 的顾客"


def test_explain_in_chinese_tells_the_same_story_in_chinese_words(
    ctx: EngineContext,
    shop: Shop,
    sessions: sessionmaker[Session],
    channels: dict[str, RecordingChannel],
) -> None:
    """The lines of `siyu explain` in the studio's Chinese: every line and reason in Chinese,
    the values (times, ids, step names) as in English."""
    spec = canonical_journey(channels)
    buyer = shop.customer("周杰", identities=("mobile", "wecom_external_userid"))
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 13), seq=1)
    for day in range(1, 9):
        run_tick(ctx, spec, local(day, 11))
    shop.order(buyer, local(9, 15), seq=2)  # repurchase on day 9
    run_tick(ctx, spec, local(9, 16))
    with sessions() as session:
        lines = explain(session, spec, buyer, local(9, 16), lang="zh")
    text = "\n".join(lines)
    assert lines[0] == f"顾客 {buyer} 在旅程“{spec.journey}”中（时间为 Asia/Shanghai）"
    assert "，已退出于 2026-11-11 15:00（exit_when）；达成目标于 2026-11-11 15:00" in text
    assert (
        "join-group (wecom_group_invite): 已发送 2026-11-03 11:00（第 1 次尝试，服务商消息 ID "
        in text
    )
    assert "day7-content (service_account): 跳过 " in text
    assert "service_account 没有登记该顾客的 wechat_openid" in text
    assert "day14-repurchase (sms): 未发送：顾客已先离开旅程" in text
    for english in ("entered", "sent ", "skipped", "not sent", "attempt", "no wechat_openid"):
        assert english not in text, english
