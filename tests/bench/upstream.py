"""A zero-latency fake OpenAI upstream for the benchmark (run as a subprocess).

`POST /v1/chat/completions` answers a fixed `chat.completion` with usage, or, when the body has
`"stream": true`, an SSE stream of N fixed chunks (plus a usage chunk when
`stream_options.include_usage` is set) and `data: [DONE]`. `GET /health` answers 200.

Paced mode: when the requested model name contains `paced`, the stream's chunks are written
`--pace-ms` apart (on an absolute schedule, so timer jitter does not accumulate) and each content
delta is `T<monotonic ns at write> `, so a client on the same machine can compare the gaps it sees
with the gaps the upstream actually sent (see `streams.py`). Usage and `[DONE]` follow the last
chunk at once.

    python -m tests.bench.upstream --port PORT [--chunks N] [--pace-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
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


def _paced_chunk(index: int, last: bool) -> bytes:
    stamp = time.monotonic_ns()
    if last:
        delta = "{}"
    elif index == 0:
        delta = f'{{"role":"assistant","content":"T{stamp} "}}'
    else:
        delta = f'{{"content":"T{stamp} "}}'
    finish = '"stop"' if last else "null"
    return (
        'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,'
        f'"model":"gpt-bench","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}'
        "\n\n"
    ).encode()


async def _paced(resp: web.StreamResponse, chunks: int, pace: float) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(chunks):
        if i:
            await asyncio.sleep(max(0.0, start + i * pace - loop.time()))
        await resp.write(_paced_chunk(i, i == chunks - 1))


def build_app(chunks: int, pace_ms: float = 5.0) -> web.Application:
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
        if "paced" in str(body.get("model", "")):
            await _paced(resp, chunks, pace_ms / 1000.0)
        else:
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
    parser.add_argument("--pace-ms", type=float, default=5.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        build_app(args.chunks, args.pace_ms),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=1024,
    )


if __name__ == "__main__":
    main()
