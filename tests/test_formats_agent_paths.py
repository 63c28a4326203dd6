"""Agent-sized requests (many tools, long system prompts) take short paths through the codecs:
a Messages tool of only name, description and schema is decoded without looking for extras,
`ToolNameMap` registers a strict-valid tool name as itself without the general `add`, the Chat
encoder writes a function tool with a description and parameters and no `strict` directly and
skips the extras of parts and turns that hold the shared empty mapping; these tests hold each
short path to the result of the general one, on the recorded fixtures and edge cases."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from routerd.formats import anthropic_messages as am
from routerd.formats import openai_chat
from routerd.formats.canonical import (
    EMPTY,
    CanonicalRequest,
    Message,
    Part,
    TextPart,
    Tool,
    ToolNameMap,
    ToolResultPart,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_body(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text())
    body: dict[str, Any] = data.get("body", data)
    return body


SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}
EDGE_TOOLS: list[dict[str, Any]] = [
    {"name": "plain", "description": "d", "input_schema": SCHEMA},
    {"name": "bare", "input_schema": SCHEMA},
    {"name": "no_schema"},
    {"name": "typed", "type": "custom", "input_schema": SCHEMA},
    {"name": "strict", "input_schema": SCHEMA, "strict": True},
    {"name": "hinted", "input_schema": SCHEMA, "cache_control": {"type": "ephemeral"}},
    {"name": "deferred", "input_schema": SCHEMA, "defer_loading": True, "strict": False},
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
]
BODIES = {
    "claude_code": fixture_body("formats/anthropic_request_claude_code.json"),
    "claude_code_turn2": fixture_body("agents/claude-code-2.1.197-messages-turn2.json"),
    "edges": {
        "model": "m",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": EDGE_TOOLS,
    },
}


def general_tools(body: dict[str, Any]) -> dict[str, Any]:
    """Every client tool given an explicit `"strict": null` (what an absent `strict` means), which
    keeps it off the short path for tools of only name, description and schema."""
    out = copy.deepcopy(body)
    for t in out["tools"]:
        if t.get("type") in (None, "custom"):
            t.setdefault("strict", None)
    return out


@pytest.mark.parametrize("name", sorted(BODIES))
def test_plain_tools_decode_like_the_general_path(name: str) -> None:
    body = BODIES[name]
    general = am.decode_request(general_tools(body))
    short = am.decode_request(body)
    assert short == general
    assert [t.extras for t in short.tools] == [t.extras for t in general.tools]
    assert openai_chat.encode_request(short) == openai_chat.encode_request(general)
    assert am.encode_request(short) == am.encode_request(general)


def test_edge_tools_decode_as_expected() -> None:
    tools = am.decode_request(BODIES["edges"]).tools
    assert [t.name for t in tools] == [t["name"] for t in EDGE_TOOLS[:-1]]
    assert tools[0] == Tool(name="plain", description="d", parameters=SCHEMA)
    assert tools[2] == Tool(name="no_schema")
    assert tools[4].strict is True and tools[6].strict is False
    assert tools[5].extras == {"cache_control": {"type": "ephemeral"}}
    assert tools[6].extras == {"defer_loading": True}
    assert all(not t.extras for t in tools[:5])


# ---------------------------------------------------------------------------------------------
# ToolNameMap.for_request


def general_map(req: CanonicalRequest) -> ToolNameMap:
    """The map `for_request` builds, registered one `add` at a time in the same order."""
    names = ToolNameMap()
    for tool in req.tools:
        names.add(tool.name, tool.kind)
    if req.tool_choice is not None and req.tool_choice.name:
        names.add(req.tool_choice.name)
    return names


def same_map(a: ToolNameMap, b: ToolNameMap, canonical: list[str]) -> None:
    wires = [a.to_wire(n) for n in canonical]
    assert wires == [b.to_wire(n) for n in canonical]
    assert [a.kind(n) for n in canonical] == [b.kind(n) for n in canonical]
    assert [a.from_wire(w) for w in wires] == [b.from_wire(w) for w in wires] == canonical


EDGE_NAMES: list[tuple[str, str]] = [
    ("Read", "function"),
    ("Read", "custom"),  # a name again: the first kind stays
    ("apply_patch", "custom"),
    ("mcp__github.search", "function"),  # invalid: sanitised with a hash suffix
    ("x" * 64, "function"),
    ("x" * 65, "function"),
    ("", "function"),
    ("trailing\n", "function"),
    ("ünïcode", "function"),
]


def _with_tools(tools: tuple[Tool, ...]) -> CanonicalRequest:
    hi = Message(role="user", content=(TextPart(text="hi"),))
    return CanonicalRequest(model="m", messages=(hi,), tools=tools)


def _request(tools: list[tuple[str, str]]) -> CanonicalRequest:
    return _with_tools(tuple(Tool(name=n, kind=k) for n, k in tools))  # type: ignore[arg-type]


def _taken_wire_name() -> list[tuple[str, str]]:
    """A valid name that equals the wire name an earlier invalid name was given."""
    wire = ToolNameMap(["a.b"]).to_wire("a.b")
    return [("a.b", "function"), (wire, "custom"), ("c", "function")]


@pytest.mark.parametrize(
    "tools",
    [EDGE_NAMES, list(reversed(EDGE_NAMES)), _taken_wire_name()],
    ids=["edges", "edges_reversed", "taken_wire_name"],
)
def test_tool_names_register_like_the_general_path(tools: list[tuple[str, str]]) -> None:
    req = _request(tools)
    same_map(ToolNameMap.for_request(req), general_map(req), [n for n, _ in tools])


@pytest.mark.parametrize("name", sorted(BODIES))
def test_fixture_tool_names_register_like_the_general_path(name: str) -> None:
    req = am.decode_request(BODIES[name])
    same_map(ToolNameMap.for_request(req), general_map(req), [t.name for t in req.tools])


def test_a_valid_name_taken_as_a_wire_name_is_given_its_own() -> None:
    tools = _taken_wire_name()
    names = ToolNameMap.for_request(_request(tools))
    taken = tools[1][0]
    assert names.to_wire("a.b") == taken and names.to_wire(taken) != taken
    assert names.from_wire(names.to_wire(taken)) == taken and names.kind(taken) == "custom"


# ---------------------------------------------------------------------------------------------
# OpenAI Chat tools

EDGE_CANONICAL_TOOLS = (
    Tool(name="plain", description="d", parameters=SCHEMA),
    Tool(name="empty", description="", parameters={}),
    Tool(name="no_text", parameters=SCHEMA),
    Tool(name="no_params", description="d"),
    Tool(name="strict", description="d", parameters=SCHEMA, strict=True),
    Tool(name="loose", description="d", parameters=SCHEMA, strict=False),
    Tool(name="apply_patch", description="d", kind="custom", format={"type": "grammar"}),
    Tool(name="mcp.search", description="d", parameters=SCHEMA, extras={"x": 1}),
)


@pytest.mark.parametrize("name", [*sorted(BODIES), "canonical_edges"])
def test_chat_tools_encode_like_the_general_path(name: str) -> None:
    if name == "canonical_edges":
        req = _with_tools(EDGE_CANONICAL_TOOLS)
    else:
        req = am.decode_request(BODIES[name])
    names = ToolNameMap.for_request(req)
    body, dropped = openai_chat.encode_request(req, names=names)
    assert body["tools"] == [openai_chat._encode_tool(t, names) for t in req.tools]
    extras = [f"tools.{k}" for t in req.tools for k in t.extras]
    extras += [k for k in req.extras if k.startswith("tools.")]  # server tools come last
    assert [d for d in dropped if d.startswith("tools.")] == list(dict.fromkeys(extras))


def test_chat_tool_parameters_are_a_copy() -> None:
    body, _ = openai_chat.encode_request(_with_tools(EDGE_CANONICAL_TOOLS))
    assert body["tools"][0] == {
        "type": "function",
        "function": {"name": "plain", "description": "d", "parameters": SCHEMA},
    }
    assert body["tools"][0]["function"]["parameters"] is not SCHEMA
    assert body["tools"][7]["function"]["name"] != "mcp.search"


# ---------------------------------------------------------------------------------------------
# OpenAI Chat messages: parts and turns without extras


def _unshared(part: Part) -> Part:
    """The part with an empty dict of its own instead of the shared EMPTY (the general path)."""
    if isinstance(part, ToolResultPart):
        part = dataclasses.replace(part, content=tuple(_unshared(p) for p in part.content))
    if getattr(part, "extras", None) is EMPTY:
        return dataclasses.replace(part, extras={})  # type: ignore[call-arg]
    return part


def unshared(req: CanonicalRequest) -> CanonicalRequest:
    messages = tuple(
        dataclasses.replace(
            m,
            content=tuple(_unshared(p) for p in m.content),
            extras={} if m.extras is EMPTY else m.extras,
        )
        for m in req.messages
    )
    system = tuple(_unshared(p) for p in req.system)
    return dataclasses.replace(req, messages=messages, system=system)  # type: ignore[arg-type]


EDGE_TURNS: dict[str, Any] = {
    "model": "m",
    "max_tokens": 100,
    "system": [{"type": "text", "text": "one"}, {"type": "text", "text": "two", "x": 1}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "ok", "x-hint": 1},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "calling", "y": 5},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}, "x": 2},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "r", "x": 3},
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True, "content": []},
                {"type": "text", "text": "and", "cache_control": {"type": "ephemeral"}},
            ],
        },
        {"role": "user", "content": [{"type": "text", "text": "solo", "x": 4}]},
    ],
}
CHAT_BODIES = {
    "tools": fixture_body("formats/openai_chat_request_tools.json"),
    "named": {
        "model": "m",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "s", "x": 1}]},
            {"role": "user", "content": "hi", "name": "bob"},
            {"role": "user", "content": [{"type": "text", "text": "a", "x": 1}]},
            {"role": "assistant", "content": "ok", "name": "eve"},
        ],
    },
}


def _decoded() -> dict[str, CanonicalRequest]:
    out = {name: am.decode_request(body) for name, body in BODIES.items()}
    out["edge_turns"] = am.decode_request(EDGE_TURNS)
    out.update({f"chat_{n}": openai_chat.decode_request(b) for n, b in CHAT_BODIES.items()})
    return out


@pytest.mark.parametrize("name", [*sorted(BODIES), "edge_turns", "chat_tools", "chat_named"])
def test_chat_messages_without_extras_encode_like_the_general_path(name: str) -> None:
    req = _decoded()[name]
    general = unshared(req)
    assert general.messages[0].extras is not EMPTY
    assert openai_chat.encode_request(req) == openai_chat.encode_request(general)


def test_edge_turns_reach_openai_with_their_extras_reported() -> None:
    body, dropped = openai_chat.encode_request(am.decode_request(EDGE_TURNS))
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "one"},
        {"type": "text", "text": "two"},
    ]
    assert body["messages"][1] == {
        "role": "user",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
    }
    call = {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    assert body["messages"][2:] == [
        {"role": "assistant", "content": "ok"},
        {"role": "assistant", "content": "calling", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "r"},
        {"role": "tool", "tool_call_id": "toolu_1", "content": ""},
        {"role": "user", "content": "and"},
        {"role": "user", "content": "solo"},
    ]
    assert dropped == [
        "system.x",
        "messages.x-hint",
        "messages.content.y",
        "messages.content.x",
        "messages.x",
        "messages.content.is_error",
        "messages.content.cache_control",
    ]


def test_same_format_extras_are_kept() -> None:
    body, dropped = openai_chat.encode_request(_decoded()["chat_named"])
    assert dropped == []
    assert body["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "s", "x": 1}]},
        {"role": "user", "content": "hi", "name": "bob"},
        {"role": "user", "content": [{"type": "text", "text": "a", "x": 1}]},
        {"role": "assistant", "content": "ok", "name": "eve"},
    ]
