"""Deterministic answers, usage counts, request validation and error bodies in each provider's format."""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from inference.simulator import markdown

ANTHROPIC_MODEL = re.compile(r"^claude-[a-z0-9.-]+(@\d{8})?$")
BEDROCK_MODEL = re.compile(r"^((global|us|eu|apac|jp|ca|sa)\.)?anthropic\.claude-[a-z0-9.-]+(-v\d+(:\d+)?)?$")
LISTED_MODELS = [
    ("claude-opus-5-5", "Claude Opus 5.5"),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5"),
    ("claude-haiku-5-5", "Claude Haiku 5.5"),
]
ROLES = {"user", "assistant"}


ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    408: "timeout_error", 413: "request_too_large", 422: "invalid_request_error", 429: "rate_limit_error",
    500: "api_error", 502: "api_error", 503: "api_error", 504: "timeout_error", 529: "overloaded_error",
}
BEDROCK_ERROR_TYPES = {
    400: "ValidationException", 401: "UnrecognizedClientException", 403: "AccessDeniedException",
    404: "ResourceNotFoundException", 408: "ModelTimeoutException", 413: "ValidationException",
    422: "ValidationException", 424: "ModelErrorException", 429: "ThrottlingException",
    500: "InternalServerException", 502: "InternalServerException", 503: "ServiceUnavailableException",
    504: "ModelTimeoutException", 529: "ServiceUnavailableException",
}
BEDROCK_STREAM_EXCEPTIONS = {
    429: "throttlingException", 400: "validationException", 408: "modelTimeoutException",
    503: "serviceUnavailableException",
}


class InvalidRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


def _block_text(block: Any) -> str:
    if isinstance(block, str):
        return block
    if isinstance(block, dict):
        if block.get("type") == "text":
            return str(block.get("text", ""))
        if block.get("type") == "tool_result":
            inner = block.get("content")
            return inner if isinstance(inner, str) else " ".join(_block_text(b) for b in inner or [])
        if block.get("type") == "tool_use":
            return json.dumps(block.get("input", {}))
    return ""


def message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(_block_text(b) for b in content or [])


def validate(body: Any, *, model: str | None) -> None:
    """The checks the Messages API makes before it generates anything; InvalidRequest otherwise."""
    if not isinstance(body, dict):
        raise InvalidRequest(400, "Request body must be a JSON object.")
    if model is not None and not isinstance(model, str):
        raise InvalidRequest(400, "model: Input should be a valid string")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest(400, "max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest(400, "max_tokens: Input should be an integer greater than or equal to 1")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest(400, "messages: Field required")
    if not messages:
        raise InvalidRequest(400, "messages: at least one message is required")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InvalidRequest(400, f"messages.{index}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if not isinstance(content, str | list):
            raise InvalidRequest(400, f"messages.{index}.content: Input should be a valid string or list")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest(400, "system: Input should be a valid string or list of text blocks")
    if len(json.dumps(body)) > 32 * 1024 * 1024:
        raise InvalidRequest(413, "Request exceeds the maximum allowed number of bytes.")


def input_tokens(body: dict[str, Any]) -> int:
    system = body.get("system") or ""
    chars = len(message_text(system) if isinstance(system, list) else system)
    for message in body.get("messages") or []:
        chars += len(message_text(message.get("content")))
        if isinstance(message.get("content"), list):
            chars += 1500 * sum(1 for b in message["content"] if isinstance(b, dict) and b.get("type") == "image")
    if body.get("tools"):
        chars += len(json.dumps(body["tools"]))
    return tokens(chars) + 7  # the role markers every request carries


def answer(body: dict[str, Any], *, provider: str, region: str, model: str,
           variant: int = 0) -> tuple[str, int, str]:
    """(text, output_tokens, stop_reason): the same request always gets the same answer, unless it asks for
    sampling (`temperature` > 0) and has been asked before: then `variant` (how often) picks another one, as a
    sampling model would (the web chat's Regenerate)."""
    last_user = ""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            last_user = message_text(message.get("content"))
            break
    asked: list[Any] = [model, body.get("system"), body.get("messages")]
    if variant:
        asked.append(variant)
    digest = hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()
    where = f"{provider}/{region}" if region else provider
    max_tokens = int(body["max_tokens"])
    text = markdown.fitted(markdown.sections(last_user, digest=digest, where=where, model=model), max_tokens * 4)
    if tokens(len(text)) <= max_tokens:
        return text, tokens(len(text)), "end_turn"
    return text[: max_tokens * 4], max_tokens, "max_tokens"


def message_json(body: dict[str, Any], *, provider: str, region: str, model: str, msg_id: str,
                 variant: int = 0) -> dict[str, Any]:
    text, out_tokens, stop_reason = answer(body, provider=provider, region=region, model=model, variant=variant)
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens(body), "output_tokens": out_tokens,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }


def stream_events(body: dict[str, Any], *, provider: str, region: str, model: str,
                  msg_id: str, variant: int = 0) -> list[dict[str, Any]]:
    """The full event sequence of a streamed answer, as the Messages API sends it."""
    text, out_tokens, stop_reason = answer(body, provider=provider, region=region, model=model, variant=variant)
    start: dict[str, Any] = {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
             "stop_reason": None, "stop_sequence": None,
             "usage": {"input_tokens": input_tokens(body), "output_tokens": 1,
                       "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    pieces = re.findall(r"\S+\s*", text) or [text]
    for i in range(0, len(pieces), 3):
        events.append({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": "".join(pieces[i:i + 3])}})
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
         "usage": {"output_tokens": out_tokens}},
        {"type": "message_stop"},
    ]
    return events


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}}


def default_message(status: int) -> str:
    return {
        400: "Invalid request (injected fault).", 401: "invalid x-api-key", 403: "Permission denied (injected).",
        404: "Model not found (injected).", 408: "Request timed out (injected).", 413: "Request too large.",
        422: "Unprocessable request (injected).", 429: "Rate limited (injected).", 500: "Internal server error.",
        502: "Bad gateway.", 503: "Service unavailable.", 529: "Overloaded",
    }.get(status, f"Injected error {status}.")
