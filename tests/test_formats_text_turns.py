"""Plain text turns take short paths through the codecs (a Messages turn whose content is a
string, a canonical user turn of one plain text part encoded for OpenAI Chat); these tests hold
each short path to the result of the general one, on the recorded fixtures and edge cases."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from routerd.formats import anthropic_messages as am
from routerd.formats import openai_chat
from routerd.formats.canonical import CanonicalRequest, Message, TextPart

FIXTURES = Path(__file__).parent / "fixtures"
TEXT_KEYS = {"type", "text"}


def fixture_body(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text())
    body: dict[str, Any] = data.get("body", data)
    return body


EDGES: dict[str, Any] = {
    "model": "m",
    "max_tokens": 100,
    "messages": [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": "ok", "x-hint": 1},
        {"role": "user", "content": "ünïcode ✓\nline two"},
        {"role": "user", "content": "a second user turn in a row"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "result"},
                {"type": "text", "text": "and", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            ],
        },
        {"role": "system", "content": "folded"},
        {"role": "user", "content": [{"type": "text", "text": "one plain block"}]},
    ],
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
}
BODIES = {
    "claude_code": fixture_body("formats/anthropic_request_claude_code.json"),
    "claude_code_turn2": fixture_body("agents/claude-code-2.1.197-messages-turn2.json"),
    "edges": EDGES,
}


def as_blocks(body: dict[str, Any]) -> dict[str, Any]:
    """Every string `content` written as the one text block it stands for."""
    out = copy.deepcopy(body)
    for m in out["messages"]:
        if isinstance(m["content"], str):
            m["content"] = [{"type": "text", "text": m["content"]}]
    return out


def as_strings(body: dict[str, Any]) -> dict[str, Any]:
    """Every `content` of exactly one plain text block written as a string."""
    out = copy.deepcopy(body)
    for m in out["messages"]:
        content = m["content"]
        plain = isinstance(content, list) and len(content) == 1 and set(content[0]) == TEXT_KEYS
        if plain and content[0]["type"] == "text":
            m["content"] = content[0]["text"]
    return out


@pytest.mark.parametrize("name", sorted(BODIES))
def test_string_content_decodes_like_its_text_block(name: str) -> None:
    body = BODIES[name]
    general = am.decode_request(as_blocks(body))
    assert am.decode_request(body) == general
    assert am.decode_request(as_strings(body)) == general


@pytest.mark.parametrize("name", sorted(BODIES))
def test_string_and_block_turns_translate_to_the_same_openai_body(name: str) -> None:
    body = BODIES[name]
    general = openai_chat.encode_request(am.decode_request(as_blocks(body)))
    assert openai_chat.encode_request(am.decode_request(as_strings(body))) == general
    assert openai_chat.encode_request(am.decode_request(body)) == general


def test_edge_turns_reach_openai_as_expected() -> None:
    body, dropped = openai_chat.encode_request(am.decode_request(EDGES))
    assert body["messages"][0] == {"role": "system", "content": "folded"}
    assert body["messages"][1] == {"role": "user", "content": ""}
    assert body["messages"][2] == {"role": "assistant", "content": "ok"}
    assert body["messages"][3] == {"role": "user", "content": "ünïcode ✓\nline two"}
    assert body["messages"][-1] == {"role": "user", "content": "one plain block"}
    assert "messages.x-hint" in dropped and "messages.content.cache_control" in dropped


def _encode(message: Message, source: str) -> tuple[dict[str, Any], list[str]]:
    req = CanonicalRequest(model="m", messages=(message,), source_format=source)
    return openai_chat.encode_request(req)


@pytest.mark.parametrize("text", ["", "hi", "ünïcode ✓\n"])
def test_plain_user_turn_encodes_like_the_general_path(text: str) -> None:
    plain = Message(role="user", content=(TextPart(text=text),))
    body, dropped = _encode(plain, "anthropic_messages")
    assert body["messages"] == [{"role": "user", "content": text}] and dropped == []
    # the same turn with extras takes the general path; a foreign source drops them
    tagged_turn = Message(role="user", content=(TextPart(text=text),), extras={"x": 1})
    hint = {"cache_control": {"type": "ephemeral"}}
    tagged_part = Message(role="user", content=(TextPart(text=text, extras=hint),))
    for message, name in (
        (tagged_turn, "messages.x"),
        (tagged_part, "messages.content.cache_control"),
    ):
        general, general_dropped = _encode(message, "anthropic_messages")
        assert general["messages"] == body["messages"] and general_dropped == [name]


def test_same_format_user_turn_keeps_its_name() -> None:
    messages = [
        {"role": "user", "content": "hi", "name": "bob"},
        {"role": "user", "content": [{"type": "text", "text": "there"}]},
    ]
    req = openai_chat.decode_request({"model": "m", "messages": messages})
    body, dropped = openai_chat.encode_request(req)
    assert body["messages"] == [messages[0], {"role": "user", "content": "there"}]
    assert dropped == []
