"""Why did customer X get, or not get, each message of a journey? Every decision the engine
recorded in the ledger, in words, with times in the customer's own time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.engine.versions import spec_of
from siyu.language.durations import format_duration
from siyu.language.spec import Anchor, JourneySpec
from siyu.storage.models import Customer, Delivery, Enrollment, Journey, ReasonCode, reason_text
from siyu.timezones import is_time_zone
from siyu.timezones import zone as time_zone


def _reason_words(
    code: ReasonCode | None, detail: str | None, channel: str, lang: str = "en"
) -> str:
    """A ledger row's reason in words; a reason without words of its own as written."""
    if code is None:
        return ""
    detail = detail or ""
    words = _REASONS_ZH if lang == "zh" else _REASONS_EN
    found = words.get(code)
    if found is not None:
        return found.format(detail=detail, channel=channel)
    return reason_text(code, detail or None) or ""


# A reason's words: {detail} is the ledger row's detail, {channel} its channel.
_REASONS_EN: dict[str, str] = {
    "exited": "the customer did the exit event (e.g. repurchased) before it was sent",
    "holdout": "the customer is in the holdout group: measured, never messaged",
    "expired": "its window had passed when it came due; a message is never sent late",
    "condition_false": "its `if:` condition did not hold at send time",
    "no_consent": "no '{detail}' consent",
    "suppressed": "the customer opted out of {channel} (or of every channel)",
    "no_address": "no {detail} on file for {channel}",
    "no_date": "the date column {detail} is empty",
    "refused": "the provider says the customer refused ({detail}); {channel} is "
    "suppressed for them from now on",
    "quiet_hours": "quiet hours",
    "fatigue": "fatigue pause after unanswered messages",
    "cap": "frequency cap '{detail}' reached",
    "retry": "the channel failed transiently ({detail})",
    "circuit_open": "{detail}'s circuit breaker is open (too many failures); held, "
    "sent once it closes",
    "render_error": "the template failed: {detail}",
    "bad_customer_data": "the customer's {detail} cannot be used (fix it in the CRM "
    "data); not sent",
    "channel_auth": "{channel}'s provider refused its credentials ({detail}); held, "
    "sent once the secret is fixed",
    "channel_config": "{channel}'s provider refused its configuration ({detail}); held, "
    "sent once it is fixed",
}
_REASONS_ZH: dict[str, str] = {
    "exited": "顾客在发送前已触发退出事件（例如已复购）",
    "holdout": "顾客在对照组：只统计效果，从不发送消息",
    "expired": "到期时已过发送窗口；消息从不延迟补发",
    "condition_false": "发送时 `if:` 条件不成立",
    "no_consent": "没有“{detail}”授权",
    "suppressed": "顾客已退订 {channel}（或全部渠道）",
    "no_address": "{channel} 没有登记该顾客的 {detail}",
    "no_date": "日期字段 {detail} 为空",
    "refused": "服务商表示顾客拒收（{detail}）；此后不再通过 {channel} 向其发送",
    "quiet_hours": "免打扰时段",
    "fatigue": "多条消息未获回应，进入防打扰暂停期",
    "cap": "已达频次上限“{detail}”",
    "retry": "渠道暂时故障（{detail}）",
    "circuit_open": "{detail} 的熔断已打开（失败过多）；暂缓，恢复后发送",
    "render_error": "模板渲染失败：{detail}",
    "bad_customer_data": "顾客的 {detail} 无法使用（请在 CRM 数据中修正）；未发送",
    "channel_auth": "{channel} 的服务商拒绝了凭证（{detail}）；暂缓，密钥修正后发送",
    "channel_config": "{channel} 的服务商拒绝了配置（{detail}）；暂缓，配置修正后发送",
}

# explain's sentences: the words around the values, in each language
_LINES: dict[str, dict[str, str]] = {
    "en": {
        "no customer": "no customer with id {id}",
        "customer": "customer {id} in journey '{journey}' (times in {zone})",
        "never entered": "  never entered: no entry event matched since the journey started, "
        "or the re-entry policy kept them out",
        "entered": "  entered {when} ({key}), version {version}, {status}",
        "exited at": " at {when} ({reason})",
        "goal": "; goal reached {when}",
        "holdout": "; in the holdout",
        "left first": "not sent: the customer left the journey first",
        "not due anchor": "not due yet: {offset} from {anchor}{yearly}",
        "yearly": " (yearly)",
        "not due": "not due yet: due {when}",
        "next tick": "due; it will be decided at the next tick",
        "variant": ", variant {variant}",
        "sent": "sent {when}{variant} (attempt {attempts}, provider id {provider})",
        "pending": "handed to the channel {when}{variant}; waiting for a staff member to "
        "confirm it in WeCom",
        "in doubt": "in doubt since {when}, held (never sent again blind): {detail}",
        "deferred": "deferred: {words} until {when}",
        "sending": "being sent (or interrupted mid-send): it is sent again with the same "
        "idempotency key, never twice",
        "skipped": "skipped {when}: {words}",
        "failed": "failed {when}: {words}",
    },
    "zh": {
        "no customer": "没有 ID 为 {id} 的顾客",
        "customer": "顾客 {id} 在旅程“{journey}”中（时间为 {zone}）",
        "never entered": "  从未进入：旅程开始以来没有匹配的进入事件，或重复进入规则把顾客挡在外面",
        "entered": "  进入于 {when}（{key}），版本 {version}，{status}",
        "exited at": "于 {when}（{reason}）",
        "goal": "；达成目标于 {when}",
        "holdout": "；在对照组",
        "left first": "未发送：顾客已先离开旅程",
        "not due anchor": "尚未到期：相对 {anchor} 偏移 {offset}{yearly}",
        "yearly": "（每年）",
        "not due": "尚未到期：到期时间 {when}",
        "next tick": "已到期；将在下一次运行时决定",
        "variant": "，变体 {variant}",
        "sent": "已发送 {when}{variant}（第 {attempts} 次尝试，服务商消息 ID {provider}）",
        "pending": "已交给渠道 {when}{variant}；等待员工在企业微信中确认",
        "in doubt": "自 {when} 起状态不明，暂缓（绝不盲目重发）：{detail}",
        "deferred": "延后：{words}，直到 {when}",
        "sending": "发送中（或发送时中断）：会以相同的幂等键重发，绝不重复发送",
        "skipped": "跳过 {when}：{words}",
        "failed": "失败 {when}：{words}",
    },
}
_STATUS_ZH = {"active": "进行中", "completed": "已完成", "exited": "已退出"}


def _when(moment: datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else "?"


def explain(
    session: Session, spec: JourneySpec, customer_id: int, now: datetime, lang: str = "en"
) -> list[str]:
    """The customer's timeline in the journey, a line each; `lang` "zh" words it in Chinese."""
    say = _LINES["zh" if lang == "zh" else "en"]
    customer = session.get(Customer, customer_id)
    if customer is None:
        return [say["no customer"].format(id=customer_id)]
    # A zone that does not exist (the customer's messages failed `bad_customer_data`) is not
    # repeated: times are shown in the journey's zone instead.
    name = customer.timezone if is_time_zone(customer.timezone) else spec.timezone
    zone = time_zone(name)
    lines = [say["customer"].format(id=customer_id, journey=spec.journey, zone=zone.key)]
    enrollments = session.scalars(
        select(Enrollment)
        .where(Enrollment.journey_name == spec.journey, Enrollment.customer_id == customer_id)
        .order_by(Enrollment.entered_at)
    ).all()
    if not enrollments:
        lines.append(say["never entered"])
        return lines
    for enrollment in enrollments:
        journey = session.get(Journey, enrollment.journey_id)
        version_spec = (
            spec if journey is None or journey.version == spec.version else spec_of(journey)
        )
        status = enrollment.status
        head = say["entered"].format(
            when=_when(enrollment.entered_at, zone),
            key=enrollment.entry_key,
            version=journey.version if journey else "?",
            status=_STATUS_ZH.get(status, status) if lang == "zh" else status,
        )
        if enrollment.exited_at:
            when = _when(enrollment.exited_at, zone)
            head += say["exited at"].format(when=when, reason=enrollment.exit_reason)
        if enrollment.goal_reached_at:
            head += say["goal"].format(when=_when(enrollment.goal_reached_at, zone))
        if enrollment.holdout:
            head += say["holdout"]
        lines.append(head)
        rows = {
            d.step_id: d
            for d in session.scalars(
                select(Delivery).where(Delivery.enrollment_id == enrollment.id)
            )
        }
        for step in version_spec.steps:
            lines.append(
                f"    {step.id} ({step.send}): "
                f"{_step_line(step, rows.get(step.id), enrollment, zone, now, lang)}"
            )
    return lines


def _step_line(
    step: object,
    row: Delivery | None,
    enrollment: Enrollment,
    zone: ZoneInfo,
    now: datetime,
    lang: str = "en",
) -> str:
    from siyu.language.spec import Step

    assert isinstance(step, Step)
    say = _LINES["zh" if lang == "zh" else "en"]
    if row is None:
        if enrollment.status == "exited":
            return say["left first"]
        if isinstance(step.at, Anchor):
            return say["not due anchor"].format(
                offset=format_duration(step.at.offset),
                anchor=step.at.from_,
                yearly=say["yearly"] if step.at.annual else "",
            )
        due = enrollment.entered_at + step.at
        return say["not due"].format(when=_when(due, zone)) if due > now else say["next tick"]
    channel = row.channel
    variant = say["variant"].format(variant=row.variant) if row.variant else ""
    if row.status == "sent":
        return say["sent"].format(
            when=_when(row.sent_at, zone),
            variant=variant,
            attempts=row.attempts,
            provider=row.provider_message_id or "-",
        )
    if row.status == "pending":
        return say["pending"].format(when=_when(row.updated_at, zone), variant=variant)
    if row.status == "deferred" and row.reason_code == "in_doubt":
        return say["in doubt"].format(
            when=_when(row.updated_at, zone), detail=row.reason_detail or ""
        )
    words = _reason_words(row.reason_code, row.reason_detail, channel, lang)
    if row.status == "deferred":
        return say["deferred"].format(words=words, when=_when(row.next_attempt_at, zone))
    if row.status == "sending":
        return say["sending"]
    verb = "skipped" if row.status == "skipped" else "failed"
    return say[verb].format(when=_when(row.updated_at, zone), words=words)
