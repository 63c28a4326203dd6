"""The built-in `echo` provider: an in-process transport that speaks the OpenAI chat wire format.

It answers without any network, echoing the last user message, with deterministic usage (one
token per whitespace-separated word, plus one per message), so a fresh checkout serves requests
with no upstream account. It honours `stream`, `stream_options.include_usage` and `max_tokens`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from routerd.config.model import ProviderConfig
from routerd.providers.base import JsonAdapter, UpstreamRequest

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

    async def iter_chunks(self) -> AsyncIterator[bytes]:
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


class EchoTransport:
    async def send(self, request: UpstreamRequest) -> _EchoResponse:
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            error = orjson.dumps(
                {"error": {"message": "invalid JSON", "type": "invalid_request_error"}}
            )
            return _EchoResponse(400, _JSON_HEADERS, [error])
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
        super().__init__("echo://", {}, config.timeouts)
