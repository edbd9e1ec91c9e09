"""The simulator's extended-feature answers: extended thinking (signed, and the signature checked when a thinking
block comes back), tool use (a `tool_use` block for the tool asked for, its `tool_result` answered), documents
(PDF and text, read page by page) and prompt caching (`cache_control` breakpoints, cache writes and reads in
usage), as the Messages API behaves for each, so a gateway that changes any of them in transit is caught.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

SIGNING_KEY = b"atrium-simulator-thinking"
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MIN_CACHEABLE_TOKENS = 1024
MIN_THINKING_BUDGET = 1024
TTL_S = {"5m": 300.0, "1h": 3600.0}


class FeatureError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def sign(thinking: str) -> str:
    """The signature a thinking block carries (the real API's is opaque too): checked when the block returns."""
    mac = hmac.new(SIGNING_KEY, thinking.encode(), hashlib.sha256).digest()
    return base64.b64encode(b"sim1" + mac).decode()


# --- validation ---------------------------------------------------------------------------------------------

def validate(body: dict[str, Any]) -> None:
    """The Messages API's checks on thinking, tools, documents and thinking blocks sent back. FeatureError."""
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
            raise FeatureError("thinking: Input should be {'type': 'enabled', 'budget_tokens': N} or "
                               "{'type': 'disabled'}")
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            if isinstance(budget, bool) or not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
                raise FeatureError(f"thinking.enabled.budget_tokens: Input should be greater than or equal to "
                                   f"{MIN_THINKING_BUDGET}")
            if isinstance(body.get("max_tokens"), int) and budget >= body["max_tokens"]:
                raise FeatureError("`max_tokens` must be greater than `thinking.budget_tokens`.")
    tools = body.get("tools") or []
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        if not isinstance(tool, dict):
            raise FeatureError(f"tools.{index}: Input should be an object")
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search, code execution…): accepted as it is
        if not TOOL_NAME.match(str(tool.get("name") or "")):
            raise FeatureError(f"tools.{index}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise FeatureError(f"tools.{index}.input_schema: Input should be a JSON schema of type 'object'")
    choice = body.get("tool_choice")
    if choice is not None:
        names = {t.get("name") for t in tools if isinstance(t, dict)}
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise FeatureError("tool_choice: Input should be {'type': 'auto' | 'any' | 'tool' | 'none'}")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise FeatureError(f"tool_choice.name: no tool named {choice.get('name')!r} in tools")
    previous_tool_uses: set[str] = set()
    for m_index, message in enumerate(body.get("messages") or []):
        blocks = message.get("content") if isinstance(message.get("content"), list) else []
        tool_uses = set()
        for b_index, block in enumerate(blocks):
            kind = block.get("type") if isinstance(block, dict) else None
            where = f"messages.{m_index}.content.{b_index}"
            if kind == "thinking":
                if message.get("role") != "assistant":
                    raise FeatureError(f"{where}: thinking blocks may only appear in assistant messages")
                if block.get("signature") != sign(str(block.get("thinking", ""))):
                    raise FeatureError(f"{where}: Invalid `signature` in `thinking` block")
            elif kind == "tool_use":
                tool_uses.add(str(block.get("id")))
            elif kind == "tool_result" and block.get("tool_use_id") not in previous_tool_uses:
                raise FeatureError(f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                                   f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                                   f"`tool_use` block in the previous message.")
            elif kind == "document":
                pages_of(block, where)
        previous_tool_uses = tool_uses


def pages_of(block: dict[str, Any], where: str = "document") -> int:
    """The pages of a document block (a PDF's page objects; a text document counts one page per 3000
    characters). FeatureError when the document is not what its source says."""
    source: dict[str, Any] = block["source"] if isinstance(block.get("source"), dict) else {}
    if source.get("type") == "text":
        return max(1, math.ceil(len(str(source.get("data") or "")) / 3000))
    if source.get("type") != "base64" or source.get("media_type") != "application/pdf":
        raise FeatureError(f"{where}.source: a base64 application/pdf or a text source is required")
    try:
        raw = base64.b64decode(str(source.get("data") or ""), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise FeatureError(f"{where}.source.data: The PDF specified was not valid base64.") from exc
    if not raw.startswith(b"%PDF-"):
        raise FeatureError(f"{where}.source.data: The PDF specified was not valid.")
    return max(1, len(re.findall(rb"/Type\s*/Page(?!s)", raw)))


# --- what the answer contains -------------------------------------------------------------------------------

def documents(body: dict[str, Any]) -> list[tuple[str, int]]:
    """(title, pages) of each document in the last user message."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            blocks = message.get("content") if isinstance(message.get("content"), list) else []
            return [(str(b.get("title") or "untitled"), pages_of(b)) for b in blocks
                    if isinstance(b, dict) and b.get("type") == "document"]
    return []


def document_chars(block: dict[str, Any]) -> int:
    """What a document costs in input, in characters (about 1500 tokens a PDF page)."""
    source: dict[str, Any] = block["source"] if isinstance(block.get("source"), dict) else {}
    if source.get("type") == "text":
        return len(str(source.get("data") or ""))
    return 6000 * pages_of(block)


def thinking_text(body: dict[str, Any], digest: str) -> str | None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget_chars = int(thinking.get("budget_tokens", MIN_THINKING_BUDGET)) * 4
    text = (f"The user asks something I should answer carefully. Let me consider it step by step "
            f"(reasoning {digest[:8]}): first restate the question, then check the facts I know, then decide "
            f"how to present the answer clearly.")
    return text[:budget_chars]


def tool_result_text(body: dict[str, Any]) -> str | None:
    """The tool results of the last user message, as the model would read them."""
    messages = body.get("messages") or []
    if not messages or messages[-1].get("role") != "user" or not isinstance(messages[-1].get("content"), list):
        return None
    results = []
    for block in messages[-1]["content"]:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            inner = block.get("content")
            text = inner if isinstance(inner, str) else " ".join(
                str(b.get("text", "")) for b in inner or [] if isinstance(b, dict))
            results.append(text)
    return " ".join(results) if results else None


def tool_call(body: dict[str, Any], prompt: str, digest: str) -> dict[str, Any] | None:
    """The tool_use block the model answers with, or None (no tools, tool_choice none, a tool result to read, or
    with tool_choice auto a prompt that names no tool)."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") in (None, "custom")]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none" or tool_result_text(body) is not None:
        return None
    if choice.get("type") == "tool":
        tool = next(t for t in tools if t.get("name") == choice.get("name"))
    elif choice.get("type") == "any":
        tool = tools[0]
    else:
        lowered = prompt.lower()
        named = [t for t in tools if str(t["name"]).lower() in lowered
                 or str(t["name"]).lower().replace("_", " ") in lowered]
        if not named:
            return None
        tool = named[0]
    return {"type": "tool_use", "id": f"toolu_sim_{digest[:20]}", "name": tool["name"],
            "input": _arguments(tool.get("input_schema") or {}, prompt)}


def _arguments(schema: dict[str, Any], prompt: str) -> dict[str, Any]:
    words = re.findall(r"[A-Z][a-z]+", prompt) or re.findall(r"\w+", prompt) or ["value"]
    out: dict[str, Any] = {}
    for name, spec in (schema.get("properties") or {}).items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(spec, dict) and spec.get("enum"):
            out[name] = spec["enum"][0]
        elif kind in ("number", "integer"):
            out[name] = 42
        elif kind == "boolean":
            out[name] = True
        elif kind == "array":
            out[name] = [words[-1]]
        elif kind == "object":
            out[name] = {}
        else:
            out[name] = words[-1]
    return out


# --- prompt caching -----------------------------------------------------------------------------------------

@dataclass
class CacheUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    ephemeral_1h: int = 0

    def as_usage(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens,
                "cache_creation": {"ephemeral_5m_input_tokens": self.cache_creation_input_tokens - self.ephemeral_1h,
                                   "ephemeral_1h_input_tokens": self.ephemeral_1h}}


class PromptCache:
    """Cached prompt prefixes per model: a prefix ending at a `cache_control` breakpoint is written on first use
    (if at least MIN_CACHEABLE_TOKENS long) and read by later requests with the same prefix until its TTL ends
    (each read refreshes it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, float] = {}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def usage(self, model: str, body: dict[str, Any], total_tokens: int) -> CacheUsage:
        breakpoints = _breakpoints(body)
        if not breakpoints:
            return CacheUsage(total_tokens, 0, 0)
        now = time.time()
        read = 0
        with self._lock:
            for digest, tokens, _ttl in breakpoints:
                if tokens >= MIN_CACHEABLE_TOKENS and self._entries.get(f"{model}:{digest}", 0) > now:
                    read = max(read, tokens)
            _last, last_tokens, last_ttl = breakpoints[-1]
            created = 0
            if last_tokens >= MIN_CACHEABLE_TOKENS and last_tokens > read:
                created = last_tokens - read
            for digest, tokens, ttl in breakpoints:
                if tokens >= MIN_CACHEABLE_TOKENS:
                    self._entries[f"{model}:{digest}"] = now + ttl
        read, created = min(read, total_tokens), min(created, max(total_tokens - read, 0))
        return CacheUsage(total_tokens - read - created, created, read, created if last_ttl > 300 else 0)


def _breakpoints(body: dict[str, Any]) -> list[tuple[str, int, float]]:
    """(digest of the prefix, its tokens, TTL) at each cache_control breakpoint, in prompt order: tools, system,
    messages."""
    segments: list[Any] = []
    for tool in body.get("tools") or []:
        segments.append(("tool", tool))
    system = body.get("system")
    if isinstance(system, str):
        segments.append(("system", {"type": "text", "text": system}))
    for block in system if isinstance(system, list) else []:
        segments.append(("system", block))
    for index, message in enumerate(body.get("messages") or []):
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for block in blocks:
            segments.append((f"{message.get('role')}:{index}", block))
    out: list[tuple[str, int, float]] = []
    hasher = hashlib.sha256()
    chars = 0
    for role, block in segments:
        plain = {k: v for k, v in block.items() if k != "cache_control"} if isinstance(block, dict) else block
        hasher.update(json.dumps([role, plain], sort_keys=True, default=str).encode())
        chars += _chars(block)
        control = block.get("cache_control") if isinstance(block, dict) else None
        if isinstance(control, dict) and control.get("type") == "ephemeral":
            out.append((hasher.copy().hexdigest(), math.ceil(chars / 4),
                        TTL_S.get(str(control.get("ttl") or "5m"), 300.0)))
    return out


def _chars(block: Any) -> int:
    if not isinstance(block, dict):
        return len(str(block))
    if block.get("type") == "document":
        return document_chars(block)
    if block.get("type") == "image":
        return 1500
    if "input_schema" in block or block.get("type") == "tool_use":
        return len(json.dumps(block))
    if block.get("type") == "tool_result":
        inner = block.get("content")
        return len(inner) if isinstance(inner, str) else sum(_chars(b) for b in inner or [])
    if block.get("type") == "thinking":
        return len(str(block.get("thinking", "")))
    return len(str(block.get("text", "")))
