"""WeCom customer mass messages (``wecom``) and the join-group invitation (``wecom_group_invite``).

``add_msg_template`` does not send: it creates a task a staff member confirms in the WeCom client.
So a send returns ``pending`` with the task's msgid, and :meth:`WecomChannel.check_pending` later
reads ``get_groupmsg_task`` / ``get_groupmsg_send_result``:
status 1 → sent, 2 (not a friend) → refused, 3 (already got another mass message: receive limit)
→ failed, 0 → still pending.

The API has no idempotency. After a lost answer we look for the task in ``get_groupmsg_list_v2``
(same text and attachments, created since our first attempt, not a task we already own) before
sending again. Concurrent senders of identical text could confuse that lookup; the engine's
ledger remains the first line of defence.

WeCom has no API that adds a customer to a group; the invitation is a link attachment pointing at
a join way created once per chat with ``groupchat/add_join_way``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from siyu.channels.adapter import BatchChannel, Runtime, Unit, group_by
from siyu.channels.backoff import retrying
from siyu.channels.base import (
    NOT_FOUND,
    ChannelError,
    ChannelMisconfigured,
    ChannelUnavailable,
    OutboundMessage,
    PendingMessage,
    Receipt,
)
from siyu.channels.config import WecomConfig, WecomGroupInviteConfig
from siyu.channels.errors import Action, ProviderFault
from siyu.channels.secrets import redact
from siyu.channels.wecom_api import WeComApi

MAX_EXTERNAL_USERIDS = 10_000  # per add_msg_template call
LIST_WINDOW_SLACK = 5  # seconds of clock slack when matching our own task in the list


class WecomChannel(BatchChannel):
    identity_kind = "wecom_external_userid"
    max_batch = MAX_EXTERNAL_USERIDS
    idempotent = False
    looks_up_earlier_attempts = True  # tasks of the same text, matched by their recipients

    def __init__(
        self,
        name: str,
        runtime: Runtime,
        config: WecomConfig | WecomGroupInviteConfig,
        api: WeComApi,
    ) -> None:
        super().__init__(name, runtime)
        self.config = config
        self.api = api
        self._first_try: dict[int, float] = {}
        self._own_msgids: deque[str] = deque(maxlen=10_000)  # tasks this adapter created

    # --- sending ---------------------------------------------------------------------------------
    def _sender(self, m: OutboundMessage) -> str:
        return str(m.params.get("sender") or self.config.sender)

    def attachments(self, m: OutboundMessage) -> list[dict[str, Any]]:
        url = m.params.get("url")
        if not url:
            return []
        link = {"title": str(m.params.get("link_title") or "查看详情"), "url": str(url)}
        return [{"msgtype": "link", "link": link}]

    def plan(self, messages: Sequence[OutboundMessage]) -> list[Unit]:
        # One add_msg_template carries ONE text for all recipients: group identical requests.
        def key(m: OutboundMessage) -> object:
            return (m.body, self._sender(m), repr(self.attachments(m)))

        return group_by(messages, key, MAX_EXTERNAL_USERIDS)

    def request_body(self, unit: Unit) -> dict[str, Any]:
        first = unit[0]
        body: dict[str, Any] = {
            "chat_type": "single",
            "external_userid": [m.address for m in unit],
            "sender": self._sender(first),
            "allow_select": False,
            "text": {"content": first.body},
        }
        attachments = self.attachments(first)
        if attachments:
            body["attachments"] = attachments
        return body

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        try:
            return super().send_batch(messages)
        finally:
            self._first_try.clear()

    def deliver(self, unit: Unit) -> list[Receipt]:
        self._first_try.setdefault(id(unit), time.time())
        data = self.api.call("/cgi-bin/externalcontact/add_msg_template", self.request_body(unit))
        msgid = str(data["msgid"])
        self._own_msgids.append(msgid)
        failed = set(data.get("fail_list") or [])
        return [
            Receipt(
                m.idempotency_key,
                "failed",
                code="fail_list",
                detail="WeCom listed this external_userid as invalid or unreachable",
            )
            if m.address in failed
            else Receipt(
                m.idempotency_key,
                "pending",
                provider_message_id=msgid,
                detail="waiting for the sender to confirm in WeCom",
            )
            for m in unit
        ]

    def reconcile(self, unit: Unit, since: float | None = None) -> list[Receipt] | None:
        if since is not None:
            return self._earlier_tasks_for(unit, since)
        started = self._first_try.get(id(unit), time.time()) - LIST_WINDOW_SLACK
        want = self.request_body(unit)
        cursor = ""
        while True:
            data = self.api.call(
                "/cgi-bin/externalcontact/get_groupmsg_list_v2",
                {
                    "chat_type": "single",
                    "start_time": int(started),
                    "end_time": int(time.time()) + LIST_WINDOW_SLACK,
                    "filter_type": 2,
                    "limit": 100,
                    "cursor": cursor,
                },
            )
            for task in data.get("group_msg_list") or []:
                msgid = str(task.get("msgid"))
                if msgid in self._own_msgids:
                    continue
                same_text = (task.get("text") or {}).get("content") == want["text"]["content"]
                same_att = (task.get("attachments") or []) == want.get("attachments", [])
                if same_text and same_att and int(task.get("create_time", 0)) >= int(started):
                    self._own_msgids.append(msgid)
                    return [
                        Receipt(
                            m.idempotency_key,
                            "pending",
                            provider_message_id=msgid,
                            detail="task found after a lost answer; not sent twice",
                        )
                        for m in unit
                    ]
            cursor = str(data.get("next_cursor") or "")
            if not cursor:
                return None

    def _earlier_tasks_for(self, unit: Unit, since: float) -> list[Receipt] | None:
        """Messages an earlier, crashed attempt may have put in a task: tasks with this text
        and these attachments created since `since`, and among their recipients (read back
        with get_groupmsg_send_result, confirmed or not) this unit's customers. Matching by
        recipient, not by text alone: a task of the same text for other customers is not
        taken for theirs."""
        want = self.request_body(unit)
        tasks: list[dict[str, Any]] = []
        cursor = ""
        while True:
            data = self.api.call(
                "/cgi-bin/externalcontact/get_groupmsg_list_v2",
                {
                    "chat_type": "single",
                    "start_time": int(since - LIST_WINDOW_SLACK),
                    "end_time": int(time.time()) + LIST_WINDOW_SLACK,
                    "filter_type": 2,
                    "limit": 100,
                    "cursor": cursor,
                },
            )
            tasks += [
                task
                for task in data.get("group_msg_list") or []
                if (task.get("text") or {}).get("content") == want["text"]["content"]
                and (task.get("attachments") or []) == want.get("attachments", [])
            ]
            cursor = str(data.get("next_cursor") or "")
            if not cursor:
                break
        found: dict[str, str] = {}  # external_userid -> msgid
        addresses = {m.address for m in unit}
        for task in tasks:
            msgid = str(task.get("msgid"))
            for userid in self._recipients(msgid, str(task.get("creator") or want["sender"])):
                if userid in addresses:
                    found.setdefault(userid, msgid)
        if not found:
            return None
        return [
            Receipt(
                m.idempotency_key,
                "pending",
                provider_message_id=found[m.address],
                detail="task found after an earlier attempt died; not sent twice",
            )
            if m.address in found
            else Receipt(m.idempotency_key, "retry", code=NOT_FOUND)
            for m in unit
        ]

    def _recipients(self, msgid: str, sender: str) -> set[str]:
        recipients: set[str] = set()
        cursor = ""
        while True:
            data = self.api.call(
                "/cgi-bin/externalcontact/get_groupmsg_send_result",
                {"msgid": msgid, "userid": sender, "limit": 1000, "cursor": cursor},
            )
            recipients |= {
                str(row["external_userid"])
                for row in data.get("send_list") or []
                if row.get("external_userid")
            }
            cursor = str(data.get("next_cursor") or "")
            if not cursor:
                return recipients

    # --- confirming ------------------------------------------------------------------------------
    def _read(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return retrying(
            lambda: self.api.call(path, body), self.rt.policy, sleep=self.rt.sleep, rng=self.rt.rng
        )

    def _send_results(self, msgid: str) -> dict[str, int]:
        statuses: dict[str, int] = {}
        cursor = ""
        tasks: list[dict[str, Any]] = []
        while True:
            data = self._read(
                "/cgi-bin/externalcontact/get_groupmsg_task",
                {"msgid": msgid, "limit": 1000, "cursor": cursor},
            )
            tasks.extend(data.get("task_list") or [])
            cursor = str(data.get("next_cursor") or "")
            if not cursor:
                break
        for task in tasks:
            if int(task.get("status", 0)) == 0:  # that staff member has not confirmed yet
                continue
            cursor = ""
            while True:
                data = self._read(
                    "/cgi-bin/externalcontact/get_groupmsg_send_result",
                    {"msgid": msgid, "userid": task["userid"], "limit": 1000, "cursor": cursor},
                )
                for row in data.get("send_list") or []:
                    if row.get("external_userid"):
                        statuses[str(row["external_userid"])] = int(row.get("status", 0))
                cursor = str(data.get("next_cursor") or "")
                if not cursor:
                    break
        return statuses

    def check_pending(self, messages: Sequence[PendingMessage]) -> list[Receipt]:
        by_msgid: dict[str, list[PendingMessage]] = {}
        for p in messages:
            by_msgid.setdefault(p.provider_message_id, []).append(p)
        receipts: list[Receipt] = []
        for msgid, group in by_msgid.items():
            try:
                statuses = self._send_results(msgid)
            except ProviderFault as fault:
                if fault.action in (Action.CONFIG, Action.REFRESH):
                    raise ChannelMisconfigured(self.name, redact(str(fault))) from None
                receipts.extend(
                    Receipt(
                        p.idempotency_key,
                        "pending",
                        provider_message_id=msgid,
                        code=fault.code,
                        detail="status lookup failed; will retry",
                    )
                    for p in group
                )
                continue
            for p in group:
                receipts.append(_receipt_for_status(p, msgid, statuses.get(p.address, 0)))
        return receipts


def _receipt_for_status(p: PendingMessage, msgid: str, status: int) -> Receipt:
    if status == 1:
        return Receipt(p.idempotency_key, "sent", provider_message_id=msgid)
    if status == 2:
        return Receipt(
            p.idempotency_key,
            "refused",
            provider_message_id=msgid,
            code="not_friend",
            detail="send_result status 2: the customer is not (or no longer) a friend",
        )
    if status == 3:
        return Receipt(
            p.idempotency_key,
            "failed",
            provider_message_id=msgid,
            code="receive_limit",
            detail="send_result status 3: customer already received another mass "
            "message (receive limit reached)",
        )
    return Receipt(p.idempotency_key, "pending", provider_message_id=msgid)


class WecomGroupInviteChannel(WecomChannel):
    """The "join our customer group" step: invitation text + a link to the group's join way."""

    def __init__(
        self, name: str, runtime: Runtime, config: WecomGroupInviteConfig, api: WeComApi
    ) -> None:
        super().__init__(name, runtime, config, api)
        self.invite = config
        self._join_ways: dict[str, tuple[str, str]] = {}  # chat_id -> (config_id, qr_code)
        self._lock = threading.Lock()

    def _chat_id(self, m: OutboundMessage) -> str:
        return str(m.params.get("chat_id") or self.invite.chat_id)

    def join_way(self, chat_id: str) -> tuple[str, str]:
        """(config_id, qr_code) for ``chat_id``, created once per process and cached."""
        with self._lock:
            if chat_id in self._join_ways:
                return self._join_ways[chat_id]
            config_id = self.invite.join_way_config_id if chat_id == self.invite.chat_id else None
            if config_id is None:
                data = self._read(
                    "/cgi-bin/externalcontact/groupchat/add_join_way",
                    {
                        "scene": 2,
                        "remark": f"siyu:{self.name}",
                        "auto_create_room": 0,
                        "chat_id_list": [chat_id],
                        "state": self.invite.state,
                    },
                )
                config_id = str(data["config_id"])
            data = self._read(
                "/cgi-bin/externalcontact/groupchat/get_join_way", {"config_id": config_id}
            )
            qr_code = str(data["join_way"]["qr_code"])
            self._join_ways[chat_id] = (config_id, qr_code)
            return config_id, qr_code

    def attachments(self, m: OutboundMessage) -> list[dict[str, Any]]:
        _, qr_code = self.join_way(self._chat_id(m))
        return [
            {
                "msgtype": "link",
                "link": {
                    "title": str(m.params.get("link_title") or self.invite.link_title),
                    "desc": self.invite.link_desc,
                    "picurl": qr_code,
                    "url": qr_code,
                },
            }
        ]

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        # Resolve join ways first: without a link there is nothing to send, and no receipt yet.
        try:
            for chat_id in dict.fromkeys(self._chat_id(m) for m in messages):
                self.join_way(chat_id)
        except ProviderFault as fault:
            message = f"join way: {redact(str(fault))}"
            error: ChannelError = ChannelUnavailable(self.name, message, code=fault.code)
            if fault.action in (Action.CONFIG, Action.REFRESH, Action.PERM):
                # channels.yaml or the secret must be fixed: hold, do not count attempts
                error = ChannelMisconfigured(self.name, message, auth=fault.auth, code=fault.code)
            raise error from None
        return super().send_batch(messages)
