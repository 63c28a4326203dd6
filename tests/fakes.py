"""Fake upstream servers: a real aiohttp OpenAI Chat Completions server that records what it got.

`FakeOpenAI.mode` switches the behaviour per test: "ok" (default), "401", "429", "500",
"context_length", "malformed", "hang", "slow_stream" (0.2 s between SSE frames),
"slow_first_frame" (a stream's headers, then no frame until `release`). Shapes follow
the openai SDK's `ChatCompletion` and `ChatCompletionChunk` types.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

REPLY_TEXT = "Hello from the fake upstream"
STREAM_PIECES = ["Hello", " from", " the", " fake", " upstream"]
USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 50,
    "total_tokens": 1250,
    "prompt_tokens_details": {"cached_tokens": 200, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
CREATED = 1_764_000_000
EMBED_TOKENS = 10
TOOL_TRIGGER = "use the tool"
TOOL_CALL_ID = "call_fake_weather_1"
TOOL_ARGS = '{"city": "Paris"}'


@dataclass
class Received:
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeOpenAI:
    mode: str = "ok"
    hang_seconds: float = 5.0
    frames_sent: int = 0  # stream frames written (all streams)
    requests: list[Received] = field(default_factory=list)
    azure_calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    server: TestServer | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set by each chat request

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/v1"))

    @property
    def last(self) -> Received:
        return self.requests[-1]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self.azure_chat)
        return app

    async def start(self) -> None:
        self.server = TestServer(self.app(), host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()

    async def azure_chat(self, request: web.Request) -> web.StreamResponse:
        """Azure OpenAI's deployment URL: records the path and query, then answers as OpenAI."""
        self.azure_calls.append((request.match_info["deployment"], dict(request.query)))
        return await self.chat(request)

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(Received(body=body, headers=dict(request.headers)))
        error = self._error()
        if error is not None:
            return error
        inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.25, -0.5, 0.75]}
            for i, _ in enumerate(inputs)
        ]
        usage = {
            "prompt_tokens": EMBED_TOKENS * len(inputs),
            "total_tokens": EMBED_TOKENS * len(inputs),
        }
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Received(body=body, headers=dict(request.headers)))
        self.arrived.set()
        error = self._error()
        if error is not None:
            return error
        if self.mode == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), self.hang_seconds)
        if self.mode == "malformed":
            return web.Response(
                body=b'{"id": "chatcmpl-x", "choices": [', content_type="application/json"
            )
        model = body.get("model", "")
        tool = tool_to_call(body)
        if body.get("stream"):
            return await self._stream(request, body, model, tool)
        return web.json_response(completion(model, tool))

    def _error(self) -> web.Response | None:
        def envelope(
            message: str, type_: str, code: str | None, param: str | None = None
        ) -> dict[str, Any]:
            return {"error": {"message": message, "type": type_, "param": param, "code": code}}

        if self.mode == "401":
            return web.json_response(
                envelope("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
                status=401,
            )
        if self.mode == "429":
            return web.json_response(
                envelope("Rate limit reached for requests", "requests", "rate_limit_exceeded"),
                status=429,
                headers={"Retry-After": "7"},
            )
        if self.mode == "500":
            return web.json_response(
                envelope(
                    "The server had an error while processing your request.", "server_error", None
                ),
                status=500,
            )
        if self.mode == "context_length":
            return web.json_response(
                envelope(
                    "This model's maximum context length is 8192 tokens. However, your messages "
                    "resulted in 9000 tokens. Please reduce the length of the messages.",
                    "invalid_request_error",
                    "context_length_exceeded",
                    "messages",
                ),
                status=400,
            )
        return None

    async def _stream(
        self, request: web.Request, body: dict[str, Any], model: str, tool: str | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.mode == "slow_first_frame":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), self.hang_seconds)
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        for frame in stream_chunks(model, include_usage, tool):
            self.frames_sent += 1
            await response.write(b"data: " + json.dumps(frame).encode() + b"\n\n")
            if self.mode == "slow_stream":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), 0.2)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def tool_to_call(body: dict[str, Any]) -> str | None:
    """The first tool's name when the last user message asks to "use the tool"."""
    tools = body.get("tools") or []
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    if not tools or not users or body["messages"][-1].get("role") != "user":
        return None
    content = users[-1].get("content")
    text = content if isinstance(content, str) else json.dumps(content)
    return str(tools[0]["function"]["name"]) if TOOL_TRIGGER in text else None


def _tool_message(tool: str) -> dict[str, Any]:
    call = {
        "id": TOOL_CALL_ID,
        "type": "function",
        "function": {"name": tool, "arguments": TOOL_ARGS},
    }
    return {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}


def completion(model: str, tool: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": REPLY_TEXT, "refusal": None}
    if tool is not None:
        message = _tool_message(tool)
    return {
        "id": "chatcmpl-fake123",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool else "stop",
            }
        ],
        "usage": USAGE,
    }


def stream_chunks(model: str, include_usage: bool, tool: str | None = None) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": "chatcmpl-fake123",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            data["usage"] = None
        return data

    frames = [chunk({"role": "assistant", "content": ""}, None)]
    if tool is None:
        frames += [chunk({"content": piece}, None) for piece in STREAM_PIECES]
        frames.append(chunk({}, "stop"))
    else:
        head = {"index": 0, "id": TOOL_CALL_ID, "type": "function"}
        frames.append(
            chunk({"tool_calls": [{**head, "function": {"name": tool, "arguments": ""}}]}, None)
        )
        for piece in (TOOL_ARGS[:9], TOOL_ARGS[9:]):
            frames.append(
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None)
            )
        frames.append(chunk({}, "tool_calls"))
    if include_usage:
        frames.append(
            {
                "id": "chatcmpl-fake123",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": USAGE,
            }
        )
    return frames
