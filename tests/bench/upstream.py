"""A zero-latency fake OpenAI upstream for the benchmark (run as a subprocess).

`POST /v1/chat/completions` answers a fixed `chat.completion` with usage, or, when the body has
`"stream": true`, an SSE stream of N fixed chunks (plus a usage chunk when
`stream_options.include_usage` is set) and `data: [DONE]`. `GET /health` answers 200.

The paced streams are not served here: `paced_upstream.py` serves them from the bench process
itself (aiohttp's per-frame write path and one timer per stream per chunk cost more than the
relays under test).

    python -m tests.bench.upstream --port PORT [--chunks N]
"""

from __future__ import annotations

import argparse
import time

import orjson
from aiohttp import web

USAGE = {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}


def _completion() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "gpt-bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the bench upstream."},
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def _chunk(delta: dict[str, object], finish: str | None, usage: object = None) -> bytes:
    body: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "gpt-bench",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


def build_app(chunks: int) -> web.Application:
    completion = _completion()
    frames = [_chunk({"role": "assistant", "content": ""}, None)]
    frames += [_chunk({"content": f"tok{i} "}, None) for i in range(max(chunks - 2, 0))]
    frames.append(_chunk({}, "stop"))
    usage_frame = _chunk({}, None, USAGE)
    done = b"data: [DONE]\n\n"

    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if not body.get("stream"):
            return web.Response(body=completion, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for frame in frames:
            await resp.write(frame)
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(usage_frame)
        await resp.write(done)
        await resp.write_eof()
        return resp

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--pace-ms", type=float, default=5.0, help="ignored (paced_upstream.py)")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        build_app(args.chunks),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=1024,
    )


if __name__ == "__main__":
    main()
