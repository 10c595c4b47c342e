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
    assert (
        "join-group (wecom_group_invite): deferred: quiet hours until 2026-11-03 08:00"
        in "\n".join(night)
    )

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
