"""Agent-sized requests (many tools) take short paths through the codecs: a Messages tool of only
name, description and schema is decoded without looking for extras, `ToolNameMap` registers a
strict-valid tool name as itself without the general `add`, and the Chat encoder writes a function
tool with a description and parameters and no `strict` directly; these tests hold each short path
to the result of the general one, on the recorded fixtures and edge cases."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from routerd.formats import anthropic_messages as am
from routerd.formats import openai_chat
from routerd.formats.canonical import CanonicalRequest, Message, TextPart, Tool, ToolNameMap

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
