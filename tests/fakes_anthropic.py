"""A fake Anthropic Messages API: a real aiohttp server that records what it got.

`FakeAnthropic.mode` switches the behaviour per test: "ok" (default), "401", "429", "529",
"500", "400-context". Shapes follow the anthropic SDK's `Message`, `Usage` and
`RawMessageStreamEvent` types; errors use Anthropic's `{"type": "error", ...}` envelope.
"""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

from aiohttp import web

from tests.fake_server import FakeServer

REPLY_TEXT = "Hello from the fake Anthropic upstream"
STREAM_PIECES = ["Hello", " from", " the", " fake", " Anthropic", " upstream"]
assert "".join(STREAM_PIECES) == REPLY_TEXT
USAGE: dict[str, int] = {
    "input_tokens": 1200,
    "output_tokens": 50,
    "cache_creation_input_tokens": 100,
    "cache_read_input_tokens": 200,
}
MESSAGE_ID = "msg_01FakeAnthropic0123456789"
TOOL_USE_ID = "toolu_01FakeAnthropic012345678"
TOOL_INPUT: dict[str, Any] = {"city": "Paris"}
TOOL_TRIGGER = "use the tool"
REQUEST_ID = "req_01FakeAnthropic0123456789"
COUNT_TOKENS = 4242

_ERRORS: dict[str, tuple[int, str, str]] = {
    "401": (401, "authentication_error", "invalid x-api-key"),
    "429": (429, "rate_limit_error", "Number of request tokens has exceeded your rate limit."),
    "529": (529, "overloaded_error", "Overloaded"),
    "500": (500, "api_error", "Internal server error"),
    "400-context": (
        400,
        "invalid_request_error",
        "prompt is too long: 250000 tokens > 200000 maximum",
    ),
}


def error_body(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": REQUEST_ID}


def error_response(
    status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {"request-id": REQUEST_ID, **(headers or {})}
    return web.json_response(error_body(type_, message), status=status, headers=all_headers)


def _bearer(headers: dict[str, str]) -> str | None:
    """The key of an `Authorization: Bearer <key>` header (the anthropic SDK >= 2 sends the API key
    this way; raw HTTP clients and older SDKs send `x-api-key`)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def wants_tool(body: dict[str, Any]) -> bool:
    """True when the request offers tools and the last user message's text asks for one."""
    if not body.get("tools"):
        return False
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    if not users:
        return False
    content = users[-1].get("content")
    if isinstance(content, str):
        text = content
    else:
        text = " ".join(
            b.get("text", "") for b in content or [] if isinstance(b, dict) and b["type"] == "text"
        )
    return TOOL_TRIGGER in text.lower()


def message(model: str, tool_name: str | None = None) -> dict[str, Any]:
    """A complete non-streaming `message` object."""
    if tool_name is not None:
        content: list[dict[str, Any]] = [
            {"type": "tool_use", "id": TOOL_USE_ID, "name": tool_name, "input": TOOL_INPUT}
        ]
        stop_reason = "tool_use"
    else:
        content = [{"type": "text", "text": REPLY_TEXT}]
        stop_reason = "end_turn"
    return {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": dict(USAGE),
    }


def stream_events(model: str, tool_name: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, data) pairs of a streamed reply, in Anthropic's exact order."""
    start_usage = {
        "input_tokens": USAGE["input_tokens"],
        "cache_creation_input_tokens": USAGE["cache_creation_input_tokens"],
        "cache_read_input_tokens": USAGE["cache_read_input_tokens"],
        "output_tokens": 1,
    }
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": MESSAGE_ID,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
    ]
    if tool_name is not None:
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": TOOL_USE_ID,
            "name": tool_name,
            "input": {},
        }
        raw = json.dumps(TOOL_INPUT)
        cuts = [0, len(raw) // 3, 2 * len(raw) // 3, len(raw)]
        deltas = [{"type": "input_json_delta", "partial_json": raw[a:b]} for a, b in pairwise(cuts)]
        stop_reason = "tool_use"
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in STREAM_PIECES]
        stop_reason = "end_turn"
    events.append(
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
    )
    events.append(("ping", {"type": "ping"}))
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        for delta in deltas
    ]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": USAGE["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


class FakeAnthropic(FakeServer):
    """`POST /v1/messages` over real HTTP. `requests` holds `{"body", "headers"}` per call.

    The key is accepted as `x-api-key: <key>` or `Authorization: Bearer <key>`."""

    prefix = "/v1"

    def __init__(self, api_key: str = "sk-ant-fake-key", mode: str = "ok") -> None:
        super().__init__(api_key, mode)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        return app

    async def count_tokens(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = await request.json()
        self.requests.append({"body": body, "headers": headers, "path": request.path})
        if self.api_key not in (headers.get("x-api-key"), _bearer(headers)):
            return error_response(401, "authentication_error", "invalid x-api-key")
        if self.mode in _ERRORS:
            status, type_, text = _ERRORS[self.mode]
            return error_response(status, type_, text)
        return web.json_response({"input_tokens": COUNT_TOKENS})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.requests.append({"body": body, "headers": headers})

        if self.mode in _ERRORS:
            status, type_, text = _ERRORS[self.mode]
            extra = {"retry-after": "1"} if self.mode == "429" else None
            return error_response(status, type_, text, extra)
        if self.api_key not in (headers.get("x-api-key"), _bearer(headers)):
            return error_response(401, "authentication_error", "invalid x-api-key")
        if not headers.get("anthropic-version"):
            return error_response(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        if not isinstance(body, dict):
            return error_response(
                400, "invalid_request_error", "There was an error parsing the body as JSON"
            )
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            return error_response(400, "invalid_request_error", "max_tokens: Field required")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return error_response(
                400, "invalid_request_error", "messages: at least one message is required"
            )

        model = str(body.get("model", ""))
        tool_name = body["tools"][0]["name"] if wants_tool(body) else None
        if body.get("stream"):
            return await self._stream(request, model, tool_name)
        return web.json_response(message(model, tool_name), headers={"request-id": REQUEST_ID})

    async def _stream(
        self, request: web.Request, model: str, tool_name: str | None
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "request-id": REQUEST_ID,
            }
        )
        await response.prepare(request)
        for name, data in stream_events(model, tool_name):
            frame = f"event: {name}\ndata: {json.dumps(data)}\n\n"
            await response.write(frame.encode())
        await response.write_eof()
        return response
