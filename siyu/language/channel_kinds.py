"""Which channels a project has and whom each one addresses (its identity kind), for the
tools that must not build real adapters: validate, preview, simulate.

They come from channels.yaml through the channel registry. Without a channels.yaml (a fresh
checkout, a test project) the standard channels below are assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

from siyu.language.references import Catalog
from siyu.project import Project

STANDARD_CHANNELS: dict[str, str] = {
    "wecom_group_invite": "wecom_external_userid",
    "wecom": "wecom_external_userid",
    "service_account": "wechat_openid",
    "miniprogram": "miniprogram_openid",
    "sms": "mobile",
    "email": "email",
    "webhook": "customer_id",
}


def channel_kinds(project: Project) -> dict[str, str]:
    """Channel name → identity kind (mobile, wecom_external_userid, ...)."""
    if not project.channels_file.is_file():
        return dict(STANDARD_CHANNELS)
    from siyu.channels.registry import identity_kinds, load_channel_config

    # A broken channels.yaml is reported (ChannelConfigError), never replaced by defaults.
    return identity_kinds(load_channel_config(project.channels_file))


@dataclass(frozen=True)
class ToolProject(Project):
    """A Project whose journey catalog comes from channel_kinds (no adapters are built)."""

    @classmethod
    def of(cls, project: Project) -> ToolProject:
        return cls(project.root)

    def catalog(self) -> Catalog:
        return Catalog(channels=set(channel_kinds(self)), templates_dir=self.templates_dir)
