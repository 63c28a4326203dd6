"""A documented estimate of a canonical request's input tokens (pure).

Byte-level BPE tokenizers (OpenAI, Anthropic, Gemini) never produce more tokens than the UTF-8
bytes of the text (that is the hard upper bound), and typical English text runs near 4 bytes a
token. routerd's estimate is
`ceil(bytes / 4)` over every piece of text the model reads (system, message text, tool call
arguments, tool results, tool names, descriptions and JSON schemas), plus 4 tokens of framing per
message, plus a flat 1,600 tokens per image or document (a ~1.15 megapixel image on Anthropic's
published formula). Use the upstream's own count when it offers one; this is for the others.
"""

from __future__ import annotations

import math

import orjson

from routerd.formats.canonical import (
    CanonicalRequest,
    DocumentPart,
    ImagePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)

BYTES_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
MEDIA_TOKENS = 1600


def _part_bytes(part: Part) -> tuple[int, int]:
    """(text bytes, media count) of one part."""
    if isinstance(part, TextPart):
        return len(part.text.encode()), 0
    if isinstance(part, ToolCallPart):
        return len(part.name.encode()) + len(part.arguments.encode()), 0
    if isinstance(part, ThinkingPart):
        return len((part.text or "").encode()), 0
    if isinstance(part, ToolResultPart):
        total, media = 0, 0
        for inner in part.content:
            b, m = _part_bytes(inner)
            total, media = total + b, media + m
        return total, media
    if isinstance(part, DocumentPart) and part.text is not None:
        return len(part.text.encode()), 0
    if isinstance(part, ImagePart | DocumentPart):
        return 0, 1
    return 0, 0


def estimate_input_tokens(req: CanonicalRequest) -> int:
    text = sum(len(p.text.encode()) for p in req.system)
    media = 0
    for message in req.messages:
        for part in message.content:
            b, m = _part_bytes(part)
            text, media = text + b, media + m
    for tool in req.tools:
        text += len(tool.name.encode()) + len((tool.description or "").encode())
        text += len(orjson.dumps(tool.parameters or {}))
    framing = MESSAGE_OVERHEAD_TOKENS * (len(req.messages) + (1 if req.system else 0))
    return math.ceil(text / BYTES_PER_TOKEN) + framing + MEDIA_TOKENS * media
