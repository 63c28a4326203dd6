"""The reference floor: a minimal aiohttp reverse proxy with one pooled ClientSession.

It forwards the POST body to the upstream unchanged and returns the upstream body; an
`text/event-stream` answer is relayed chunk by chunk as it arrives. No auth, no parsing, no
metering, no logs: whatever routerd adds on top of this is routerd's own cost. With
`--paced-upstream`, `POST /paced/<path>` goes to `<paced upstream>/<path>` (the bench upstream's
paced port) the same way.

    python -m tests.bench.bare_proxy --port PORT --upstream http://127.0.0.1:UPORT \
        [--paced-upstream http://127.0.0.1:PPORT]
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)


def build_app(upstream: str, paced_upstream: str | None = None) -> web.Application:
    base = upstream.rstrip("/")
    paced_base = (paced_upstream or upstream).rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
        app[SESSION] = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60)
        )
        yield
        await app[SESSION].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path_qs
        url = (
            paced_base + path.removeprefix("/paced") if path.startswith("/paced/") else base + path
        )
        async with request.app[SESSION].post(
            url,
            data=body,
            headers={"Content-Type": "application/json"},
        ) as up:
            ctype = up.headers.get("Content-Type", "application/json")
            if ctype.startswith("text/event-stream"):
                resp = web.StreamResponse(status=up.status, headers={"Content-Type": ctype})
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
            return web.Response(
                status=up.status, body=await up.read(), headers={"Content-Type": ctype}
            )

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_get("/health", health)
    app.router.add_post("/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--paced-upstream")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        build_app(args.upstream, args.paced_upstream),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        backlog=1024,
    )


if __name__ == "__main__":
    main()
