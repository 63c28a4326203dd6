"""Anthropic Messages content blocks <-> canonical parts and messages.

Owns the block shapes (`text`, `image` with base64/url sources, `document`, `tool_use`,
`tool_result`, `thinking` with `signature`, `redacted_thinking`; server-tool blocks kept raw) and
the message-level rules: `tool_result` blocks become canonical `tool` messages, a `role: "system"`
message inside `messages` is folded into the system prompt, and on the way out consecutive turns of
one role are merged (the API combines them anyway) so tool results share a user turn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

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
    ToolNameMap,
    ToolResultPart,
    TranslationError,
    raw_part,
)

FORMAT = "anthropic_messages"
ORIGIN = "anthropic"
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_ID_BAD = re.compile(r"[^a-zA-Z0-9_-]")
# Blocks produced and consumed by Anthropic-hosted tools: other upstreams cannot use them.
_SERVER_BLOCK = re.compile(r"^(server_tool_use|.*_tool_result|container_upload|.*_tool_use)$")


def tool_use_id(call_id: str) -> str:
    """A tool call id Anthropic accepts (`^[a-zA-Z0-9_-]+$`); stable for the same input."""
    return _ID_BAD.sub("_", call_id) or "toolu_"


def parse_arguments(arguments: str, field: str) -> dict[str, Any]:
    """A JSON-object argument string -> dict (empty string -> {})."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise TranslationError(field, f"tool arguments are not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise TranslationError(field, "tool arguments must be a JSON object")
    return value


def _extras(block: Mapping[str, Any], known: tuple[str, ...]) -> Mapping[str, Any]:
    extras = {k: v for k, v in block.items() if k not in known and k != "type"}
    return extras or EMPTY


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_system(system: Any) -> list[TextPart]:
    if system is None:
        return []
    if isinstance(system, str):
        return [TextPart(text=system)]
    return [TextPart(text=b.get("text", ""), extras=_extras(b, ("text",))) for b in system]


def decode_messages(raw: Any) -> tuple[list[TextPart], list[Message]]:
    """`messages` -> (system parts folded from `role: "system"` messages, canonical messages)."""
    if not isinstance(raw, list) or not raw:
        raise TranslationError("messages", "a non-empty list of messages is required")
    system: list[TextPart] = []
    out: list[Message] = []
    for m in raw:
        role = m.get("role") if isinstance(m, Mapping) else None
        content = m.get("content")
        # string content is one text block: decoded here without building the block
        text = isinstance(content, str)
        if role == "user":
            if text:
                out.append(Message(role="user", content=(TextPart(text=content),)))
            else:
                out.extend(_user_messages(decode_blocks(content or [], None)))
        elif role == "assistant":
            parts = (TextPart(text=content),) if text else decode_blocks(content or [], None)
            out.append(
                Message(role="assistant", content=parts, extras=_extras(m, ("content", "role")))
            )
        elif role == "system":
            system.extend(decode_system(content))
        else:
            raise TranslationError("messages.role", f"unsupported role {role!r}")
    return system, out


def _user_messages(parts: Sequence[Part]) -> list[Message]:
    """Split a user turn into runs: tool results -> `tool` messages, the rest -> `user`."""
    out: list[Message] = []
    run: list[Part] = []
    for part in parts:
        if run and isinstance(part, ToolResultPart) != isinstance(run[0], ToolResultPart):
            out.append(_run_message(run))
            run = []
        run.append(part)
    if run:
        out.append(_run_message(run))
    return out


def _run_message(run: list[Part]) -> Message:
    if isinstance(run[0], ToolResultPart):
        return Message(role="tool", content=tuple(run))
    return Message(role="user", content=tuple(run))


def decode_blocks(
    blocks: Iterable[Mapping[str, Any]], names: ToolNameMap | None
) -> tuple[Part, ...]:
    return tuple(decode_block(b, names) for b in blocks)


def decode_block(b: Mapping[str, Any], names: ToolNameMap | None) -> Part:
    kind = b.get("type")
    if kind == "text":
        return TextPart(text=b.get("text", ""), extras=_extras(b, ("text",)))
    if kind == "thinking":
        return ThinkingPart(text=b.get("thinking", ""), signature=b.get("signature"), origin=ORIGIN)
    if kind == "redacted_thinking":
        return ThinkingPart(data=b.get("data"), redacted=True, origin=ORIGIN)
    if kind == "tool_use":
        return _tool_use(b, names)
    if kind == "tool_result":
        content = b.get("content")
        inner = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        return ToolResultPart(
            tool_call_id=tool_use_id_of(b),
            content=tuple(decode_block(x, names) for x in inner),
            is_error=bool(b.get("is_error")),
            extras=_extras(b, ("tool_use_id", "content", "is_error")),
        )
    if kind == "image":
        return _image(b)
    if kind == "document":
        return _document(b)
    droppable = bool(_SERVER_BLOCK.match(str(kind)))
    return RawPart(format=FORMAT, name=f"messages.content.{kind}", data=b, droppable=droppable)


def tool_use_id_of(b: Mapping[str, Any]) -> str:
    value = b.get("tool_use_id")
    if not isinstance(value, str):
        raise TranslationError("messages.content.tool_use_id", "tool_result needs a tool_use_id")
    return value


def _tool_use(b: Mapping[str, Any], names: ToolNameMap | None) -> ToolCallPart:
    wire = b.get("name", "")
    name = names.from_wire(wire) if names is not None else wire
    tool_input = b.get("input") or {}
    extras = _extras(b, ("id", "name", "input"))
    if names is not None and names.kind(name) == "custom":
        text = tool_input.get("input", "") if isinstance(tool_input, Mapping) else ""
        return ToolCallPart(id=b.get("id", ""), name=name, arguments=str(text), kind="custom")
    args = orjson.dumps(tool_input).decode()
    return ToolCallPart(id=b.get("id", ""), name=name, arguments=args, extras=extras)


def _image(b: Mapping[str, Any]) -> Part:
    source = b.get("source") or {}
    extras = _extras(b, ("source",))
    if source.get("type") == "base64":
        return ImagePart(
            data=source.get("data"), media_type=source.get("media_type"), extras=extras
        )
    if source.get("type") == "url":
        return ImagePart(url=source.get("url"), extras=extras)
    return RawPart(format=FORMAT, name="messages.content.image", data=b, droppable=False)


def _document(b: Mapping[str, Any]) -> Part:
    source = b.get("source") or {}
    kind = source.get("type")
    extras = _extras(b, ("source", "title"))
    common: dict[str, Any] = {"title": b.get("title"), "extras": extras}
    if kind == "base64":
        return DocumentPart(data=source.get("data"), media_type=source.get("media_type"), **common)
    if kind == "text":
        return DocumentPart(text=source.get("data"), media_type="text/plain", **common)
    if kind == "url":
        return DocumentPart(url=source.get("url"), **common)
    return RawPart(format=FORMAT, name="messages.content.document", data=b, droppable=False)


# ---------------------------------------------------------------------------------------------
# Encoding


class BlockEncoder:
    """Canonical parts -> Anthropic blocks for one request (collects dropped field names)."""

    def __init__(self, names: ToolNameMap, dropped: list[str], same: bool) -> None:
        self.names = names
        self.dropped = dropped
        self.same = same

    def extras(self, target: dict[str, Any], extras: Mapping[str, Any], where: str) -> None:
        if self.same:
            target.update(extras)
        else:
            self.dropped.extend(f"{where}.{k}" for k in extras)

    def system(self, parts: Sequence[TextPart]) -> str | list[dict[str, Any]] | None:
        if not parts:
            return None
        if len(parts) == 1 and not (self.same and parts[0].extras):
            self.extras({}, parts[0].extras, "system")
            return parts[0].text
        blocks = []
        for p in parts:
            block: dict[str, Any] = {"type": "text", "text": p.text}
            self.extras(block, p.extras, "system")
            blocks.append(block)
        return blocks

    def messages(self, req: CanonicalRequest) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for msg in req.messages:
            role = "assistant" if msg.role == "assistant" else "user"
            blocks = [b for b in (self.block(p, role) for p in msg.content) if b is not None]
            if not blocks:
                continue
            if out and out[-1]["role"] == role:
                out[-1]["content"].extend(blocks)
            else:
                out.append({"role": role, "content": blocks})
            if msg.role == "assistant":
                self.extras(out[-1], msg.extras, "messages")
            else:
                self.dropped.extend(f"messages.{k}" for k in msg.extras)
        return out

    def block(self, p: Part, role: str) -> dict[str, Any] | None:
        if isinstance(p, TextPart):
            if not p.text:
                return None
            out: dict[str, Any] = {"type": "text", "text": p.text}
        elif isinstance(p, ImagePart):
            out = self._image(p)
        elif isinstance(p, DocumentPart):
            out = self._document(p)
        elif isinstance(p, ToolCallPart):
            return self.tool_use(p)
        elif isinstance(p, ToolResultPart):
            out = self._tool_result(p)
        elif isinstance(p, ThinkingPart):
            return self._thinking(p, role)
        else:
            raw = raw_part(p, FORMAT, self.dropped)
            return dict(raw) if raw is not None else None
        self.extras(out, p.extras, "messages.content")
        return out

    def _image(self, p: ImagePart) -> dict[str, Any]:
        if p.url is not None:
            return {"type": "image", "source": {"type": "url", "url": p.url}}
        if p.media_type not in IMAGE_MEDIA_TYPES:
            raise TranslationError("messages.content.image", f"unsupported type {p.media_type}")
        source = {"type": "base64", "media_type": p.media_type, "data": p.data or ""}
        return {"type": "image", "source": source}

    def _document(self, p: DocumentPart) -> dict[str, Any]:
        if p.text is not None:
            source: dict[str, Any] = {"type": "text", "media_type": "text/plain", "data": p.text}
        elif p.data is not None:
            media_type = p.media_type or "application/pdf"
            source = {"type": "base64", "media_type": media_type, "data": p.data}
        elif p.url is not None:
            source = {"type": "url", "url": p.url}
        else:
            raise TranslationError("messages.content.file", "file ids cannot cross providers")
        out: dict[str, Any] = {"type": "document", "source": source}
        if p.title or p.filename:
            out["title"] = p.title or p.filename
        return out

    def tool_use(self, p: ToolCallPart) -> dict[str, Any]:
        if p.kind == "custom":
            tool_input: dict[str, Any] = {"input": p.arguments}
        else:
            tool_input = parse_arguments(p.arguments, "messages.content.tool_call.arguments")
        name = self.names.to_wire(p.name)
        out = {"type": "tool_use", "id": tool_use_id(p.id), "name": name, "input": tool_input}
        self.extras(out, p.extras, "messages.content")
        return out

    def _tool_result(self, p: ToolResultPart) -> dict[str, Any]:
        inner = [b for b in (self.block(x, "user") for x in p.content) if b is not None]
        out: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id(p.tool_call_id)}
        out["content"] = inner
        if p.is_error:
            out["is_error"] = True
        return out

    def _thinking(self, p: ThinkingPart, role: str) -> dict[str, Any] | None:
        if role == "assistant" and p.origin == ORIGIN:
            if p.redacted and p.data is not None:
                return {"type": "redacted_thinking", "data": p.data}
            if p.signature:
                return {"type": "thinking", "thinking": p.text, "signature": p.signature}
        self.dropped.append("messages.content.thinking")
        return None
