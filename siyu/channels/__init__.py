"""Channel adapters: deliver rendered messages to WeCom, WeChat, SMS, e-mail and webhooks.

Entry points: :func:`siyu.channels.registry.load_channel_config` and
:func:`siyu.channels.registry.build_channels`. The interface is in :mod:`siyu.channels.base`.
"""
