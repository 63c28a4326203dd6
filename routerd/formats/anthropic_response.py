"""Anthropic Messages responses <-> canonical: `message` objects, stop reasons and usage.

Owns the `message` object shape (from the `anthropic` SDK's `types/message.py`, `usage.py`),
the stop-reason maps (Anthropic-only values such as `pause_turn` survive a same-format round
trip through `raw_stop_reason`) and usage, whose `input_tokens` excludes cache reads and writes
while canonical `input_tokens` includes them. `anthropic_messages` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from routerd.formats.anthropic_blocks import FORMAT, ORIGIN, decode_blocks, tool_use_id
from routerd.formats.canonical import (
    CanonicalResponse,
    Part,
    RawPart,
    StopReason,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolNameMap,
    Usage,
)

STOP_FROM_WIRE: dict[str, StopReason] = {
    "end_turn": StopReason.end_turn,
    "max_tokens": StopReason.max_tokens,
    "stop_sequence": StopReason.stop_sequence,
    "tool_use": StopReason.tool_use,
    "pause_turn": StopReason.end_turn,
    "refusal": StopReason.content_filter,
    "model_context_window_exceeded": StopReason.max_tokens,
}
STOP_TO_WIRE: dict[StopReason, str] = {
    StopReason.end_turn: "end_turn",
    StopReason.max_tokens: "max_tokens",
    StopReason.stop_sequence: "stop_sequence",
    StopReason.tool_use: "tool_use",
    StopReason.content_filter: "refusal",
    StopReason.error: "end_turn",
}


def decode_usage(raw: Mapping[str, Any] | None, base: Usage | None = None) -> Usage:
    """Anthropic usage (input excluding cache) -> canonical usage (input including cache).

    Fields missing from `raw` keep their value from `base` (a stream's `message_start`)."""
    base = base or Usage()
    raw = raw or {}
    read = raw.get("cache_read_input_tokens")
    write = raw.get("cache_creation_input_tokens")
    cached = base.cached_tokens if read is None else read
    cache_write = base.cache_write_tokens if write is None else write
    plain = raw.get("input_tokens")
    if plain is None:
        plain = base.input_tokens - base.cached_tokens - base.cache_write_tokens
    details = raw.get("output_tokens_details") or {}
    return Usage(
        input_tokens=plain + cached + cache_write,
        output_tokens=raw.get("output_tokens", base.output_tokens) or 0,
        cached_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=details.get("thinking_tokens", base.reasoning_tokens) or 0,
    )


def encode_usage(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "input_tokens": max(0, u.input_tokens - u.cached_tokens - u.cache_write_tokens),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
    }
    if u.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def decode_response(body: Mapping[str, Any], names: ToolNameMap | None = None) -> CanonicalResponse:
    """A `message` object -> canonical response."""
    raw_stop = body.get("stop_reason") or "end_turn"
    return CanonicalResponse(
        id=body.get("id") or "",
        model=body.get("model") or "",
        content=decode_blocks(body.get("content") or (), names),
        stop_reason=STOP_FROM_WIRE.get(raw_stop, StopReason.end_turn),
        usage=decode_usage(body.get("usage")),
        stop_sequence=body.get("stop_sequence"),
        raw_stop_reason=raw_stop,
        source_format=FORMAT,
    )


def stop_reason_out(stop: StopReason, raw: str | None, source: str) -> str:
    """The wire `stop_reason`, restoring the source's own value when it was Anthropic."""
    if source == FORMAT and raw in STOP_FROM_WIRE:
        return raw
    return STOP_TO_WIRE[stop]


def encode_response(resp: CanonicalResponse, model: str) -> dict[str, Any]:
    """Canonical response -> a `message` object reporting `model`."""
    same = resp.source_format == FORMAT
    content = [b for b in (response_block(p, same) for p in resp.content) if b is not None]
    stop = stop_reason_out(resp.stop_reason, resp.raw_stop_reason, resp.source_format)
    return {
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": resp.stop_sequence if stop == "stop_sequence" else None,
        "usage": encode_usage(resp.usage),
    }


def response_block(p: Part, same: bool) -> dict[str, Any] | None:
    """One content block of a `message` for a client (unexpressible parts are skipped)."""
    if isinstance(p, TextPart):
        out: dict[str, Any] = {"type": "text", "text": p.text}
        if same:
            out.update(p.extras)
        return out
    if isinstance(p, ThinkingPart):
        if p.redacted:
            own = p.origin == ORIGIN and p.data is not None
            return {"type": "redacted_thinking", "data": p.data} if own else None
        signature = p.signature if p.origin == ORIGIN and p.signature else ""
        return {"type": "thinking", "thinking": p.text, "signature": signature}
    if isinstance(p, ToolCallPart):
        block_id = tool_use_id(p.id)
        return {"type": "tool_use", "id": block_id, "name": p.name, "input": _tool_input(p)}
    if isinstance(p, RawPart) and p.format == FORMAT:
        return dict(p.data)
    return None


def _tool_input(p: ToolCallPart) -> dict[str, Any]:
    if p.kind == "custom":
        return {"input": p.arguments}
    try:
        value = orjson.loads(p.arguments or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
