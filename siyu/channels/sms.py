"""Aliyun SMS (dysmsapi 2017-05-25): ``SendSms`` / ``SendBatchSms``, RPC v1 signed.

Aliyun documents SMS sends as NOT idempotent ("不支持幂等"). Every SendSms carries
``OutId`` = the idempotency key, and before sending again after a lost answer (timeout, 5xx,
isp.SYSTEM_ERROR) we look the OutId up with ``QuerySendDetails``; with ``precheck: always`` (the
default) we also look it up before the first send, so a rerun after a crash cannot send twice.

``batch_api: true`` uses SendBatchSms (≤100 numbers, one TemplateCode, per-number params). It has
no OutId, so a lost answer is reconciled by phone + TemplateCode + send time, which is weaker.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from siyu.channels import aliyun_signature
from siyu.channels.adapter import BatchChannel, Runtime, Unit, group_by, held_receipts
from siyu.channels.backoff import retrying
from siyu.channels.base import NOT_FOUND, UNVERIFIED, OutboundMessage, Receipt
from siyu.channels.config import SmsConfig
from siyu.channels.errors import Action, AmbiguousFault, ApiFault, ProviderFault, classify_sms
from siyu.channels.secrets import Secret

SHANGHAI = ZoneInfo("Asia/Shanghai")
MAX_BATCH_NUMBERS = 100
PAGE_SIZE = 50  # QuerySendDetails maximum
SEND_STATUS_FAILED = 2  # 1 waiting for receipt, 2 failed, 3 delivered
# An earlier attempt's message is looked for this many days back (one query per number and
# day; Aliyun keeps 30). A journey that ticks at least daily finds its own within two.
LOOKBACK_DAYS = 7


class SmsChannel(BatchChannel):
    identity_kind = "mobile"
    max_batch = MAX_BATCH_NUMBERS
    idempotent = False
    looks_up_earlier_attempts = True  # QuerySendDetails: by OutId, or phone + template + time

    def __init__(
        self, name: str, runtime: Runtime, config: SmsConfig, access_key_id: str, secret: Secret
    ) -> None:
        super().__init__(name, runtime)
        self.config = config
        self.access_key_id = access_key_id
        self._secret = secret
        self._first_try: dict[int, float] = {}

    # --- the Aliyun seam ------------------------------------------------------------------------
    def rpc(
        self, action: str, params: dict[str, str], *, rate_limited: bool = True
    ) -> dict[str, Any]:
        body = aliyun_signature.signed_form(
            action,
            params,
            access_key_id=self.access_key_id,
            access_key_secret=self._secret.reveal(),
            region_id=self.config.region_id,
        )
        # The signed parameters go in a form body, as Aliyun's RPC style allows for POST.
        resp = self.rt.http.request(
            "POST",
            "/",
            content=body.encode("ascii"),
            headers={"content-type": "application/x-www-form-urlencoded"},
            rate_limited=rate_limited,
        )
        return _parse(resp)

    def _template_code(self, m: OutboundMessage) -> str:
        return str(m.params.get("template_code") or self.config.template_code)

    def _sign_name(self, m: OutboundMessage) -> str:
        return str(m.params.get("sign_name") or self.config.sign_name)

    def _template_param(self, m: OutboundMessage) -> dict[str, str]:
        name = str(m.params.get("param_name") or self.config.param_name)
        return {name: m.body}

    # --- sending --------------------------------------------------------------------------------
    def plan(self, messages: Sequence[OutboundMessage]) -> list[Unit]:
        if not self.config.batch_api:
            return [[m] for m in messages]
        return group_by(
            messages, lambda m: (self._template_code(m), self._sign_name(m)), MAX_BATCH_NUMBERS
        )

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        receipts: list[Receipt] = []
        todo = list(messages)
        if self.config.precheck == "always" and not self.config.batch_api:
            todo = []
            for i, m in enumerate(messages):
                if m.in_doubt_since is not None:
                    todo.append(m)  # looked up over its whole doubt in BatchChannel.send_batch
                    continue
                try:
                    found = retrying(
                        partial(self.lookup_out_id, m),
                        self.rt.policy,
                        sleep=self.rt.sleep,
                        rng=self.rt.rng,
                    )
                except ProviderFault as fault:
                    if fault.action in (Action.CONFIG, Action.REFRESH):
                        # The key itself is refused: nothing more can be sent or looked up;
                        # hold the rest until an operator fixes it (not counted as attempts).
                        return receipts + held_receipts([*todo, *messages[i:]], fault)
                    # Cannot tell whether it went out before: defer, never send blind.
                    receipts.append(
                        Receipt(
                            m.idempotency_key,
                            "retry",
                            code=UNVERIFIED,
                            detail=f"OutId lookup failed: {fault.code}",
                        )
                    )
                    continue
                if found is not None:
                    receipts.append(found)
                else:
                    todo.append(m)
        try:
            return receipts + super().send_batch(todo)
        finally:
            self._first_try.clear()

    def deliver(self, unit: Unit) -> list[Receipt]:
        self._first_try.setdefault(id(unit), time.time())
        if not self.config.batch_api:
            (m,) = unit
            data = self.rpc(
                "SendSms",
                {
                    "PhoneNumbers": m.address,
                    "SignName": self._sign_name(m),
                    "TemplateCode": self._template_code(m),
                    "TemplateParam": json.dumps(self._template_param(m), ensure_ascii=False),
                    "OutId": m.idempotency_key,
                },
            )
            return [Receipt(m.idempotency_key, "sent", provider_message_id=str(data.get("BizId")))]
        first = unit[0]
        data = self.rpc(
            "SendBatchSms",
            {
                "PhoneNumberJson": json.dumps([m.address for m in unit]),
                "SignNameJson": json.dumps([self._sign_name(m) for m in unit], ensure_ascii=False),
                "TemplateCode": self._template_code(first),
                "TemplateParamJson": json.dumps(
                    [self._template_param(m) for m in unit], ensure_ascii=False
                ),
            },
        )
        biz_id = str(data.get("BizId"))
        return [Receipt(m.idempotency_key, "sent", provider_message_id=biz_id) for m in unit]

    # --- finding out what was sent --------------------------------------------------------------
    def _details(self, phone: str, since: float | None = None) -> list[dict[str, Any]]:
        """The send records for ``phone``: today's (and, just after midnight, yesterday's);
        with ``since``, every day from that moment's to today, at most LOOKBACK_DAYS."""
        now = dt.datetime.now(SHANGHAI)
        if since is None:
            days = [now] + ([now - dt.timedelta(days=1)] if now.hour < 1 else [])
        else:
            first = max(
                dt.datetime.fromtimestamp(since, SHANGHAI).date(),
                now.date() - dt.timedelta(days=LOOKBACK_DAYS - 1),
            )
            count = (now.date() - first).days + 1
            days = [now - dt.timedelta(days=back) for back in range(max(count, 1))]
        rows: list[dict[str, Any]] = []
        for day in days:
            page = 1
            while True:
                data = self.rpc(
                    "QuerySendDetails",
                    {
                        "PhoneNumber": phone,
                        "SendDate": day.strftime("%Y%m%d"),
                        "PageSize": str(PAGE_SIZE),
                        "CurrentPage": str(page),
                    },
                    rate_limited=False,
                )
                batch = ((data.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO")) or []
                rows.extend(batch)
                if len(batch) < PAGE_SIZE or page * PAGE_SIZE >= int(data.get("TotalCount", 0)):
                    break
                page += 1
        return rows

    def lookup_out_id(self, m: OutboundMessage, since: float | None = None) -> Receipt | None:
        for row in self._details(m.address, since):
            if row.get("OutId") == m.idempotency_key:
                return _receipt_from_detail(m, row)
        return None

    def reconcile(self, unit: Unit, since: float | None = None) -> list[Receipt] | None:
        if not self.config.batch_api:
            found = self.lookup_out_id(unit[0], since)
            return [found] if found is not None else None
        # SendBatchSms carries no OutId: a record of the same template to the same number,
        # made since the first attempt, is taken as ours.
        since = (since if since is not None else self._first_try.get(id(unit), time.time())) - 5
        receipts: list[Receipt] = []
        for m in unit:
            match = None
            for row in self._details(m.address, since):
                sent_at = _parse_send_date(str(row.get("SendDate", "")))
                if row.get("TemplateCode") == self._template_code(m) and sent_at >= since:
                    match = row
            receipts.append(
                _receipt_from_detail(m, match)
                if match
                else Receipt(m.idempotency_key, "retry", code=NOT_FOUND)
            )
        if all(r.outcome == "retry" for r in receipts):
            return None  # nothing of this batch went out: safe to send it again
        return receipts


def _parse_send_date(value: str) -> float:
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI).timestamp()
    except ValueError:
        return 0.0


def _receipt_from_detail(m: OutboundMessage, row: dict[str, Any]) -> Receipt:
    if int(row.get("SendStatus", 0)) == SEND_STATUS_FAILED:
        return Receipt(
            m.idempotency_key,
            "failed",
            code=str(row.get("ErrCode") or "send_failed"),
            detail="already submitted earlier; the carrier reported failure",
        )
    return Receipt(
        m.idempotency_key,
        "sent",
        provider_message_id=row.get("BizId"),
        detail="already submitted earlier (found by QuerySendDetails); not sent twice",
    )


def _parse(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        if resp.status_code >= 500:
            raise AmbiguousFault(str(resp.status_code), f"HTTP {resp.status_code}") from None
        if resp.status_code in (401, 403):  # a gateway refusing our key: hold, not fail
            raise ApiFault(
                Action.CONFIG, str(resp.status_code), "access refused", auth=True
            ) from None
        raise ApiFault(Action.PERM, str(resp.status_code), "body is not JSON") from None
    if not isinstance(data, dict):
        raise AmbiguousFault("bad_json", "body is not a JSON object")
    code = str(data.get("Code", ""))
    if resp.status_code == 200 and code == "OK":
        return data
    if not code:
        code = str(resp.status_code)
    raise classify_sms(code, str(data.get("Message", "")), status=resp.status_code)
