"""The built-in `echo` provider: an in-process transport that speaks the OpenAI chat wire format.

It answers without any network, echoing the last user message, with deterministic usage (one
token per whitespace-separated word, plus one per message), so a fresh checkout serves requests
with no upstream account. It honours `stream`, `stream_options.include_usage` and `max_tokens`,
and answers embeddings with deterministic vectors derived from each input's sha256 (float
lists or base64).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import orjson

from routerd.config.model import ProviderConfig
from routerd.providers.base import JsonAdapter, UpstreamRequest

_CHAT_URL = "echo://chat/completions"
_EMBEDDINGS_URL = "echo://embeddings"
_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream"}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _reply(body: dict[str, Any]) -> tuple[list[str], int, str]:
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    prompt_tokens = sum(len(_text_of(m.get("content")).split()) + 1 for m in messages)
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    words = _text_of(last_user.get("content") if last_user else "").split() or ["(empty)"]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish = "stop"
    if isinstance(limit, int) and 0 < limit < len(words):
        words, finish = words[:limit], "length"
    return words, prompt_tokens, finish


class _EchoResponse:
    def __init__(self, status: int, headers: Mapping[str, str], chunks: list[bytes]) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks

    async def read(self) -> bytes:
        return b"".join(self._chunks)

    async def iter_chunks(self) -> AsyncGenerator[bytes, None]:
        for chunk in self._chunks:
            yield chunk

    def release(self) -> None:
        self._chunks = []


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _stream_chunks(body: dict[str, Any], base: dict[str, Any]) -> list[bytes]:
    words, prompt, finish = _reply(body)

    def frame(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        chunk = {**base, "object": "chat.completion.chunk", "choices": choices}
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    out = [
        frame([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    ]
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        out.append(frame([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
    out.append(frame([{"index": 0, "delta": {}, "finish_reason": finish}]))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        out.append(frame([], _usage(prompt, len(words))))
    out.append(b"data: [DONE]\n\n")
    return out


def _completion(body: dict[str, Any], base: dict[str, Any]) -> bytes:
    words, prompt, finish = _reply(body)
    message = {"role": "assistant", "content": " ".join(words), "refusal": None}
    return orjson.dumps(
        {
            **base,
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": _usage(prompt, len(words)),
        }
    )


def _vector(text: str, dimensions: int) -> list[float]:
    """A deterministic vector in [-1, 1) derived from the text's sha256."""
    seed = hashlib.sha256(text.encode()).digest()
    while len(seed) < dimensions:
        seed += hashlib.sha256(seed).digest()
    return [(b - 128) / 128 for b in seed[:dimensions]]


def _embeddings(body: dict[str, Any]) -> bytes:
    raw = body.get("input", "")
    inputs = [raw] if isinstance(raw, str) else [str(x) for x in raw]
    dims = body.get("dimensions")
    dimensions = dims if isinstance(dims, int) else 8
    data = []
    for i, text in enumerate(inputs):
        vector = _vector(text, dimensions)
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(len(text.split()) or 1 for text in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    model = body.get("model", "echo-embed-1")
    return orjson.dumps({"object": "list", "data": data, "model": model, "usage": usage})


class EchoTransport:
    async def send(self, request: UpstreamRequest) -> _EchoResponse:
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            error = orjson.dumps(
                {"error": {"message": "invalid JSON", "type": "invalid_request_error"}}
            )
            return _EchoResponse(400, _JSON_HEADERS, [error])
        if request.url == _EMBEDDINGS_URL:
            return _EchoResponse(200, _JSON_HEADERS, [_embeddings(body)])
        base = {
            "id": f"chatcmpl-echo-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": body.get("model", "echo-1"),
        }
        if body.get("stream"):
            return _EchoResponse(200, _SSE_HEADERS, _stream_chunks(body, base))
        return _EchoResponse(200, _JSON_HEADERS, [_completion(body, base)])

    async def close(self) -> None:
        return None


class EchoAdapter(JsonAdapter):
    wire_format = "openai_chat"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(_CHAT_URL, {}, config.timeouts, embeddings_url=_EMBEDDINGS_URL)
