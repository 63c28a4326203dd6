"""A fake Gemini API (`v1beta`): a real aiohttp server that records what it got.

`POST /v1beta/models/{model}:generateContent` answers one `GenerateContentResponse`;
`:streamGenerateContent?alt=sse` answers SSE frames, each a `GenerateContentResponse` with the
next parts (the last one with `finishReason` and the full `usageMetadata`). A last user turn whose
text contains "use the tool" gets a `functionCall` for the first declared function.
`FakeGemini.mode` switches behaviour: "ok" (default), "429" (RESOURCE_EXHAUSTED), "500"
(INTERNAL), "400" (INVALID_ARGUMENT). Errors use Google's `{"error": {code, message, status}}`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fake_server import FakeServer

REPLY_TEXT = "Hello from the fake Gemini upstream"
STREAM_PIECES = ["Hello from", " the fake", " Gemini upstream"]
assert "".join(STREAM_PIECES) == REPLY_TEXT
THOUGHT_TEXT = "**Greeting** The user says hi."
USAGE: dict[str, int] = {
    "promptTokenCount": 1200,
    "candidatesTokenCount": 40,
    "totalTokenCount": 1250,
    "cachedContentTokenCount": 300,
    "thoughtsTokenCount": 10,
}
RESPONSE_ID = "fakeGeminiResponse01"
MODEL_VERSION_SUFFIX = "-001"
TOOL_ARGS: dict[str, Any] = {"city": "Paris"}
TOOL_TRIGGER = "use the tool"

_ERRORS: dict[str, tuple[int, str, str]] = {
    "429": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    "500": (500, "INTERNAL", "An internal error has occurred."),
    "400": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
}


def error_response(status: int, rpc_status: str, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "status": rpc_status}}
    return web.json_response(body, status=status)


def wants_tool(body: dict[str, Any]) -> str | None:
    """The first declared function's name when the last user turn asks for a tool."""
    declarations = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    users = [c for c in body.get("contents") or [] if c.get("role", "user") == "user"]
    if not declarations or not users:
        return None
    text = " ".join(p.get("text", "") for p in users[-1].get("parts") or [])
    return str(declarations[0]["name"]) if TOOL_TRIGGER in text.lower() else None


def wants_thoughts(body: dict[str, Any]) -> bool:
    thinking = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    return bool(thinking.get("includeThoughts"))


def response(model: str, parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": dict(USAGE),
        "modelVersion": model + MODEL_VERSION_SUFFIX,
        "responseId": RESPONSE_ID,
    }


def reply_parts(tool: str | None, thoughts: bool) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": THOUGHT_TEXT, "thought": True}] if thoughts else []
    if tool is not None:
        return [*parts, {"functionCall": {"name": tool, "args": TOOL_ARGS}}]
    return [*parts, {"text": REPLY_TEXT}]


def stream_chunks(model: str, tool: str | None, thoughts: bool) -> list[dict[str, Any]]:
    """The chunks of a streamed reply; only the last has `finishReason`."""
    pieces: list[dict[str, Any]] = [{"text": THOUGHT_TEXT, "thought": True}] if thoughts else []
    if tool is not None:
        pieces.append({"functionCall": {"name": tool, "args": TOOL_ARGS}})
    else:
        pieces += [{"text": piece} for piece in STREAM_PIECES]
    chunks = [response(model, [p], None) for p in pieces]
    chunks[-1]["candidates"][0]["finishReason"] = "STOP"
    for chunk in chunks[:-1]:  # intermediate chunks carry only the prompt count so far
        chunk["usageMetadata"] = {"promptTokenCount": USAGE["promptTokenCount"]}
    return chunks


class FakeGemini(FakeServer):
    """`requests` holds `{"body", "headers", "path", "query"}` per call."""

    prefix = "/v1beta"

    def __init__(self, api_key: str = "fake-gemini-key", mode: str = "ok") -> None:
        super().__init__(api_key, mode)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1beta/models/{name:.+}", self.models)
        return app

    async def models(self, request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = await request.json()
        except ValueError:
            body = None
        record = {"body": body, "headers": headers, "path": request.path}
        record["query"] = dict(request.query)
        self.requests.append(record)
        model, _, method = request.match_info["name"].rpartition(":")
        if self.mode in _ERRORS:
            return error_response(*_ERRORS[self.mode])
        if headers.get("x-goog-api-key") != self.api_key:
            return error_response(
                400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."
            )
        if method not in ("generateContent", "streamGenerateContent") or not model:
            return error_response(404, "NOT_FOUND", f"unknown method {method!r}")
        if not isinstance(body, dict) or not body.get("contents") or "model" in body:
            return error_response(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        tool, thoughts = wants_tool(body), wants_thoughts(body)
        if method == "streamGenerateContent":
            return await self._stream(request, model, tool, thoughts)
        return web.json_response(response(model, reply_parts(tool, thoughts), "STOP"))

    async def _stream(
        self, request: web.Request, model: str, tool: str | None, thoughts: bool
    ) -> web.StreamResponse:
        if request.query.get("alt") != "sse":
            return error_response(400, "INVALID_ARGUMENT", "this fake only streams with alt=sse")
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        for chunk in stream_chunks(model, tool, thoughts):
            await stream.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
        await stream.write_eof()
        return stream
