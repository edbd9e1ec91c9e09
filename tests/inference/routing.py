"""Helpers for the router tests: a simulator per module, settings pointing at it, explicit credentials."""

from __future__ import annotations

from typing import Any

from inference.targets import parse_target
from inference.types import MessageRequest, ProviderTarget

CREDENTIALS: dict[str, dict[str, Any]] = {
    "anthropic": {"api_key": "sk-ant-test"},
    "bedrock": {"mode": "keys", "access_key": "TESTACCESSKEYNOTREAL", "secret_key": "test-secret"},
    "vertex": {"mode": "access_token", "access_token": "ya29.test", "project_id": "atrium-test"},
}


def target(key: str, **overrides: Any) -> ProviderTarget:
    provider = key.partition(":")[0]
    return parse_target(key, {**CREDENTIALS[provider], **overrides})


def bname(key: str) -> str:
    """The breaker name of `target(key)`: its credential scope's, not the platform's."""
    return target(key).breaker_name


def targets(*keys: str) -> list[ProviderTarget]:
    return [target(k) for k in keys]


def ask(text: str = "Hello there", *, model: str = "sonnet", max_tokens: int = 64, **params: Any) -> MessageRequest:
    return MessageRequest(model=model, params={"max_tokens": max_tokens,
                                               "messages": [{"role": "user", "content": text}], **params})
