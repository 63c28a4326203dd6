"""OpenAI Chat Completions <-> canonical: requests, responses and the error envelope.

Owns the wire shapes of `POST /v1/chat/completions` bodies and `chat.completion` objects
(field names from the `openai` SDK's `types/chat`). The stream codecs for `chat.completion.chunk`
live in `openai_chat_stream.py`; both share the maps defined here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from routerd.formats import openai_chat_parts as parts
from routerd.formats.canonical import (
    EMPTY,
    CanonicalRequest,
    CanonicalResponse,
    Part,
    Reasoning,
    ResponseFormat,
    Sampling,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolNameMap,
    TranslationError,
    Usage,
    check_contract,
    dedupe,
)

FORMAT = "openai_chat"
REASONING_FIELDS = parts.REASONING_FIELDS
USER_MAX_LEN = 256

FINISH_TO_STOP: dict[str, StopReason] = {
    "stop": StopReason.end_turn,
    "length": StopReason.max_tokens,
    "tool_calls": StopReason.tool_use,
    "function_call": StopReason.tool_use,
    "content_filter": StopReason.content_filter,
}
STOP_TO_FINISH: dict[StopReason, str] = {
    StopReason.end_turn: "stop",
    StopReason.stop_sequence: "stop",
    StopReason.max_tokens: "length",
    StopReason.tool_use: "tool_calls",
    StopReason.content_filter: "content_filter",
    StopReason.error: "stop",
}

# Request fields decode_request maps onto canonical fields.
_HANDLED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "stream",
        "stream_options",
        "user",
    }
)
# Fields whose non-default values are contract fields; their defaults (n=1, false) mean nothing.
_NOOP = frozenset({"n", "logprobs", "top_logprobs", "audio", "modalities", "functions"})


# ---------------------------------------------------------------------------------------------
# Requests


def decode_request(body: Mapping[str, Any]) -> CanonicalRequest:
    """A Chat Completions request body -> canonical request."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise TranslationError("model", "a model name is required")
    system, messages = parts.decode_messages(body.get("messages"))
    effort = body.get("reasoning_effort")
    stream_options = body.get("stream_options") or {}
    return CanonicalRequest(
        model=model,
        messages=messages,
        system=system,
        tools=_decode_tools(body.get("tools")),
        tool_choice=_decode_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        sampling=_decode_sampling(body),
        response_format=_decode_response_format(body.get("response_format")),
        reasoning=Reasoning(effort=effort) if isinstance(effort, str) else None,
        stream=bool(body.get("stream")),
        include_usage=bool(stream_options.get("include_usage")),
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        source_format=FORMAT,
        extras=_decode_extras(body),
        contract=_decode_contract(body),
    )


def _decode_sampling(body: Mapping[str, Any]) -> Sampling:
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    return Sampling(
        max_tokens=max_tokens,
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        stop=stops,
        seed=body.get("seed"),
    )


def _decode_tools(raw: Any) -> tuple[Tool, ...]:
    tools: list[Tool] = []
    for t in raw or ():
        if t.get("type") == "custom":
            c = t.get("custom") or {}
            tools.append(
                Tool(
                    name=c["name"],
                    description=c.get("description"),
                    kind="custom",
                    format=c.get("format"),
                )
            )
        elif t.get("type", "function") == "function":
            f = t.get("function") or {}
            tools.append(
                Tool(
                    name=f["name"],
                    description=f.get("description"),
                    parameters=f.get("parameters"),
                    strict=f.get("strict"),
                )
            )
    return tuple(tools)


def _decode_tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        if raw not in ("auto", "none", "required"):
            raise TranslationError("tool_choice", f"unknown value {raw!r}")
        return ToolChoice(mode=raw)  # type: ignore[arg-type]
    kind = raw.get("type")
    if kind in ("function", "custom"):
        return ToolChoice(mode="tool", name=(raw.get(kind) or {}).get("name"))
    return None  # allowed_tools: carried in `contract`


def decode_format(kind: Any, schema: Mapping[str, Any], field: str) -> ResponseFormat:
    """An OpenAI output format (`text` | `json_object` | `json_schema` with its fields)."""
    if kind == "json_schema":
        return ResponseFormat(
            kind="json_schema",
            name=schema.get("name"),
            schema=schema.get("schema"),
            strict=schema.get("strict"),
            description=schema.get("description"),
        )
    if kind in ("text", "json_object"):
        return ResponseFormat(kind=kind)
    raise TranslationError(field, f"unknown type {kind!r}")


def _decode_response_format(raw: Any) -> ResponseFormat | None:
    if not raw:
        return None
    return decode_format(raw.get("type"), raw.get("json_schema") or {}, "response_format")


def _decode_contract(body: Mapping[str, Any]) -> dict[str, Any]:
    """Fields whose loss would change the answer's shape."""
    out: dict[str, Any] = {}
    if (body.get("n") or 1) > 1:
        out["n"] = body["n"]
    for key in ("logprobs", "top_logprobs", "audio", "functions", "function_call"):
        if body.get(key):
            out[key] = body[key]
    if "audio" in (body.get("modalities") or ()):
        out["modalities"] = body["modalities"]
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") == "allowed_tools":
        out["tool_choice"] = choice
    return out


def _decode_extras(body: Mapping[str, Any]) -> dict[str, Any]:
    contract = _decode_contract(body)
    extras = {
        k: v
        for k, v in body.items()
        if k not in _HANDLED and k not in contract and v is not None and k not in _NOOP
    }
    for k, v in (body.get("stream_options") or {}).items():
        if k != "include_usage":
            extras[f"stream_options.{k}"] = v
    for t in body.get("tools") or ():
        if t.get("type") not in (None, "function", "custom"):
            extras.setdefault(f"tools.{t.get('type')}", []).append(t)
    return extras


def encode_request(
    req: CanonicalRequest,
    *,
    max_tokens_field: str = "max_completion_tokens",
    supports_reasoning: bool = True,
    names: ToolNameMap | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Canonical request -> Chat Completions body, plus the names of fields dropped.

    Streams always ask for usage (`stream_options.include_usage`); `max_tokens_field` picks
    `max_completion_tokens` (OpenAI) or `max_tokens` (older compatible servers). With
    `supports_reasoning=False` (a model without reasoning) the effort is dropped, not sent.
    """
    check_contract(req, FORMAT)
    names = names if names is not None else ToolNameMap.for_request(req)
    dropped: list[str] = []
    body: dict[str, Any] = {"model": req.model}
    body["messages"] = parts.encode_messages(req, names, dropped)
    if req.tools or req.tool_choice is not None:
        _encode_tools(req, names, body, dropped)
    _encode_sampling(req, body, dropped, max_tokens_field)
    if req.response_format is not None:
        _encode_format(req, body)
    effort = reasoning_effort(req.reasoning) if req.reasoning is not None else None
    if effort is not None:
        if supports_reasoning:
            body["reasoning_effort"] = effort
        else:
            dropped.append("reasoning_effort")
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if req.user is not None:
        if len(req.user) <= USER_MAX_LEN:
            body["user"] = req.user
        else:
            dropped.append("user")
    if req.source_format == FORMAT:
        _restore(body, req.extras)
        _restore(body, req.contract)
    else:
        dropped.extend(req.extras)
    return body, dedupe(dropped) if dropped else dropped


def _restore(body: dict[str, Any], fields: Mapping[str, Any]) -> None:
    for key, value in fields.items():
        if key.startswith("tools."):
            body.setdefault("tools", []).extend(value)
        elif key.startswith("stream_options."):
            if body.get("stream"):
                body.setdefault("stream_options", {})[key.split(".", 1)[1]] = value
        else:
            body[key] = value


def _encode_tools(
    req: CanonicalRequest, names: ToolNameMap, body: dict[str, Any], dropped: list[str]
) -> None:
    if req.tools:
        body["tools"] = _encode_tool_list(req.tools, names)
        for t in req.tools:
            if t.extras is not EMPTY:  # the shared empty mapping: nothing to report
                dropped.extend(f"tools.{k}" for k in t.extras)
    choice = req.tool_choice
    if choice is not None:
        if choice.mode != "tool":
            body["tool_choice"] = choice.mode
        else:
            name = names.to_wire(choice.name or "")
            kind = names.kind(choice.name or "")
            body["tool_choice"] = {"type": kind, kind: {"name": name}}
    if req.parallel_tool_calls is not None and req.tools:
        body["parallel_tool_calls"] = req.parallel_tool_calls


def _encode_tool_list(tools: Sequence[Tool], names: ToolNameMap) -> list[dict[str, Any]]:
    """`_encode_tool` of each tool; a function tool with a description and parameters and no
    `strict` (the usual agent tool) is written here directly."""
    out: list[dict[str, Any]] = []
    to_wire = names.to_wire
    for t in tools:
        params, text = t.parameters, t.description
        if params is None or text is None or t.strict is not None or t.kind != "function":
            out.append(_encode_tool(t, names))
            continue
        spec = {"name": to_wire(t.name), "description": text, "parameters": dict(params)}
        out.append({"type": "function", "function": spec})
    return out


def _encode_tool(tool: Tool, names: ToolNameMap) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": names.to_wire(tool.name)}
    if tool.description is not None:
        spec["description"] = tool.description
    if tool.kind == "custom":
        if tool.format is not None:
            spec["format"] = dict(tool.format)
        return {"type": "custom", "custom": spec}
    if tool.parameters is not None:
        spec["parameters"] = dict(tool.parameters)
    if tool.strict is not None:
        spec["strict"] = tool.strict
    return {"type": "function", "function": spec}


def _encode_sampling(
    req: CanonicalRequest, body: dict[str, Any], dropped: list[str], max_field: str
) -> None:
    s = req.sampling
    if s.max_tokens is not None:
        body[max_field] = s.max_tokens
    if s.temperature is not None:
        body["temperature"] = s.temperature
    if s.top_p is not None:
        body["top_p"] = s.top_p
    if s.seed is not None:
        body["seed"] = s.seed
    if s.top_k is not None:
        dropped.append("top_k")
    if s.stop:
        body["stop"] = list(s.stop)


def _encode_format(req: CanonicalRequest, body: dict[str, Any]) -> None:
    rf = req.response_format
    if rf is not None:
        if rf.kind == "json_schema":
            js: dict[str, Any] = {"name": rf.name or "response"}
            if rf.description is not None:
                js["description"] = rf.description
            if rf.schema is not None:
                js["schema"] = dict(rf.schema)
            if rf.strict is not None:
                js["strict"] = rf.strict
            body["response_format"] = {"type": "json_schema", "json_schema": js}
        else:
            body["response_format"] = {"type": rf.kind}


def reasoning_effort(r: Reasoning | None) -> str | None:
    """The OpenAI `reasoning_effort` for canonical reasoning settings, if any."""
    if r is None or r.mode == "disabled":
        return None
    if r.effort is not None:
        return r.effort
    if r.budget_tokens is None:
        return None
    if r.budget_tokens < 4096:
        return "low"
    return "medium" if r.budget_tokens < 16384 else "high"


# ---------------------------------------------------------------------------------------------
# Responses


def decode_usage(raw: Mapping[str, Any] | None) -> Usage:
    if not raw:
        return Usage()
    prompt = raw.get("prompt_tokens_details") or {}
    completion = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=raw.get("prompt_tokens") or 0,
        output_tokens=raw.get("completion_tokens") or 0,
        cached_tokens=prompt.get("cached_tokens") or 0,
        cache_write_tokens=prompt.get("cache_write_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


def encode_usage(u: Usage) -> dict[str, Any]:
    prompt_details: dict[str, int] = {"cached_tokens": u.cached_tokens}
    if u.cache_write_tokens:
        prompt_details["cache_write_tokens"] = u.cache_write_tokens
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def decode_response(body: Mapping[str, Any], names: ToolNameMap | None = None) -> CanonicalResponse:
    """A `chat.completion` object -> canonical response (first choice)."""
    choices = body.get("choices") or []
    if not choices:
        raise TranslationError("choices", "the completion has no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    content = parts.decode_assistant_content(message, names)
    finish = choice.get("finish_reason") or "stop"
    return CanonicalResponse(
        id=body.get("id") or "",
        model=body.get("model") or "",
        content=content,
        stop_reason=FINISH_TO_STOP.get(finish, StopReason.end_turn),
        usage=decode_usage(body.get("usage")),
        raw_stop_reason=finish,
        created=body.get("created"),
        source_format=FORMAT,
    )


def encode_response(resp: CanonicalResponse, model: str) -> dict[str, Any]:
    """Canonical response -> a `chat.completion` object reporting `model` (tool names are the
    canonical ones, i.e. the client's own)."""
    message = encode_assistant_message(resp.content)
    finish = STOP_TO_FINISH[resp.stop_reason]
    if resp.source_format == FORMAT and resp.raw_stop_reason in FINISH_TO_STOP:
        finish = resp.raw_stop_reason
    return {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created if resp.created is not None else int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": encode_usage(resp.usage),
    }


def encode_assistant_message(content: Sequence[Part]) -> dict[str, Any]:
    """Response content -> the assistant `message` of a completion."""
    texts = [p.text for p in content if isinstance(p, TextPart)]
    thinking = [p.text for p in content if isinstance(p, ThinkingPart) and p.text]
    calls = [parts.encode_tool_call(p, None) for p in content if isinstance(p, ToolCallPart)]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    message["refusal"] = None
    if thinking:
        message[parts.REASONING_FIELD_OUT] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    return message


# ---------------------------------------------------------------------------------------------
# Errors


def error_body(
    message: str,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The OpenAI error envelope `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
