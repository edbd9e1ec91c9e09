"""validate_body's one walk of the messages answers what the three walks it replaced answered: the same
InvalidRequest messages for bad bodies, and for good ones has_images(body) and estimate_input_tokens(body)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from inference.calls import BodyFacts, InvalidRequest, estimate_input_tokens, has_images, validate_body

TEXT = {"type": "text", "text": "hello"}
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}


def body(messages: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-5-5", "max_tokens": 10, "messages": messages, **extra}


GOOD = [
    body([{"role": "user", "content": "hi"}]),
    body([{"role": "user", "content": "hi"}], system="Be brief."),
    body([{"role": "user", "content": "hi"}], system=None),
    body([{"role": "user", "content": "hi"}], system=[{"type": "text", "text": "Be brief."}]),
    body([{"role": "user", "content": [TEXT]}, {"role": "assistant", "content": "ok"}]),
    body([{"role": "user", "content": [TEXT, IMAGE]}]),
    body([{"role": "user", "content": [{"type": "document", "source": {}}]}]),
    body([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                        "content": [TEXT, {"type": "search_result", "content": [IMAGE]}]}]}]),
    body([{"role": "user", "content": "hi", "type": "image"}]),  # a message claiming a block's type
    body([{"role": "user", "content": "hi", "extra": {"nested": [IMAGE]}}]),  # hidden beside a text
    body([{"role": "user", "content": "hi", "extra": {"nested": [TEXT]}}]),
    body([{"role": "user", "content": "é" * 37}, {"role": "assistant", "content": [TEXT]}], stream=True),
]


@pytest.mark.parametrize("good", GOOD)
def test_one_walk_finds_what_the_three_found(good: dict[str, Any]) -> None:
    before = copy.deepcopy(good)
    assert validate_body(good) == BodyFacts(has_images=has_images(good), input_estimate=estimate_input_tokens(good))
    assert good == before


def test_the_images_are_found_wherever_they_are() -> None:
    assert [validate_body(b).has_images for b in GOOD] == [False, False, False, False, False, True, True, True,
                                                           True, True, False, False]
    assert validate_body(GOOD[1]).input_estimate == (2 + len("Be brief.")) // 4 + 1
    assert validate_body(GOOD[2]).input_estimate == (2 + len("None")) // 4 + 1


BAD = [
    ([], "The request body must be a JSON object."),
    ({"max_tokens": 1, "messages": []}, "model: Field required"),
    ({"model": "m", "max_tokens": True, "messages": []}, "max_tokens: Field required"),
    (body(None), "messages: Field required, a non-empty list"),
    (body([]), "messages: Field required, a non-empty list"),
    (body([{"role": "user", "content": "hi"}, {"role": "system", "content": "x"}]),
     "messages.1.role: must be 'user' or 'assistant'."),
    (body(["hi"]), "messages.0.role: must be 'user' or 'assistant'."),
    (body([{"role": "user", "content": [IMAGE]}, {"role": "user", "content": []}]),
     "messages.1.content: a string or a non-empty list of content blocks."),
    (body([{"role": "user"}]), "messages.0.content: a string or a non-empty list of content blocks."),
    (body([{"role": "user", "content": 3}]), "messages.0.content: a string or a non-empty list of content blocks."),
    (body([{"role": "user", "content": [TEXT, {"text": "no type"}]}]),
     "messages.0.content: every content block needs a type."),
    (body([{"role": "user", "content": ["text"]}]), "messages.0.content: every content block needs a type."),
    (body([{"role": "user", "content": "hi"}], stream="yes"), "stream: must be true or false."),
    (body([{"role": "user", "content": "hi"}], system=3), "system: a string or a list of text blocks."),
    (body([{"role": "user", "content": "hi"}], tools={}), "tools: must be a list."),
]


@pytest.mark.parametrize(("bad", "message"), BAD)
def test_bad_bodies_get_the_same_messages(bad: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_body(bad)
    assert str(caught.value).startswith(message)
