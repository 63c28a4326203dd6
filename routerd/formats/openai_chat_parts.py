"""OpenAI Chat Completions messages and content parts <-> canonical messages.

Owns the `messages` array: system/developer messages (folded into canonical system parts),
user content parts (`text`, `image_url` with `data:` URLs becoming base64 images, `file`,
`input_audio` kept raw), assistant messages (`content`, `tool_calls` of function and custom
kind, non-standard `reasoning`/`reasoning_content`) and `tool` messages. Used by
`openai_chat.py` for requests and for the assistant message of responses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from routerd.formats.canonical import (
    EMPTY,
    CanonicalRequest,
    DocumentPart,
    ImagePart,
    Message,
    Part,
    RawPart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolKind,
    ToolNameMap,
    ToolResultPart,
    TranslationError,
    raw_part,
)

FORMAT = "openai_chat"
REASONING_FIELDS = ("reasoning_content", "reasoning")
REASONING_FIELD_OUT = "reasoning"
"""Field carrying reasoning text in responses and deltas we encode (OpenRouter/vLLM style)."""

_DATA_URL = re.compile(r"^data:(?P<mt>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)$", re.DOTALL)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """`(media_type, base64_data)` for a base64 `data:` URL, else None."""
    m = _DATA_URL.match(url)
    if m is None or ";base64" not in m.group("params"):
        return None
    return m.group("mt") or "application/octet-stream", m.group("data")


def data_url(media_type: str | None, data: str) -> str:
    return f"data:{media_type or 'application/octet-stream'};base64,{data}"


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_messages(raw: Any) -> tuple[tuple[TextPart, ...], tuple[Message, ...]]:
    """The `messages` array -> (system parts, canonical messages)."""
    if not isinstance(raw, list) or not raw:
        raise TranslationError("messages", "a non-empty list of messages is required")
    system: list[TextPart] = []
    out: list[Message] = []
    kinds: dict[str, ToolKind] = {}
    for m in raw:
        role = m.get("role") if isinstance(m, Mapping) else None
        if role in ("system", "developer"):
            system.extend(_text_parts(m.get("content")))
        elif role == "user":
            out.append(
                Message(
                    role="user", content=_user_parts(m.get("content")), extras=_message_extras(m)
                )
            )
        elif role == "assistant":
            content = decode_assistant_content(m, None)
            kinds.update({p.id: p.kind for p in content if isinstance(p, ToolCallPart)})
            out.append(Message(role="assistant", content=content, extras=_message_extras(m)))
        elif role == "tool":
            out.append(_tool_message(m, kinds))
        else:
            raise TranslationError("messages.role", f"unsupported role {role!r}")
    return tuple(system), tuple(out)


def _message_extras(m: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"name": m["name"]} if m.get("name") is not None else EMPTY


def _part_extras(p: Mapping[str, Any], known: tuple[str, ...]) -> Mapping[str, Any]:
    extras = {k: v for k, v in p.items() if k not in known and k != "type"}
    return extras or EMPTY


def _text_parts(content: Any) -> list[TextPart]:
    if isinstance(content, str):
        return [TextPart(text=content)]
    return [
        TextPart(text=p.get("text", ""), extras=_part_extras(p, ("text",)))
        for p in content or ()
        if p.get("type") == "text"
    ]


def _user_parts(content: Any) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (TextPart(text=content),)
    if not isinstance(content, list):
        raise TranslationError("messages.content", "content must be a string or a list of parts")
    return tuple(_user_part(p) for p in content)


def _user_part(p: Mapping[str, Any]) -> Part:
    kind = p.get("type")
    if kind == "text":
        return TextPart(text=p.get("text", ""), extras=_part_extras(p, ("text",)))
    if kind == "image_url":
        return _image_part(p)
    if kind == "file":
        f = p.get("file") or {}
        doc = parse_data_url(f["file_data"]) if f.get("file_data") else None
        return DocumentPart(
            media_type=doc[0] if doc else ("application/pdf" if f.get("file_data") else None),
            data=doc[1] if doc else f.get("file_data"),
            file_id=f.get("file_id"),
            filename=f.get("filename"),
            extras=_part_extras(p, ("file",)),
        )
    return RawPart(format=FORMAT, name=f"messages.content.{kind}", data=p, droppable=False)


def _image_part(p: Mapping[str, Any]) -> ImagePart:
    image = p.get("image_url") or {}
    url = image.get("url") or ""
    extras = dict(_part_extras(p, ("image_url",)))
    if image.get("detail") is not None:
        extras["detail"] = image["detail"]
    parsed = parse_data_url(url) if url.startswith("data:") else None
    if parsed is not None:
        return ImagePart(media_type=parsed[0], data=parsed[1], extras=extras or EMPTY)
    return ImagePart(url=url, extras=extras or EMPTY)


def decode_assistant_content(m: Mapping[str, Any], names: ToolNameMap | None) -> tuple[Part, ...]:
    """An assistant message (request history or response) -> canonical parts."""
    out: list[Part] = []
    for key in REASONING_FIELDS:
        if isinstance(m.get(key), str) and m[key]:
            out.append(ThinkingPart(text=m[key]))
            break
    content = m.get("content")
    if isinstance(content, str) and content:
        out.append(TextPart(text=content))
    elif isinstance(content, list):
        out.extend(TextPart(text=p.get("text") or p.get("refusal") or "") for p in content)
    if isinstance(m.get("refusal"), str) and m["refusal"]:
        out.append(TextPart(text=m["refusal"]))
    tool_calls = m.get("tool_calls")
    if tool_calls:
        out.extend(_tool_call(tc, names) for tc in tool_calls)
    if m.get("function_call"):
        out.append(
            RawPart(
                format=FORMAT,
                name="messages.function_call",
                data={"function_call": m["function_call"]},
                droppable=False,
            )
        )
    return tuple(out)


def _tool_call(tc: Mapping[str, Any], names: ToolNameMap | None) -> ToolCallPart:
    def name(wire: str) -> str:
        return names.from_wire(wire) if names is not None else wire

    if tc.get("type") == "custom":
        c = tc.get("custom") or {}
        return ToolCallPart(
            id=tc.get("id") or "",
            name=name(c.get("name", "")),
            arguments=c.get("input") or "",
            kind="custom",
        )
    f = tc.get("function") or {}
    return ToolCallPart(
        id=tc.get("id") or "", name=name(f.get("name", "")), arguments=f.get("arguments") or "{}"
    )


def _tool_message(m: Mapping[str, Any], kinds: Mapping[str, ToolKind]) -> Message:
    call_id = m.get("tool_call_id")
    if not isinstance(call_id, str):
        raise TranslationError("messages.tool_call_id", "tool messages need a tool_call_id")
    result = ToolResultPart(
        tool_call_id=call_id,
        content=tuple(_text_parts(m.get("content"))),
        kind=kinds.get(call_id, "function"),
    )
    return Message(role="tool", content=(result,))


# ---------------------------------------------------------------------------------------------
# Encoding


class _Ctx:
    __slots__ = ("dropped", "names", "same")

    def __init__(self, names: ToolNameMap, dropped: list[str], same: bool) -> None:
        self.names = names
        self.dropped = dropped
        self.same = same

    def extras(self, target: dict[str, Any], extras: Mapping[str, Any], where: str) -> None:
        if self.same:
            target.update(extras)
        else:
            self.dropped.extend(f"{where}.{k}" for k in extras)


def encode_messages(
    req: CanonicalRequest, names: ToolNameMap, dropped: list[str]
) -> list[dict[str, Any]]:
    ctx = _Ctx(names, dropped, req.source_format == FORMAT)
    out: list[dict[str, Any]] = []
    if req.system:
        out.append({"role": "system", "content": _text_content(req.system, ctx, "system")})
    for msg in req.messages:
        # `is EMPTY` first: the shared empty mapping is told apart without calling its __len__
        if msg.role == "user" and len(msg.content) == 1 and (msg.extras is EMPTY or not msg.extras):
            only = msg.content[0]
            # a plain text turn: a string
            if type(only) is TextPart and (only.extras is EMPTY or not only.extras):
                out.append({"role": "user", "content": only.text})
                continue
        results = [p for p in msg.content if isinstance(p, ToolResultPart)]
        others = [p for p in msg.content if not isinstance(p, ToolResultPart)]
        if results:
            out.extend(_tool_messages(results, ctx))
        if msg.role == "assistant":
            out.append(_assistant_message(others, msg, ctx))
        elif others:
            user: dict[str, Any] = {"role": "user", "content": _user_content(others, ctx)}
            if msg.extras is not EMPTY:
                ctx.extras(user, msg.extras, "messages")
            out.append(user)
    return out


def _text_content(
    text_parts: Sequence[TextPart], ctx: _Ctx, where: str = "messages.content"
) -> str | list[dict[str, Any]]:
    if len(text_parts) == 1:
        extras = text_parts[0].extras
        if extras is EMPTY:
            return text_parts[0].text
        if not (ctx.same and extras):
            ctx.extras({}, extras, where)
            return text_parts[0].text
    out: list[dict[str, Any]] = []
    for p in text_parts:
        part: dict[str, Any] = {"type": "text", "text": p.text}
        if p.extras is not EMPTY:
            ctx.extras(part, p.extras, where)
        out.append(part)
    return out


def _user_content(content: Sequence[Part], ctx: _Ctx) -> str | list[dict[str, Any]]:
    if all(isinstance(p, TextPart) for p in content):
        return _text_content([p for p in content if isinstance(p, TextPart)], ctx)
    out = [_user_part_out(p, ctx) for p in content]
    return [p for p in out if p is not None]


def _user_part_out(p: Part, ctx: _Ctx) -> dict[str, Any] | None:
    if isinstance(p, TextPart):
        out: dict[str, Any] = {"type": "text", "text": p.text}
    elif isinstance(p, ImagePart):
        url = p.url if p.url is not None else data_url(p.media_type, p.data or "")
        out = {"type": "image_url", "image_url": {"url": url}}
        extras = dict(p.extras)
        if ctx.same and "detail" in extras:
            out["image_url"]["detail"] = extras.pop("detail")
        ctx.extras(out, extras, "messages.content")
        return out
    elif isinstance(p, DocumentPart):
        return _document_out(p, ctx)
    elif isinstance(p, RawPart):
        raw = raw_part(p, FORMAT, ctx.dropped)
        return dict(raw) if raw is not None else None
    else:
        ctx.dropped.append(f"messages.content.{_kind_name(p)}")
        return None
    ctx.extras(out, p.extras, "messages.content")
    return out


def _document_out(p: DocumentPart, ctx: _Ctx) -> dict[str, Any]:
    if p.text is not None:
        out: dict[str, Any] = {"type": "text", "text": p.text}
    elif p.data is not None or p.file_id is not None:
        f: dict[str, Any] = {}
        if p.data is not None:
            f["file_data"] = data_url(p.media_type or "application/pdf", p.data)
        if p.file_id is not None:
            f["file_id"] = p.file_id
        if p.filename or p.title:
            f["filename"] = p.filename or p.title
        out = {"type": "file", "file": f}
    else:
        raise TranslationError(
            "messages.content.document",
            "URL documents need a fetch-capable upstream; send the document as base64 data",
        )
    ctx.extras(out, p.extras, "messages.content")
    return out


def _kind_name(p: Part) -> str:
    if isinstance(p, ThinkingPart):
        return "thinking"
    return type(p).__name__.removesuffix("Part").lower()


def _tool_messages(results: Sequence[ToolResultPart], ctx: _Ctx) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    media: list[Part] = []
    for r in results:
        texts = [p for p in r.content if isinstance(p, TextPart)]
        media.extend(p for p in r.content if not isinstance(p, TextPart))
        content: str | list[dict[str, Any]] = _text_content(texts, ctx) if texts else ""
        out.append({"role": "tool", "tool_call_id": r.tool_call_id, "content": content})
        if r.is_error:
            ctx.dropped.append("messages.content.is_error")
        if r.extras is not EMPTY:
            ctx.extras(out[-1], r.extras, "messages")
    if media:
        out.append({"role": "user", "content": _user_content(media, ctx)})
    return out


def _assistant_message(content: Sequence[Part], msg: Message, ctx: _Ctx) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    out: dict[str, Any] = {"role": "assistant"}
    for p in content:
        if isinstance(p, TextPart):
            texts.append(p.text)
            if p.extras is not EMPTY:
                ctx.extras({}, p.extras, "messages.content")
        elif isinstance(p, ToolCallPart):
            calls.append(encode_tool_call(p, ctx.names))
            if p.extras is not EMPTY:
                ctx.extras({}, p.extras, "messages.content")
        elif isinstance(p, RawPart):
            raw = raw_part(p, FORMAT, ctx.dropped)
            out.update(raw or {})
        else:
            ctx.dropped.append(f"messages.content.{_kind_name(p)}")
    out["content"] = "".join(texts) if texts else None
    if calls:
        out["tool_calls"] = calls
    if msg.extras is not EMPTY:
        ctx.extras(out, msg.extras, "messages")
    return out


def encode_tool_call(p: ToolCallPart, names: ToolNameMap | None) -> dict[str, Any]:
    name = names.to_wire(p.name) if names is not None else p.name
    if p.kind == "custom":
        return {"id": p.id, "type": "custom", "custom": {"name": name, "input": p.arguments}}
    return {"id": p.id, "type": "function", "function": {"name": name, "arguments": p.arguments}}
