"""The provider a worker uses: Anthropic when a key is configured, else the offline one."""

from __future__ import annotations

from activities.ai.anthropic_provider import AnthropicProvider
from activities.ai.offline_provider import OfflineProvider
from activities.ai.provider import Provider
from vaporform.settings.ai import AISettings


def build_provider(settings: AISettings) -> Provider:
    if not settings.api_key:
        return OfflineProvider()
    return AnthropicProvider(
        settings.api_key,
        settings.model,
        base_url=settings.base_url,
        timeout_s=settings.request_timeout_s,
    )
