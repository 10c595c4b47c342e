"""WeCom app message to staff (``wecom_staff``): ``/cgi-bin/message/send``.

The only WeCom send API with built-in dedup: ``enable_duplicate_check`` drops a request whose
JSON equals one sent within ``duplicate_check_interval`` (max 4 h), so retries are safe.
Note that two different deliveries with identical text to the same staff member inside that
window are also merged into one; templates for staff should name the customer.
"""

from __future__ import annotations

from siyu.channels.adapter import BatchChannel, Runtime, Unit
from siyu.channels.base import Receipt
from siyu.channels.config import WecomStaffConfig
from siyu.channels.wecom_api import WeComApi


class WecomStaffChannel(BatchChannel):
    identity_kind = "wecom_userid"
    max_batch = 1000
    idempotent = True  # enable_duplicate_check

    def __init__(
        self, name: str, runtime: Runtime, config: WecomStaffConfig, api: WeComApi
    ) -> None:
        super().__init__(name, runtime)
        self.config = config
        self.api = api

    def deliver(self, unit: Unit) -> list[Receipt]:
        (m,) = unit
        data = self.api.call(
            "/cgi-bin/message/send",
            {
                "touser": m.address,
                "msgtype": "text",
                "agentid": self.config.agentid,
                "text": {"content": m.body},
                "safe": 0,
                "enable_duplicate_check": 1,
                "duplicate_check_interval": self.config.duplicate_check_interval,
            },
        )
        invalid = {u.lower() for u in str(data.get("invaliduser") or "").split("|") if u}
        if m.address.lower() in invalid:
            return [
                Receipt(
                    m.idempotency_key,
                    "failed",
                    code="invaliduser",
                    detail="WeCom listed this userid as invalid or out of the app's scope",
                )
            ]
        return [
            Receipt(m.idempotency_key, "sent", provider_message_id=str(data.get("msgid") or ""))
        ]
