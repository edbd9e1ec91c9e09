"""Deterministic answers, usage counts, request validation and error bodies in each provider's format."""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from inference.simulator import features, markdown

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
    try:
        features.validate(body)
    except features.FeatureError as exc:
        raise InvalidRequest(400, exc.message) from exc


def validate_count(body: dict[str, Any]) -> None:
    """count_tokens' checks: a Messages body without max_tokens."""
    validate({**body, "max_tokens": body.get("max_tokens", 1 << 30)}, model=None)


def input_tokens(body: dict[str, Any]) -> int:
    system = body.get("system") or ""
    chars = len(message_text(system) if isinstance(system, list) else system)
    for message in body.get("messages") or []:
        chars += len(message_text(message.get("content")))
        if isinstance(message.get("content"), list):
            for block in message["content"]:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "image":
                    chars += 1500
                elif block.get("type") == "document":
                    chars += features.document_chars(block)
                elif block.get("type") == "thinking":
                    chars += len(str(block.get("thinking", "")))
    if body.get("tools"):
        chars += len(json.dumps(body["tools"]))
    return tokens(chars) + 7  # the role markers every request carries


def answer(body: dict[str, Any], *, provider: str, region: str, model: str,
           variant: int = 0) -> tuple[str, int, str]:
    """(text, output_tokens, stop_reason): the same request always gets the same answer, unless it asks for
    sampling (`temperature` > 0) and has been asked before: then `variant` (how often) picks another one, as a
    sampling model would (the web chat's Regenerate)."""
    last_user = _last_user(body)
    digest = _digest(body, model, variant)
    where = f"{provider}/{region}" if region else provider
    max_tokens = int(body["max_tokens"])
    text = markdown.fitted(markdown.sections(last_user, digest=digest, where=where, model=model), max_tokens * 4)
    if tokens(len(text)) <= max_tokens:
        return text, tokens(len(text)), "end_turn"
    return text[: max_tokens * 4], max_tokens, "max_tokens"


def _last_user(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def _digest(body: dict[str, Any], model: str, variant: int) -> str:
    asked: list[Any] = [model, body.get("system"), body.get("messages")]
    if variant:
        asked.append(variant)
    return hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()


def reply(body: dict[str, Any], *, provider: str, region: str, model: str, variant: int = 0,
          cache: features.PromptCache | None = None) -> tuple[list[dict[str, Any]], int, str, dict[str, Any]]:
    """(content blocks, output tokens, stop reason, usage) of the answer: a signed thinking block when thinking is
    enabled, the text (naming the documents read, or the tool results), and a tool_use block when a tool is
    called; usage with the prompt cache's reads and writes."""
    digest = _digest(body, model, variant)
    blocks: list[dict[str, Any]] = []
    out_tokens = 0
    thinking = features.thinking_text(body, digest)
    if thinking is not None:
        blocks.append({"type": "thinking", "thinking": thinking, "signature": features.sign(thinking)})
        out_tokens += tokens(len(thinking))
    call = features.tool_call(body, _last_user(body), digest)
    if call is not None:
        text, stop = f"I'll use the {call['name']} tool for this.", "tool_use"
        out_tokens += tokens(len(text)) + tokens(len(json.dumps(call["input"])))
        blocks += [{"type": "text", "text": text}, call]
    else:
        text, text_tokens, stop = answer(body, provider=provider, region=region, model=model, variant=variant)
        lead = "".join(f"I read the document \u201c{title}\u201d ({pages} page{'s' if pages != 1 else ''}). "
                       for title, pages in features.documents(body))
        result = features.tool_result_text(body)
        if result is not None:
            lead += f"The tool answered: {result[:200]}. "
        blocks.append({"type": "text", "text": lead + text})
        out_tokens += text_tokens + tokens(len(lead)) if lead else text_tokens
    total = input_tokens(body)
    usage = (cache.usage(model, body, total) if cache is not None else features.CacheUsage(total, 0, 0)).as_usage()
    return blocks, out_tokens, stop, usage


def message_json(body: dict[str, Any], *, provider: str, region: str, model: str, msg_id: str,
                 variant: int = 0, cache: features.PromptCache | None = None) -> dict[str, Any]:
    blocks, out_tokens, stop_reason, usage = reply(body, provider=provider, region=region, model=model,
                                                   variant=variant, cache=cache)
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": out_tokens},
    }


def stream_events(body: dict[str, Any], *, provider: str, region: str, model: str,
                  msg_id: str, variant: int = 0, cache: features.PromptCache | None = None) -> list[dict[str, Any]]:
    """The full event sequence of a streamed answer, as the Messages API sends it."""
    blocks, out_tokens, stop_reason, usage = reply(body, provider=provider, region=region, model=model,
                                                   variant=variant, cache=cache)
    start: dict[str, Any] = {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
                             "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(blocks):
        block_events = _block_events(index, block)
        if index == 0:
            block_events.insert(1, {"type": "ping"})  # after the first content_block_start, as the API sends it
        events += block_events
    events += [
        {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
         "usage": {"output_tokens": out_tokens}},
        {"type": "message_stop"},
    ]
    return events


def _block_events(index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    kind = block["type"]
    events: list[dict[str, Any]] = []
    if kind == "thinking":
        events.append({"type": "content_block_start", "index": index,
                       "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
        for piece in _pieces(block["thinking"]):
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "thinking_delta", "thinking": piece}})
        events.append({"type": "content_block_delta", "index": index,
                       "delta": {"type": "signature_delta", "signature": block["signature"]}})
    elif kind == "tool_use":
        events.append({"type": "content_block_start", "index": index,
                       "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
        raw = json.dumps(block["input"])
        for i in range(0, len(raw), 12):
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "input_json_delta", "partial_json": raw[i:i + 12]}})
    else:
        events.append({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
        for piece in _pieces(block["text"]):
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "text_delta", "text": piece}})
    events.append({"type": "content_block_stop", "index": index})
    return events


def _pieces(text: str) -> list[str]:
    words = re.findall(r"\S+\s*", text) or [text]
    return ["".join(words[i:i + 3]) for i in range(0, len(words), 3)]


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}}


def default_message(status: int) -> str:
    return {
        400: "Invalid request (injected fault).", 401: "invalid x-api-key", 403: "Permission denied (injected).",
        404: "Model not found (injected).", 408: "Request timed out (injected).", 413: "Request too large.",
        422: "Unprocessable request (injected).", 429: "Rate limited (injected).", 500: "Internal server error.",
        502: "Bad gateway.", 503: "Service unavailable.", 529: "Overloaded",
    }.get(status, f"Injected error {status}.")
