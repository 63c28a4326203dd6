"""Anthropic Messages <-> canonical: requests, responses, usage and the error envelope.

Owns the top-level wire shapes of `POST /v1/messages` bodies and `message` objects (field names
from the `anthropic` SDK's `types/`): system, tools and `tool_choice`, sampling, `thinking` and
`output_config` (effort, JSON-schema format), `metadata.user_id`, and the error envelope.
Content blocks live in `anthropic_blocks.py`; responses, stop reasons and usage in
`anthropic_response.py` (re-exported here, so this module has the whole codec function set); the
stream codecs in `anthropic_stream.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from routerd.formats.anthropic_blocks import (
    FORMAT,
    ORIGIN,
    BlockEncoder,
    decode_messages,
    decode_system,
)
from routerd.formats.anthropic_response import (
    STOP_FROM_WIRE,
    STOP_TO_WIRE,
    decode_response,
    decode_usage,
    encode_response,
    encode_usage,
)
from routerd.formats.canonical import (
    EMPTY,
    CanonicalRequest,
    Reasoning,
    ResponseFormat,
    Sampling,
    Tool,
    ToolChoice,
    ToolNameMap,
    TranslationError,
    check_contract,
    dedupe,
)

__all__ = [
    "FORMAT",
    "ORIGIN",
    "STOP_FROM_WIRE",
    "STOP_TO_WIRE",
    "decode_request",
    "decode_response",
    "decode_usage",
    "encode_request",
    "encode_response",
    "encode_usage",
    "error_body",
]

DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024
EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
EFFORT_BUDGET["max"] = 65536
ANTHROPIC_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})

ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "timeout_error",
        "api_error",
        "overloaded_error",
    }
)

_HANDLED = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "output_config",
        "stream",
    }
)
# nested objects whose unknown fields are extras (dotted), and `tools` (server tools are extras)
_NESTED_KNOWN = (
    ("thinking", ("type", "budget_tokens")),
    ("output_config", ("effort", "format")),
    ("metadata", ("user_id",)),
)
_NESTED = frozenset({"thinking", "output_config", "metadata", "tools"})
NO_CHOICE: tuple[ToolChoice | None, bool | None] = (None, None)
_TOOL_FIELDS = frozenset({"name", "description", "input_schema", "strict", "type"})
# a tool of only these fields (the usual client tool) is decoded without looking for extras
_PLAIN_TOOL_FIELDS = frozenset({"name", "description", "input_schema", "type"})
_CLIENT_TOOL_TYPES = (None, "custom")  # a tuple: a malformed, unhashable `type` is not one
_CUSTOM_INPUT_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string"}},
    "required": ["input"],
}


# ---------------------------------------------------------------------------------------------
# Requests


def decode_request(body: Mapping[str, Any]) -> CanonicalRequest:
    """A Messages request body -> canonical request."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise TranslationError("model", "a model name is required")
    if not isinstance(body.get("max_tokens"), int):
        raise TranslationError("max_tokens", "max_tokens is required")
    folded, messages = decode_messages(body.get("messages"))
    # the optional fields, most often absent, are decoded only when present
    system, tools = body.get("system"), body.get("tools")
    choice, parallel = _decode_tool_choice(raw) if (raw := body.get("tool_choice")) else NO_CHOICE
    output_config = body.get("output_config") or {}
    fmt, effort = output_config.get("format"), output_config.get("effort")
    thinking = body.get("thinking")
    metadata = body.get("metadata")
    return CanonicalRequest(
        model=model,
        messages=tuple(messages),
        system=tuple(decode_system(system) + folded) if system is not None else tuple(folded),
        tools=_decode_tools(tools) if tools else (),
        tool_choice=choice,
        parallel_tool_calls=parallel,
        sampling=Sampling(
            max_tokens=body["max_tokens"],
            temperature=body.get("temperature"),
            top_p=body.get("top_p"),
            top_k=body.get("top_k"),
            stop=tuple(stop) if (stop := body.get("stop_sequences")) else (),
        ),
        response_format=_decode_format(fmt) if fmt else None,
        reasoning=_decode_reasoning(thinking, effort) if thinking or effort else None,
        stream=bool(body.get("stream")),
        include_usage=True,
        user=metadata.get("user_id") if metadata else None,
        source_format=FORMAT,
        extras=_decode_extras(body),
    )


def _decode_tools(tools: Any) -> tuple[Tool, ...]:
    client, plain = _CLIENT_TOOL_TYPES, _PLAIN_TOOL_FIELDS
    out: list[Tool] = []
    for t in tools:
        if t.get("type") not in client:
            continue  # a server tool: an extra
        if t.keys() <= plain:  # no `strict`, no extras: the fields are read directly
            tool = Tool(
                name=t["name"], description=t.get("description"), parameters=t.get("input_schema")
            )
        else:
            tool = _decode_tool(t)
        out.append(tool)
    return tuple(out)


def _decode_tool(t: Mapping[str, Any]) -> Tool:
    extras = {k: v for k, v in t.items() if k not in _TOOL_FIELDS}
    return Tool(
        name=t["name"],
        description=t.get("description"),
        parameters=t.get("input_schema"),
        strict=t.get("strict"),
        extras=extras or EMPTY,
    )


def _decode_tool_choice(raw: Any) -> tuple[ToolChoice | None, bool | None]:
    if not raw:
        return None, None
    modes = {"auto": "auto", "any": "required", "none": "none", "tool": "tool"}
    mode = modes.get(raw.get("type"))
    if mode is None:
        raise TranslationError("tool_choice", f"unknown type {raw.get('type')!r}")
    disable = raw.get("disable_parallel_tool_use")
    choice = ToolChoice(mode=mode, name=raw.get("name"))  # type: ignore[arg-type]
    return choice, (not disable) if disable is not None else None


def _decode_format(raw: Any) -> ResponseFormat | None:
    if not raw:
        return None
    if raw.get("type") != "json_schema":
        raise TranslationError("output_config.format", f"unknown type {raw.get('type')!r}")
    return ResponseFormat(kind="json_schema", schema=raw.get("schema"), strict=True)


def _decode_reasoning(thinking: Any, effort: Any) -> Reasoning | None:
    if not thinking and not effort:
        return None
    thinking = thinking or {}
    mode = thinking.get("type")
    if mode not in (None, "enabled", "adaptive", "disabled"):
        raise TranslationError("thinking.type", f"unknown type {mode!r}")
    return Reasoning(effort=effort, budget_tokens=thinking.get("budget_tokens"), mode=mode)


def _decode_extras(body: Mapping[str, Any]) -> dict[str, Any]:
    extras = {k: v for k, v in body.items() if k not in _HANDLED and v is not None}
    if _NESTED.isdisjoint(body):
        return extras
    for parent, known in _NESTED_KNOWN:
        for k, v in (body.get(parent) or {}).items():
            if k not in known and v is not None:
                extras[f"{parent}.{k}"] = v
    client = _CLIENT_TOOL_TYPES
    for t in body.get("tools") or ():
        if t.get("type") not in client:
            extras.setdefault(f"tools.{t.get('type')}", []).append(t)
    return extras


def encode_request(
    req: CanonicalRequest,
    *,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    supports_thinking: bool = True,
    names: ToolNameMap | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Canonical request -> Messages body, plus the names of fields dropped.

    `default_max_tokens` (the model's catalog default) fills the required `max_tokens` when the
    source had none. With `supports_thinking=False` foreign reasoning settings are dropped.
    """
    check_contract(req, FORMAT)
    names = names if names is not None else ToolNameMap.for_request(req)
    dropped: list[str] = []
    same = req.source_format == FORMAT
    enc = BlockEncoder(names, dropped, same)
    body: dict[str, Any] = {"model": req.model}
    body["max_tokens"] = req.sampling.max_tokens or default_max_tokens
    body["messages"] = enc.messages(req)
    system = enc.system(req.system)
    if system is not None:
        body["system"] = system
    _encode_tools(req, enc, body)
    if same:
        thinking = _encode_same_reasoning(req, body)
    elif supports_thinking:
        thinking = _encode_reasoning(req, body, dropped)
    else:
        thinking = False
        if req.reasoning is not None and req.reasoning.mode != "disabled":
            dropped.append("reasoning_effort" if req.reasoning.effort else "thinking")
    if same:
        _encode_sampling(req, body, dropped, thinking=False, foreign=False)
    else:
        _encode_sampling(req, body, dropped, thinking=thinking, foreign=True)
    _encode_format(req, body)
    if req.user is not None:
        body["metadata"] = {"user_id": req.user}
    if req.stream:
        body["stream"] = True
    if same:
        _restore(body, req.extras)
    else:
        dropped.extend(req.extras)
    return body, dedupe(dropped)


def _restore(body: dict[str, Any], extras: Mapping[str, Any]) -> None:
    for key, value in extras.items():
        parent, _, child = key.partition(".")
        if parent == "tools":
            body.setdefault("tools", []).extend(value)
        elif child:
            body.setdefault(parent, {})[child] = value
        else:
            body[key] = value


def _encode_tools(req: CanonicalRequest, enc: BlockEncoder, body: dict[str, Any]) -> None:
    if req.tools:
        body["tools"] = [_encode_tool(t, enc) for t in req.tools]
    choice: dict[str, Any] | None = None
    tc = req.tool_choice
    if tc is not None:
        wire = {"auto": "auto", "required": "any", "none": "none", "tool": "tool"}[tc.mode]
        choice = {"type": wire}
        if tc.mode == "tool":
            choice["name"] = enc.names.to_wire(tc.name or "")
    if req.parallel_tool_calls is False and (choice is None or choice["type"] != "none"):
        choice = choice or {"type": "auto"}
        choice["disable_parallel_tool_use"] = True
    if choice is not None and (req.tools or choice["type"] == "none"):
        body["tool_choice"] = choice


def _encode_tool(tool: Tool, enc: BlockEncoder) -> dict[str, Any]:
    out: dict[str, Any] = {"name": enc.names.to_wire(tool.name)}
    if tool.description is not None:
        out["description"] = tool.description
    if tool.kind == "custom":
        out["input_schema"] = _CUSTOM_INPUT_SCHEMA
        if tool.format is not None and tool.format.get("type") != "text":
            enc.dropped.append("tools.format")
    else:
        params = tool.parameters if tool.parameters is not None else {}
        out["input_schema"] = dict(params) or {"type": "object", "properties": {}}
        if tool.strict is not None:
            out["strict"] = tool.strict
    enc.extras(out, tool.extras, "tools")
    return out


def _encode_same_reasoning(req: CanonicalRequest, body: dict[str, Any]) -> bool:
    r = req.reasoning
    if r is None:
        return False
    if r.mode is not None:
        thinking: dict[str, Any] = {"type": r.mode}
        if r.budget_tokens is not None:
            thinking["budget_tokens"] = r.budget_tokens
        body["thinking"] = thinking
    if r.effort is not None:
        body.setdefault("output_config", {})["effort"] = r.effort
    return r.mode in ("enabled", "adaptive")


def _encode_reasoning(req: CanonicalRequest, body: dict[str, Any], dropped: list[str]) -> bool:
    """Foreign reasoning settings -> `thinking` (+ `output_config.effort` when adaptive)."""
    r = req.reasoning
    if r is None or r.mode == "disabled" or (r.mode is None and r.effort in (None, "none")):
        return False
    if r.mode == "adaptive":
        body["thinking"] = {"type": "adaptive"}
        if r.effort is not None:
            effort = r.effort if r.effort in ANTHROPIC_EFFORTS else "low"
            body.setdefault("output_config", {})["effort"] = effort
        return True
    budget = r.budget_tokens or EFFORT_BUDGET.get(r.effort or "medium", EFFORT_BUDGET["medium"])
    budget = min(budget, body["max_tokens"] - 1)
    if budget < MIN_THINKING_BUDGET:
        dropped.append("reasoning_effort" if r.effort else "thinking")
        return False
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return True


def _encode_sampling(
    req: CanonicalRequest,
    body: dict[str, Any],
    dropped: list[str],
    *,
    thinking: bool,
    foreign: bool,
) -> None:
    """Sampling fields. For foreign sources, apply the API's rules: extended thinking wants
    temperature 1, top_p >= 0.95 and no top_k; current models refuse temperature with top_p."""
    s = req.sampling
    if foreign and s.temperature is not None and s.top_p is not None:
        dropped.append("top_p")
        s = replace(s, top_p=None)
    if s.temperature is not None:
        if thinking and s.temperature != 1:
            dropped.append("temperature")  # extended thinking requires temperature 1
        else:
            body["temperature"] = s.temperature
    if s.top_p is not None:
        if thinking and s.top_p < 0.95:
            dropped.append("top_p")
        else:
            body["top_p"] = s.top_p
    if s.top_k is not None:
        if thinking:
            dropped.append("top_k")
        else:
            body["top_k"] = s.top_k
    if s.stop:
        body["stop_sequences"] = list(s.stop)
    if s.seed is not None:
        dropped.append("seed")


def _encode_format(req: CanonicalRequest, body: dict[str, Any]) -> None:
    rf = req.response_format
    if rf is None or rf.kind == "text":
        return
    if rf.kind == "json_object" or rf.schema is None:
        raise TranslationError(
            "response_format", "Anthropic needs a JSON schema; json_object cannot be honoured"
        )
    fmt = {"type": "json_schema", "schema": dict(rf.schema)}
    body.setdefault("output_config", {})["format"] = fmt


# ---------------------------------------------------------------------------------------------
# Errors


def error_body(
    message: str, type: str = "invalid_request_error", request_id: str | None = None
) -> dict[str, Any]:
    """The Anthropic error envelope `{"type": "error", "error": {"type", "message"}}`."""
    if type not in ERROR_TYPES:
        type = "api_error"
    out: dict[str, Any] = {"type": "error", "error": {"type": type, "message": message}}
    if request_id is not None:
        out["request_id"] = request_id
    return out
