"""OpenAI Responses (`POST /v1/responses`) <-> canonical: stateless requests and responses.

Owns the wire shapes of Responses request bodies (`input` as a string or a list of items:
messages, `function_call` / `function_call_output`, `custom_tool_call` /
`custom_tool_call_output`, `reasoning` with `encrypted_content`) and of `response` objects
(field names from the `openai` SDK's `types/responses`). routerd stores nothing, so
`previous_response_id` is rejected and item `id`s a client echoes back are accepted and ignored.
Namespace tools are flattened to functions named `namespace.name` and split again on output.
The SSE encoder lives in `openai_responses_stream.py` and shares the builders defined here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from routerd.formats import openai_chat
from routerd.formats.canonical import (
    EMPTY,
    CanonicalRequest,
    CanonicalResponse,
    DocumentPart,
    ImagePart,
    Message,
    Part,
    RawPart,
    Reasoning,
    ResponseFormat,
    Role,
    Sampling,
    StopReason,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolKind,
    ToolResultPart,
    TranslationError,
    Usage,
)
from routerd.formats.openai_chat_parts import parse_data_url

FORMAT = "openai_responses"

# Request fields decode_request maps onto canonical fields.
_HANDLED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "text",
        "reasoning",
        "stream",
        "user",
    }
)
_STATEFUL = {
    "previous_response_id": "routerd stores no responses; send the full input",
    "conversation": "routerd stores no conversations; send the full input",
}
_ASSISTANT_ITEMS = frozenset({"function_call", "custom_tool_call", "reasoning"})
_TOOL_ITEMS = frozenset({"function_call_output", "custom_tool_call_output"})


# ---------------------------------------------------------------------------------------------
# Requests


def decode_request(body: Mapping[str, Any]) -> CanonicalRequest:
    """A Responses request body -> canonical request."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise TranslationError("model", "a model name is required")
    for key, message in _STATEFUL.items():
        if body.get(key):
            raise TranslationError(key, message)
    system, messages, extra_tools = _decode_input(body.get("input"))
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.insert(0, TextPart(text=instructions))
    raw_tools = [*(body.get("tools") or ()), *extra_tools]
    effort = (body.get("reasoning") or {}).get("effort")
    user = body.get("user")
    return CanonicalRequest(
        model=model,
        messages=messages,
        system=tuple(system),
        tools=_decode_tools(raw_tools),
        tool_choice=_decode_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        sampling=Sampling(
            max_tokens=body.get("max_output_tokens"),
            temperature=body.get("temperature"),
            top_p=body.get("top_p"),
        ),
        response_format=_decode_text_format((body.get("text") or {}).get("format")),
        reasoning=Reasoning(effort=effort) if isinstance(effort, str) else None,
        stream=bool(body.get("stream")),
        include_usage=True,
        user=user if isinstance(user, str) else None,
        source_format=FORMAT,
        extras=_decode_extras(body, raw_tools),
        contract=_decode_contract(body),
    )


class _Turns:
    """Builds canonical messages from items, merging consecutive items of the same role."""

    def __init__(self) -> None:
        self.system: list[TextPart] = []
        self.messages: list[Message] = []
        self.tools: list[Mapping[str, Any]] = []

    def add(self, role: Role, parts: Sequence[Part]) -> None:
        if not parts:
            return
        if self.messages and self.messages[-1].role == role:
            last = self.messages[-1]
            self.messages[-1] = Message(role=role, content=(*last.content, *parts))
        else:
            self.messages.append(Message(role=role, content=tuple(parts)))


def _decode_input(raw: Any) -> tuple[list[TextPart], tuple[Message, ...], list[Any]]:
    """`input` -> (system parts, messages, tools from `additional_tools` items)."""
    if isinstance(raw, str):
        return [], (Message(role="user", content=(TextPart(text=raw),)),), []
    if not isinstance(raw, list) or not raw:
        raise TranslationError("input", "a string or a non-empty list of items is required")
    turns = _Turns()
    for item in raw:
        if not isinstance(item, Mapping):
            raise TranslationError("input", "every input item must be an object")
        _decode_item(item, turns)
    if not turns.messages:
        raise TranslationError("input", "the input has no user or assistant content")
    return turns.system, tuple(turns.messages), turns.tools


def _decode_item(item: Mapping[str, Any], turns: _Turns) -> None:
    kind = item.get("type") or "message"
    if kind == "message":
        _decode_message(item, turns)
    elif kind == "function_call":
        turns.add("assistant", [_tool_call(item, "function", item.get("arguments") or "")])
    elif kind == "custom_tool_call":
        turns.add("assistant", [_tool_call(item, "custom", item.get("input") or "")])
    elif kind in _TOOL_ITEMS:
        tool_kind: ToolKind = "custom" if kind.startswith("custom") else "function"
        content = _result_content(item.get("output"))
        call_id = item.get("call_id") or ""
        turns.add("tool", [ToolResultPart(tool_call_id=call_id, content=content, kind=tool_kind)])
    elif kind == "reasoning":
        thinking = _reasoning_part(item)
        turns.add("assistant", [thinking] if thinking.text or thinking.data else [])
    elif kind == "additional_tools":
        turns.tools.extend(item.get("tools") or ())
    elif kind == "item_reference":
        raise TranslationError("input.item_reference", "routerd stores no items; send them in full")
    else:
        role: Role = "assistant" if kind.endswith("_call") else "user"
        turns.add(role, [RawPart(format=FORMAT, name=f"input.{kind}", data=dict(item))])


def _decode_message(item: Mapping[str, Any], turns: _Turns) -> None:
    role = item.get("role")
    content = item.get("content")
    if role in ("system", "developer"):
        turns.system.extend(p for p in _content_parts(content) if isinstance(p, TextPart))
    elif role in ("user", "assistant"):
        turns.add(role, _content_parts(content))
    else:
        raise TranslationError("input.role", f"unsupported role {role!r}")


def _content_parts(content: Any) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(text=content)]
    if not isinstance(content, list):
        raise TranslationError("input.content", "content must be a string or a list of parts")
    return [_content_part(p) for p in content if isinstance(p, Mapping)]


def _content_part(p: Mapping[str, Any]) -> Part:
    kind = p.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
        return TextPart(text=p.get("text") or "")
    if kind == "refusal":
        return TextPart(text=p.get("refusal") or "")
    if kind == "input_image":
        return _image_part(p)
    if kind == "input_file":
        return _file_part(p)
    return RawPart(format=FORMAT, name=f"input.content.{kind}", data=dict(p))


def _image_part(p: Mapping[str, Any]) -> Part:
    extras = {"detail": p["detail"]} if p.get("detail") else EMPTY
    url = p.get("image_url")
    if isinstance(url, str) and url:
        parsed = parse_data_url(url)
        if parsed is not None:
            return ImagePart(media_type=parsed[0], data=parsed[1], extras=extras)
        return ImagePart(url=url, extras=extras)
    return RawPart(format=FORMAT, name="input.content.input_image", data=dict(p), droppable=False)


def _file_part(p: Mapping[str, Any]) -> Part:
    file_data = p.get("file_data")
    parsed = parse_data_url(file_data) if isinstance(file_data, str) else None
    return DocumentPart(
        media_type=parsed[0] if parsed else None,
        data=parsed[1] if parsed else file_data,
        url=p.get("file_url"),
        file_id=p.get("file_id"),
        filename=p.get("filename"),
    )


def _tool_call(item: Mapping[str, Any], kind: ToolKind, arguments: str) -> ToolCallPart:
    name = item.get("name") or ""
    if item.get("namespace"):
        name = f"{item['namespace']}.{name}"
    return ToolCallPart(id=item.get("call_id") or "", name=name, arguments=arguments, kind=kind)


def _result_content(output: Any) -> tuple[Part, ...]:
    if isinstance(output, str):
        return (TextPart(text=output),)
    if isinstance(output, list):
        return tuple(_content_parts(output))
    return ()


def _reasoning_part(item: Mapping[str, Any]) -> ThinkingPart:
    summary = item.get("summary") or []
    text = "\n\n".join(s.get("text") or "" for s in summary if isinstance(s, Mapping))
    data = item.get("encrypted_content")
    return ThinkingPart(
        text=text,
        data=data if isinstance(data, str) else None,
        origin=FORMAT if isinstance(data, str) else None,
    )


def _decode_tools(raw: Sequence[Any]) -> tuple[Tool, ...]:
    tools: list[Tool] = []
    for t in raw:
        kind = t.get("type")
        if kind == "function":
            tools.append(_function_tool(t, None))
        elif kind == "custom":
            tools.append(
                Tool(
                    name=t["name"],
                    description=t.get("description"),
                    kind="custom",
                    format=t.get("format"),
                )
            )
        elif kind == "namespace":
            tools.extend(
                _function_tool(f, t.get("name"))
                for f in t.get("tools") or ()
                if f.get("type", "function") == "function"
            )
    return tuple(tools)


def _function_tool(t: Mapping[str, Any], namespace: str | None) -> Tool:
    name = f"{namespace}.{t['name']}" if namespace else t["name"]
    return Tool(
        name=name,
        description=t.get("description"),
        parameters=t.get("parameters"),
        strict=t.get("strict"),
    )


def _decode_tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        if raw not in ("auto", "none", "required"):
            raise TranslationError("tool_choice", f"unknown value {raw!r}")
        return ToolChoice(mode=raw)  # type: ignore[arg-type]
    if raw.get("type") in ("function", "custom") and raw.get("name"):
        return ToolChoice(mode="tool", name=raw["name"])
    return None  # allowed_tools, hosted tools: carried in `contract`


def _decode_text_format(raw: Any) -> ResponseFormat | None:
    if not raw:
        return None
    return openai_chat.decode_format(raw.get("type"), raw, "text.format")


def _decode_contract(body: Mapping[str, Any]) -> dict[str, Any]:
    """Fields whose loss would change the answer's shape."""
    out: dict[str, Any] = {}
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping) and _decode_tool_choice(choice) is None:
        out["tool_choice"] = choice
    for key in ("prompt", "background", "top_logprobs"):
        if body.get(key):
            out[key] = body[key]
    return out


def _decode_extras(body: Mapping[str, Any], raw_tools: Sequence[Any]) -> dict[str, Any]:
    contract = _decode_contract(body)
    extras = {
        k: v for k, v in body.items() if k not in _HANDLED and k not in contract and v is not None
    }
    for key in ("text", "reasoning"):
        for k, v in (body.get(key) or {}).items():
            if k not in ("format", "effort") and v is not None:
                extras[f"{key}.{k}"] = v
    for t in raw_tools:
        if t.get("type") not in ("function", "custom", "namespace"):
            extras.setdefault(f"tools.{t.get('type')}", []).append(t)
    return extras


# ---------------------------------------------------------------------------------------------
# Responses


def response_id(raw_id: str) -> str:
    """The `resp_...` id for an upstream response id."""
    return raw_id if raw_id.startswith("resp_") else f"resp_{raw_id or int(time.time() * 1000)}"


def item_id(prefix: str, resp_id: str, index: int) -> str:
    """A stable id for output item `index` of response `resp_id` (`msg_`, `fc_`, `rs_`...)."""
    return f"{prefix}_{resp_id.removeprefix('resp_')}_{index}"


def encode_usage(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cached_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


def response_object(
    resp_id: str,
    model: str,
    created_at: int,
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None = None,
    incomplete: str | None = None,
    error: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A `response` object with every field the SDK's `Response` model requires."""
    return {
        "id": resp_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": dict(error) if error is not None else None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "temperature": None,
        "top_p": None,
        "max_output_tokens": None,
        "previous_response_id": None,
        "reasoning": None,
        "store": False,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "metadata": {},
        "usage": encode_usage(usage) if usage is not None else None,
    }


def message_item(item: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [output_text(text)] if status == "completed" else []
    return {
        "id": item,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(item: str, text: str, encrypted: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item, "type": "reasoning", "summary": []}
    if text:
        out["summary"] = [{"type": "summary_text", "text": text}]
    if encrypted is not None:
        out["encrypted_content"] = encrypted
    return out


def tool_call_item(
    item: str, call_id: str, name: str, arguments: str, kind: str, status: str = "completed"
) -> dict[str, Any]:
    namespace, _, short = name.rpartition(".")
    out: dict[str, Any] = {"id": item, "call_id": call_id, "name": short}
    if namespace:
        out["namespace"] = namespace
    if kind == "custom":
        out.update(type="custom_tool_call", input=arguments)
    else:
        out.update(type="function_call", arguments=arguments, status=status)
    return out


def encode_response(resp: CanonicalResponse, model: str) -> dict[str, Any]:
    """Canonical response -> a `response` object reporting `model`."""
    rid = response_id(resp.id)
    output = encode_output(resp.content, rid)
    incomplete = "max_output_tokens" if resp.stop_reason == StopReason.max_tokens else None
    if resp.stop_reason == StopReason.content_filter:
        incomplete = "content_filter"
    created = resp.created if resp.created is not None else int(time.time())
    return response_object(
        rid,
        model,
        created,
        status="incomplete" if incomplete else "completed",
        output=output,
        usage=resp.usage,
        incomplete=incomplete,
    )


def encode_output(content: Sequence[Part], rid: str) -> list[dict[str, Any]]:
    """Response content -> output items (consecutive text parts share one message item)."""
    out: list[dict[str, Any]] = []
    texts: list[str] = []

    def flush() -> None:
        if texts:
            out.append(message_item(item_id("msg", rid, len(out)), "".join(texts)))
            texts.clear()

    for p in content:
        if isinstance(p, TextPart):
            texts.append(p.text)
            continue
        flush()
        index = len(out)
        if isinstance(p, ThinkingPart):
            encrypted = p.data if p.origin == FORMAT else None
            if p.text or encrypted is not None:
                out.append(reasoning_item(item_id("rs", rid, index), p.text, encrypted))
        elif isinstance(p, ToolCallPart):
            fc = item_id("fc" if p.kind == "function" else "ctc", rid, index)
            out.append(tool_call_item(fc, p.id, p.name, p.arguments, p.kind))
        elif isinstance(p, RawPart) and p.format == FORMAT:
            out.append(dict(p.data))
    flush()
    return out
