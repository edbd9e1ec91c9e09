"""Extended thinking, tool use, documents (PDF) and prompt caching through /v1/messages, JSON and streams, with
the official Python SDK (in process), over each provider's wire format: what the provider sent reaches the caller
unchanged (the simulator checks the thinking signature when the block comes back, and answers tool results it
can match to its tool_use), and cache reads and writes are in the usage."""

from __future__ import annotations

import base64
from typing import Any

import anthropic
import pytest

from audit.models import AuditEntry
from inference.models import UsageRecord
from tests.chat.test_v1_count_tokens import in_process  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

MODEL = "claude-sonnet-5-5"
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"},
                                                             "unit": {"type": "string",
                                                                      "enum": ["celsius", "fahrenheit"]}},
                            "required": ["city"]}}
LONG_SYSTEM = "You are the archivist of a large library. " * 150  # about 1600 tokens: cacheable


def pdf(pages: int) -> str:
    objects = "".join(f"{i + 3} 0 obj << /Type /Page /Parent 2 0 R >> endobj\n" for i in range(pages))
    raw = (f"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Count {pages} "
           f">> endobj\n{objects}trailer << /Root 1 0 R >>\n%%EOF\n").encode()
    return base64.b64encode(raw).decode()


@pytest.fixture
def sdk(sim: Any, tenant_a: Any, make_user: Any, api_key_for: Any, in_process: Any) -> anthropic.Anthropic:  # noqa: F811
    sim.prompt_cache.clear()
    # power_user: tools and documents (vision) are permitted
    return in_process(tenant_a, api_key_for(tenant_a, make_user(tenant_a, "power_user")))


@pytest.fixture(params=["anthropic", "bedrock", "vertex"])
def provider(request: Any, sim: Any) -> str:
    """Serve through this provider: the ones before it in the order (anthropic, bedrock, vertex) answer 503."""
    if request.param != "anthropic":
        sim.faults.set("anthropic", status=503)
    if request.param == "vertex":
        sim.faults.set("bedrock", "*", status=503)
    return str(request.param)


def served_by(sim: Any) -> str:
    return str([r for r in sim.requests() if r["provider"] in ("anthropic", "bedrock", "vertex")][-1]["provider"])


def test_thinking_json_and_back_unchanged(sdk: anthropic.Anthropic, sim: Any, provider: str) -> None:
    ask = [{"role": "user", "content": "Why is the sky blue?"}]
    first = sdk.messages.create(model=MODEL, max_tokens=2048, messages=ask,  # type: ignore[arg-type]
                                thinking={"type": "enabled", "budget_tokens": 1024})
    assert served_by(sim) == provider
    assert [b.type for b in first.content] == ["thinking", "text"]
    thinking = first.content[0]
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    # The block goes back as it came: the provider checks its signature (a changed block is a 400).
    second = sdk.messages.create(model=MODEL, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
                                 messages=[*ask, {"role": "assistant", "content": first.content},  # type: ignore[list-item]
                                           {"role": "user", "content": "And at sunset?"}])
    assert second.content[-1].type == "text"
    tampered = {"type": "thinking", "thinking": thinking.thinking + " (edited)", "signature": thinking.signature}
    with pytest.raises(anthropic.BadRequestError, match="signature"):
        sdk.messages.create(model=MODEL, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
                            messages=[*ask, {"role": "assistant", "content": [tampered, first.content[1]]},  # type: ignore[list-item]
                                      {"role": "user", "content": "And at sunset?"}])


def test_thinking_stream(sdk: anthropic.Anthropic, sim: Any, provider: str) -> None:
    kinds: list[str] = []
    with sdk.messages.stream(model=MODEL, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
                             messages=[{"role": "user", "content": "Why is the sky blue?"}]) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
        final = stream.get_final_message()
    assert served_by(sim) == provider
    assert {"thinking_delta", "signature_delta", "text_delta"} <= set(kinds)
    assert final.content[0].type == "thinking" and final.content[0].signature
    again = sdk.messages.create(model=MODEL, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
                                messages=[{"role": "user", "content": "Why is the sky blue?"},
                                          {"role": "assistant", "content": final.content},  # type: ignore[list-item]
                                          {"role": "user", "content": "Thanks"}])
    assert again.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_round_trip(sdk: anthropic.Anthropic, sim: Any, provider: str, stream: bool) -> None:
    ask = [{"role": "user", "content": "Use get_weather: what is the weather in Paris?"}]
    if stream:
        with sdk.messages.stream(model=MODEL, max_tokens=256, tools=[WEATHER],  # type: ignore[list-item]
                                 messages=ask) as opened:  # type: ignore[arg-type]
            message = opened.get_final_message()
    else:
        message = sdk.messages.create(model=MODEL, max_tokens=256, tools=[WEATHER], messages=ask)  # type: ignore[list-item, arg-type]
    assert served_by(sim) == provider
    assert message.stop_reason == "tool_use"
    call = message.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather"
    assert call.input == {"city": "Paris", "unit": "celsius"}
    answer = sdk.messages.create(model=MODEL, max_tokens=256, tools=[WEATHER], messages=[  # type: ignore[list-item]
        *ask, {"role": "assistant", "content": message.content},  # type: ignore[list-item]
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"}]}])
    assert answer.stop_reason == "end_turn"
    assert "18 C, sunny" in answer.content[0].text  # type: ignore[union-attr]


def test_tool_choice_and_a_result_for_an_unknown_call(sdk: anthropic.Anthropic, sim: Any) -> None:
    forced = sdk.messages.create(model=MODEL, max_tokens=256, tools=[WEATHER],  # type: ignore[list-item]
                                 tool_choice={"type": "tool", "name": "get_weather"},
                                 messages=[{"role": "user", "content": "Tell me about Rome"}])
    assert forced.content[-1].type == "tool_use"
    with pytest.raises(anthropic.BadRequestError, match="tool_use_id"):
        sdk.messages.create(model=MODEL, max_tokens=256, tools=[WEATHER], messages=[  # type: ignore[list-item]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_nope", "content": "x"}]}])


@pytest.mark.parametrize("stream", [False, True])
def test_pdf_document_reaches_the_provider_whole(sdk: anthropic.Anthropic, sim: Any, provider: str,
                                                 stream: bool) -> None:
    content = [{"type": "document", "title": "Annual report",
                "source": {"type": "base64", "media_type": "application/pdf", "data": pdf(3)}},
               {"type": "text", "text": "Summarise this report."}]
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": content}]}
    if stream:
        with sdk.messages.stream(**kwargs) as opened:
            message = opened.get_final_message()
    else:
        message = sdk.messages.create(**kwargs)
    assert served_by(sim) == provider
    assert "\u201cAnnual report\u201d (3 pages)" in message.content[0].text  # type: ignore[union-attr]
    assert message.usage.input_tokens > 3 * 1500
    with pytest.raises(anthropic.BadRequestError, match="PDF"):
        sdk.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                            "data": base64.b64encode(b"not a pdf").decode()}},
            {"type": "text", "text": "Read it"}]}])


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_cache_writes_then_reads_and_is_recorded(sdk: anthropic.Anthropic, sim: Any, provider: str,
                                                        stream: bool, tenant_a: Any, in_tenant: Any) -> None:
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]

    def ask(question: str) -> Any:
        kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 128, "system": system,
                                  "messages": [{"role": "user", "content": question}]}
        if stream:
            with sdk.messages.stream(**kwargs) as opened:
                return opened.get_final_message()
        return sdk.messages.create(**kwargs)

    first, second = ask("Where are the maps?"), ask("Where are the atlases?")
    assert served_by(sim) == provider
    written = first.usage.cache_creation_input_tokens
    assert written and written > 1024 and not first.usage.cache_read_input_tokens
    assert second.usage.cache_read_input_tokens == written and not second.usage.cache_creation_input_tokens
    assert second.usage.input_tokens < 100  # only the question is new
    with in_tenant(tenant_a):
        records = list(AuditEntry.objects.filter(event_type="model_call", status="success").order_by("-seq")[:2])
        assert {r.metadata["provider"] for r in records} == {provider}
        if any(f.name == "cache_read_tokens" for f in UsageRecord._meta.get_fields()):  # cost's columns
            rows = list(UsageRecord.objects.order_by("-id")[:2].values("cache_read_tokens", "cache_write_tokens"))
            assert {"cache_read_tokens": written, "cache_write_tokens": 0} in rows
            assert {"cache_read_tokens": 0, "cache_write_tokens": written} in rows
