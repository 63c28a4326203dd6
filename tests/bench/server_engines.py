"""Hello-world CPU per request of three HTTP server engines under wrk (c=16): aiohttp's
`web.Application` with one middleware, aiohttp's low-level `web.Server`, and routerd's own
`Http1Server` with a dispatch answering `Reply(b'{"ok":true}')`.

    .venv/bin/python -m tests.bench.server_engines [SECONDS] [ROUNDS]

Each server runs alone in a child process on uvloop, pinned to CPU 1, wrk to CPU 0; the CPU
time is the child's user + system time from /proc over the wrk run, divided by the requests
wrk counted; the minimum over rounds (engines alternate) is printed.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time

import uvloop
from aiohttp import web

from routerd.server.http import JSON_HEADERS, Answer, Reply, Request
from routerd.server.http1_server import Http1Server

ENGINES = ("aiohttp_app", "aiohttp_server", "http1")
BODY = b'{"ok":true}'


async def _serve(engine: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    if engine == "aiohttp_app":

        @web.middleware
        async def passthrough(
            request: web.Request, handler: web.RequestHandler
        ) -> web.StreamResponse:  # type: ignore[type-arg]
            return await handler(request)

        async def hello(request: web.Request) -> web.Response:
            return web.Response(body=BODY, content_type="application/json")

        app = web.Application(middlewares=[passthrough])
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    elif engine == "aiohttp_server":

        async def low(request: web.BaseRequest) -> web.Response:
            return web.Response(body=BODY, content_type="application/json")

        await loop.create_server(web.Server(low, access_log=None), "127.0.0.1", port)
    else:

        async def dispatch(request: Request) -> Answer:
            return Reply(BODY, headers=JSON_HEADERS)

        await Http1Server(web.Application(), dispatch, max_body_bytes=1 << 20).start(
            "127.0.0.1", port
        )
    await asyncio.Event().wait()


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int) -> None:
    for _ in range(200):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _measure(engine: str, seconds: int) -> tuple[float, float]:
    """(CPU µs per request, requests per second) of one run."""
    port = _free_port()
    cmd = [
        "taskset",
        "-c",
        "1",
        sys.executable,
        "-m",
        "tests.bench.server_engines",
        "serve",
        engine,
        str(port),
    ]
    child = subprocess.Popen(cmd)
    try:
        _wait_ready(port)
        wrk = ["taskset", "-c", "0", "wrk", "-t1", "-c16"]
        url = f"http://127.0.0.1:{port}/"
        subprocess.run([*wrk, "-d1s", url], capture_output=True, check=True)  # warm-up
        before = _cpu(child.pid)
        out = subprocess.run([*wrk, f"-d{seconds}s", url], capture_output=True, text=True)
        used = _cpu(child.pid) - before
    finally:
        child.terminate()
        child.wait()
    match = re.search(r"(\d+) requests in", out.stdout)
    if match is None or "Non-2xx" in out.stdout or "Socket errors" in out.stdout:
        raise RuntimeError(f"wrk failed:\n{out.stdout}{out.stderr}")
    requests = int(match.group(1))
    return 1e6 * used / requests, requests / seconds


def main(seconds: int, rounds: int) -> None:
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for engine in ENGINES:
            us, rps = _measure(engine, seconds)
            print(f"  {engine:15} {us:6.1f} µs/request  {rps:8.0f} req/s", flush=True)
            if engine not in best or us < best[engine][0]:
                best[engine] = (us, rps)
    print(f"min of {rounds} rounds, {seconds} s each, wrk c=16:")
    for engine, (us, rps) in best.items():
        print(f"{engine:15} {us:6.1f} µs/request  {rps:8.0f} req/s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        uvloop.run(_serve(sys.argv[2], int(sys.argv[3])))
    else:
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 5,
            int(sys.argv[2]) if len(sys.argv) > 2 else 3,
        )
