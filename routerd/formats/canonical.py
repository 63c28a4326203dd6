"""The canonical representation every API format translates to and from.

This module owns the format-neutral types: the chat request (`CanonicalRequest` with its
messages, content parts, tools, tool choice, sampling, response format and reasoning settings),
the response (`CanonicalResponse`, `StopReason`, `Usage`), the stream events, the
`TranslationError` raised when a field cannot be carried without breaking the answer's contract,
and `ToolNameMap`, the reversible tool-name mapping for upstreams with strict name rules.

Conventions shared by every format module:

- Token counts follow one rule: `Usage.input_tokens` includes cached reads and cache writes,
  `Usage.output_tokens` includes reasoning tokens (OpenAI semantics).
- `source_format` names the wire format a request/response was decoded from. `extras` holds that
  format's fields which only tune behaviour (keyed by the wire field name, dotted for nested
  fields); `contract` holds its fields the canonical form cannot express but whose loss would
  change the answer. An encoder of the same format re-emits both; an encoder of another format
  maps what it can, drops the rest of `extras` and reports the names, and raises
  `TranslationError` for anything left in `contract`.
- Opaque reasoning data (signatures, redacted or encrypted blobs) carries its `origin` family and
  is only ever sent back to that family.
- Canonical values are immutable: `@canonical` types are frozen dataclasses to the type checker
  (mypy rejects any assignment to a field) and plain slotted dataclasses at run time, because a
  frozen dataclass's `__init__` sets each field through `object.__setattr__`, which costs twice
  as much per object on the request path. Build a changed copy with `dataclasses.replace`.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeVar, dataclass_transform

JSON: TypeAlias = Any
"""A JSON-compatible value (dict, list, str, int, float, bool, None)."""

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def canonical(cls: type[_T]) -> type[_T]:
    """A canonical type: keyword-only, slotted, compared and hashed by value like a frozen
    dataclass, and read-only for the type checker; see the module docstring for why it is not
    frozen at run time."""
    return dataclass(slots=True, kw_only=True, unsafe_hash=True)(cls)


class _EmptyMapping(Mapping[str, Any]):
    """An immutable, hashable empty mapping: the default `extras` of every canonical type."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


EMPTY: Mapping[str, Any] = _EmptyMapping()


class TranslationError(ValueError):
    """A field cannot be translated without breaking the answer's contract.

    The server turns it into an `invalid_request` error that names `field`.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# ---------------------------------------------------------------------------------------------
# Content parts


@canonical
class TextPart:
    text: str
    extras: Mapping[str, Any] = EMPTY


@canonical
class ImagePart:
    """An image given by URL or by base64 data with its media type."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    extras: Mapping[str, Any] = EMPTY


@canonical
class DocumentPart:
    """A document (PDF or plain text): base64 `data`, plain `text`, a `url` or a `file_id`."""

    media_type: str | None = None
    data: str | None = None
    text: str | None = None
    url: str | None = None
    file_id: str | None = None
    title: str | None = None
    filename: str | None = None
    extras: Mapping[str, Any] = EMPTY


ToolKind = Literal["function", "custom"]


@canonical
class ToolCallPart:
    """A call the assistant made. `arguments` is a JSON string for function tools and the raw
    freeform input for custom tools."""

    id: str
    name: str
    arguments: str
    kind: ToolKind = "function"
    extras: Mapping[str, Any] = EMPTY


@canonical
class ThinkingPart:
    """Reasoning. `signature` verifies `text`; `data` is an opaque redacted/encrypted blob.

    `origin` is the wire family (`"anthropic"`, `"openai"`, ...) that issued `signature`/`data`.
    """

    text: str = ""
    signature: str | None = None
    data: str | None = None
    redacted: bool = False
    origin: str | None = None
    extras: Mapping[str, Any] = EMPTY


@canonical
class ToolResultPart:
    tool_call_id: str
    content: tuple[Part, ...] = ()
    is_error: bool = False
    kind: ToolKind = "function"
    extras: Mapping[str, Any] = EMPTY

    def text(self) -> str:
        """The text content joined with newlines (for formats whose results are strings)."""
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))


@canonical
class RawPart:
    """A block only its source format can express (e.g. an Anthropic `server_tool_use` or an
    OpenAI `input_audio` part), kept verbatim for an encoder of that `format`. Other encoders drop
    it and report `name` when `droppable`, else raise `TranslationError`."""

    format: str
    name: str
    data: Mapping[str, Any]
    droppable: bool = True


Part: TypeAlias = (
    TextPart | ImagePart | DocumentPart | ToolCallPart | ToolResultPart | ThinkingPart | RawPart
)

Role = Literal["user", "assistant", "tool"]


@canonical
class Message:
    """One turn. `tool` messages carry only `ToolResultPart`s; system text lives in
    `CanonicalRequest.system`."""

    role: Role
    content: tuple[Part, ...]
    extras: Mapping[str, Any] = EMPTY


# ---------------------------------------------------------------------------------------------
# Request


@canonical
class Tool:
    """A client tool: a function with a JSON-schema `parameters`, or a freeform custom tool
    (`format` is its optional grammar/format object, format-specific)."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    kind: ToolKind = "function"
    strict: bool | None = None
    format: Mapping[str, Any] | None = None
    extras: Mapping[str, Any] = EMPTY


@canonical
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


@canonical
class ResponseFormat:
    kind: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: Mapping[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


@canonical
class Reasoning:
    """Reasoning settings: `effort` (none|minimal|low|medium|high|xhigh|max), a thinking
    `budget_tokens`, and the thinking `mode` where the source says it explicitly."""

    effort: str | None = None
    budget_tokens: int | None = None
    mode: Literal["enabled", "adaptive", "disabled"] | None = None


@canonical
class Sampling:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@canonical
class CanonicalRequest:
    model: str
    messages: tuple[Message, ...]
    system: tuple[TextPart, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    sampling: Sampling = field(default_factory=Sampling)
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    source_format: str = ""
    extras: Mapping[str, Any] = EMPTY
    contract: Mapping[str, Any] = EMPTY


# ---------------------------------------------------------------------------------------------
# Response


class StopReason(enum.StrEnum):
    end_turn = "end_turn"
    max_tokens = "max_tokens"
    stop_sequence = "stop_sequence"
    tool_use = "tool_use"
    content_filter = "content_filter"
    error = "error"


@canonical
class Usage:
    """Token counts. `input_tokens` includes cached and cache-write tokens; `output_tokens`
    includes reasoning tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@canonical
class CanonicalResponse:
    """A finished answer. `raw_stop_reason` keeps the source's own value (e.g. Anthropic
    `pause_turn`) so an encoder of the same format can restore it exactly."""

    id: str
    model: str
    content: tuple[Part, ...]
    stop_reason: StopReason
    usage: Usage = field(default_factory=Usage)
    stop_sequence: str | None = None
    raw_stop_reason: str | None = None
    created: int | None = None
    source_format: str = ""
    extras: Mapping[str, Any] = EMPTY


# ---------------------------------------------------------------------------------------------
# Stream events

BlockKind = Literal["text", "tool_call", "thinking"]


@canonical
class MessageStart:
    id: str
    model: str
    usage: Usage | None = None


@canonical
class BlockStart:
    """A content block opens. Tool calls carry id/name/kind; a redacted thinking block carries its
    opaque `data` here (it has no deltas)."""

    index: int
    kind: BlockKind
    tool_call_id: str | None = None
    tool_name: str | None = None
    tool_kind: ToolKind = "function"
    redacted_data: str | None = None
    origin: str | None = None


@canonical
class TextDelta:
    index: int
    text: str


@canonical
class ToolArgsDelta:
    index: int
    partial_json: str


@canonical
class ThinkingDelta:
    """Reasoning text, or (with `signature` set and usually empty text) the block's signature."""

    index: int
    text: str = ""
    signature: str | None = None


@canonical
class BlockStop:
    index: int


@canonical
class MessageDelta:
    """The end of generation: stop reason and the cumulative usage of the whole request."""

    stop_reason: StopReason
    usage: Usage | None = None
    stop_sequence: str | None = None
    raw_stop_reason: str | None = None


@canonical
class MessageStop:
    pass


@canonical
class StreamError:
    """An error reported inside a stream; `type` is the source's error type string."""

    type: str
    message: str


StreamEvent: TypeAlias = (
    MessageStart
    | BlockStart
    | TextDelta
    | ToolArgsDelta
    | ThinkingDelta
    | BlockStop
    | MessageDelta
    | MessageStop
    | StreamError
)


# ---------------------------------------------------------------------------------------------
# Helpers for encoders


def check_contract(req: CanonicalRequest, target: str) -> None:
    """Raise `TranslationError` if `req` carries contract fields `target` cannot express."""
    if req.contract and req.source_format != target:
        name = next(iter(req.contract))
        raise TranslationError(name, f"not supported when translating to {target}")


def raw_part(part: RawPart, target: str, dropped: list[str]) -> Mapping[str, Any] | None:
    """`part.data` for its own format; otherwise report it as dropped or raise."""
    if part.format == target:
        return part.data
    if not part.droppable:
        raise TranslationError(part.name, f"not supported when translating to {target}")
    dropped.append(part.name)
    return None


def dedupe(names: Iterable[str]) -> list[str]:
    """Unique names in first-seen order (for dropped-field reports)."""
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------
# Tool names

STRICT_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


class ToolNameMap:
    """A reversible mapping between canonical tool names and names an upstream accepts.

    Valid names map to themselves. Others are sanitised (invalid characters become `_`, the name is
    cut to fit) and made unique with a short hash suffix. The mapping is a pure function of the
    names registered, so encoding a request and decoding its response can each build it from the
    same request (`ToolNameMap.for_request`).
    """

    __slots__ = ("_from_wire", "_kinds", "_max_len", "_pattern", "_to_wire")

    def __init__(
        self,
        names: Iterable[str] = (),
        *,
        pattern: re.Pattern[str] = STRICT_TOOL_NAME,
        max_len: int = 64,
    ) -> None:
        self._to_wire: dict[str, str] = {}
        self._from_wire: dict[str, str] = {}
        self._kinds: dict[str, ToolKind] = {}
        self._pattern = pattern
        self._max_len = max_len
        for name in names:
            self.add(name)

    @classmethod
    def for_request(cls, req: CanonicalRequest) -> ToolNameMap:
        """Register every tool name `req` mentions: tools, tool choice and past tool calls."""
        names = cls()
        for tool in req.tools:
            names.add(tool.name, tool.kind)
        if req.tool_choice is not None and req.tool_choice.name:
            names.add(req.tool_choice.name)
        for msg in req.messages:
            for part in msg.content:
                if isinstance(part, ToolCallPart):
                    names.add(part.name, part.kind)
        return names

    def add(self, name: str, kind: ToolKind | None = None) -> str:
        """Register `name` (idempotent) and return its wire name."""
        if kind is not None and name not in self._kinds:
            self._kinds[name] = kind
        wire = self._to_wire.get(name)
        if wire is None:
            wire = self._make_wire(name)
            self._to_wire[name] = wire
            self._from_wire[wire] = name
        return wire

    def _make_wire(self, name: str) -> str:
        if self._pattern.match(name) and name not in self._from_wire:
            return name
        base = _BAD_CHARS.sub("_", name) or "tool"
        digest = hashlib.sha256(name.encode()).hexdigest()
        for size in (8, 16, 64):
            candidate = f"{base[: self._max_len - size - 1]}_{digest[:size]}"
            if candidate not in self._from_wire:
                return candidate
        raise ValueError(f"cannot map tool name {name!r}")  # pragma: no cover

    def to_wire(self, name: str) -> str:
        wire = self._to_wire.get(name)  # registered already: the common case, one lookup
        return wire if wire is not None else self.add(name)

    def from_wire(self, wire: str) -> str:
        """The canonical name for `wire`; names never registered come back unchanged."""
        return self._from_wire.get(wire, wire)

    def kind(self, name: str) -> ToolKind:
        """The kind registered for canonical `name` (`function` when unknown)."""
        return self._kinds.get(name, "function")
