"""The Anthropic API's direct transport for non-streaming calls (inference/providers/anthropic_api.py)."""

from __future__ import annotations

import ssl
from typing import Any

import certifi
import urllib3

from inference.providers.anthropic_api import AnthropicClient


def test_https_verifies_certificates_against_certifi() -> None:
    client = AnthropicClient(api_key="sk-ant-x", base_url="https://api.anthropic.com", timeout=5)
    pool = client._pool
    assert isinstance(pool, urllib3.HTTPSConnectionPool)
    assert pool.ca_certs == certifi.where()
    assert pool.cert_reqs not in ("CERT_NONE", ssl.CERT_NONE)  # None: urllib3 requires verification by default
    assert (pool.host, client._path) == ("api.anthropic.com", "/v1/messages")


def test_sends_what_the_sdk_sends() -> None:
    client = AnthropicClient(api_key="sk-ant-x", base_url="http://127.0.0.1:9/anthropic/", timeout=5)
    assert client._path == "/anthropic/v1/messages"
    assert client._headers["x-api-key"] == "sk-ant-x" and client._headers["anthropic-version"] == "2023-06-01"
    assert client._headers["content-type"] == "application/json"


def test_a_stream_read_to_its_end_gives_its_connection_back(sim: Any) -> None:
    from inference.providers.base import provider_client, provider_stream
    from inference.types import ProviderTarget

    client = provider_client(ProviderTarget(provider="anthropic", region="", credentials={"api_key": "sk-ant-x"}))
    for _ in range(3):
        stream = provider_stream(client, model_id="claude-haiku-5-5", timeout=5,
                                 params={"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
        events = list(stream)
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
        assert not any(e["type"] == "ping" for e in events)
    assert client._pool.num_connections == 1  # one connection, reused by every stream


def test_a_stream_left_early_discards_its_connection(sim: Any) -> None:
    from inference.providers.base import provider_client, provider_stream
    from inference.types import ProviderTarget

    client = provider_client(ProviderTarget(provider="anthropic", region="", credentials={"api_key": "sk-ant-x"}))
    sim.chunk_delay_s = 0.2  # the answer trickles in: most of it is still unread when the caller leaves
    try:
        stream = provider_stream(client, model_id="claude-haiku-5-5", timeout=5,
                                 params={"max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
        events = iter(stream)
        first = next(events)
    finally:
        sim.chunk_delay_s = 0
    assert first["type"] == "message_start"
    sock = stream._response.connection.sock  # type: ignore[attr-defined]
    stream.close()  # unread events on the socket: it must not serve another request
    assert sock.fileno() == -1
    answer = provider_stream(client, model_id="claude-haiku-5-5", timeout=5,
                             params={"max_tokens": 16, "messages": [{"role": "user", "content": "again"}]})
    assert [e["type"] for e in answer][-1] == "message_stop"


def test_the_environments_proxy_is_used_unless_the_host_is_exempt(monkeypatch: Any) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                 "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    client = AnthropicClient(api_key="sk-ant-x", base_url="https://api.anthropic.com", timeout=5)
    assert isinstance(client._pool, urllib3.ProxyManager)
    assert client._pool.proxy is not None and client._pool.proxy.host == "proxy.internal"
    assert client._target == "https://api.anthropic.com/v1/messages"

    monkeypatch.setenv("NO_PROXY", "api.anthropic.com")
    direct = AnthropicClient(api_key="sk-ant-x", base_url="https://api.anthropic.com", timeout=5)
    assert isinstance(direct._pool, urllib3.HTTPSConnectionPool) and direct._target == "/v1/messages"


def test_a_client_is_kept_per_credentials_whatever_their_order_or_shape() -> None:
    from inference.providers.base import provider_client, provider_clients_clear
    from inference.types import ProviderTarget

    provider_clients_clear()

    def client(credentials: dict[str, Any]) -> Any:
        return provider_client(ProviderTarget(provider="anthropic", region="", credentials=credentials))

    one = client({"api_key": "sk-ant-one", "note": "a"})
    assert client({"note": "a", "api_key": "sk-ant-one"}) is one  # the same credentials, listed otherwise
    assert client({"api_key": "sk-ant-two", "note": "a"}) is not one
    nested = client({"api_key": "sk-ant-one", "note": {"a": 1}})  # not hashable: digested every time
    assert nested is not one and client({"note": {"a": 1}, "api_key": "sk-ant-one"}) is nested
    assert one._headers["x-api-key"] == "sk-ant-one"
    provider_clients_clear()
