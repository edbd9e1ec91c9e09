"""Token counting at each provider, in its own wire format; the count as an int.

- Anthropic API: `POST /v1/messages/count_tokens` with the Messages body, answering `{"input_tokens": N}`.
- Vertex AI: `POST …/publishers/anthropic/models/count-tokens:rawPredict` with the model in the body (the SDK's
  Vertex client rewrites the path), answering `{"input_tokens": N}`.
- Bedrock: the runtime's CountTokens operation, `POST /model/{modelId}/count-tokens` with
  `{"input": {"invokeModel": {"body": <the InvokeModel body, base64>}}}`, answering `{"inputTokens": N}`. The SDK's
  Bedrock client refuses count_tokens, so the request is sent through its signing client as raw bytes.

A provider or region that does not offer counting for the model answers 404 / a validation error naming the
operation: classified like any other answer (404: the target is skipped as misconfigured for this model, and the
next one is asked; see docs/providers.md).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import anthropic

from inference.types import ProviderTarget

BEDROCK_VERSION = "bedrock-2023-05-31"


def beta_headers(betas: Sequence[str]) -> dict[str, str]:
    return {"anthropic-beta": ",".join(betas)} if betas else {}


def provider_count_tokens(client: Any, target: ProviderTarget, *, model_id: str, params: Mapping[str, Any],
                          betas: Sequence[str], timeout: float) -> int:
    if target.provider == "bedrock":
        return _bedrock(client, model_id, params, betas, timeout)
    body: dict[str, Any] = {**params, "model": model_id}
    options: dict[str, Any] = {"timeout": timeout}
    if target.provider == "anthropic":
        options["headers"] = beta_headers(betas)
    elif betas:
        body["anthropic_beta"] = list(betas)
    result = client.post("/v1/messages/count_tokens", body=body, cast_to=object, options=options)
    return _tokens(result, "input_tokens")


def _bedrock(client: Any, model_id: str, params: Mapping[str, Any], betas: Sequence[str], timeout: float) -> int:
    invoke: dict[str, Any] = {"anthropic_version": BEDROCK_VERSION, "max_tokens": 1, **params}
    if betas:
        invoke["anthropic_beta"] = list(betas)
    payload = {"input": {"invokeModel": {"body": base64.b64encode(json.dumps(invoke).encode()).decode()}}}
    path = f"/model/{urllib.parse.quote(model_id, safe=':')}/count-tokens"
    result = client.post(path, cast_to=object, content=json.dumps(payload, separators=(",", ":")).encode(),
                         options={"timeout": timeout, "headers": {"content-type": "application/json",
                                                                  "accept": "application/json"}})
    return _tokens(result, "inputTokens")


def _tokens(result: Any, field: str) -> int:
    value = result.get(field) if isinstance(result, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise anthropic.APIResponseValidationError(response=None, body=result,  # type: ignore[arg-type]
                                                   message=f"provider answered without {field}")
    return value
