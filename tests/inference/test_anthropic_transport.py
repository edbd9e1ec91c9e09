"""The Anthropic API's direct transport for non-streaming calls (inference/providers/anthropic_api.py)."""

from __future__ import annotations

import ssl

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
