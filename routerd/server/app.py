"""The daemon: its routes, its server engine and its lifecycle (start, SIGHUP reload, shutdown).

`build_app` holds the `Gateway` (an aiohttp `Application` used for its app keys and cleanup
context), `build_routes` the route table, `RunningGateway` puts both behind the configured engine
(`server:` in routerd.yaml, see `server/http.py`); `serve` runs it: it loads
the files (exit 1 with `file: path: message` lines if they are invalid), listens, reloads on
SIGHUP, and on SIGTERM/SIGINT stops accepting, lets in-flight requests finish up to the
configured grace, flushes the journal and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web

from routerd.config.load import ConfigError, load_daemon
from routerd.config.model import ServerKind
from routerd.logs import configure_logging
from routerd.metrics import Metrics
from routerd.server import account, info
from routerd.server.admin_api import add_admin_routes
from routerd.server.aiohttp_engine import AiohttpServer
from routerd.server.chat import chat_completions
from routerd.server.count_tokens import count_tokens
from routerd.server.dispatch import Dispatcher
from routerd.server.embeddings import embeddings
from routerd.server.gateway import Gateway
from routerd.server.http1_server import Http1Server
from routerd.server.messages import messages
from routerd.server.pipeline import GATEWAY
from routerd.server.responses import responses
from routerd.server.routes import Routes

log = structlog.get_logger("routerd")
ENGINES: dict[str, type[Http1Server] | type[AiohttpServer]] = {
    "http1": Http1Server,
    "aiohttp": AiohttpServer,
}


def build_app(gateway: Gateway) -> web.Application:
    """The application's state (the gateway, under `GATEWAY`) and its lifecycle."""
    app = web.Application()
    app[GATEWAY] = gateway
    app.cleanup_ctx.append(_lifecycle)
    return app


def build_routes(gateway: Gateway) -> Routes:
    routes = Routes()
    for path in ("/v1/chat/completions", "/chat/completions"):
        routes.post(path, chat_completions)
    routes.post("/v1/messages", messages)
    routes.post("/v1/messages/count_tokens", count_tokens)
    for path in ("/v1/embeddings", "/embeddings"):
        routes.post(path, embeddings)
    for path in ("/v1/responses", "/responses"):
        routes.post(path, responses)
    routes.get("/v1/models", info.list_models)
    routes.get("/v1/models/{model_id:.+}", info.get_model)
    routes.get("/v1/generation", info.generation)
    routes.get("/v1/key", account.key_info)
    routes.get("/admin/budgets", account.admin_budgets)
    routes.get("/admin/usage", account.admin_usage)
    routes.get("/healthz", info.healthz)
    routes.get("/readyz", info.readyz)
    if gateway.table.config.daemon.metrics.enabled:
        routes.get("/metrics", info.metrics)
        routes.get("/health/providers", info.health_providers)
    routes.post("/admin/reload", info.admin_reload)
    add_admin_routes(routes)
    return routes


class Server(Protocol):
    """An engine serving one dispatcher (see `server/http.py`)."""

    port: int

    async def start(self, host: str, port: int) -> None: ...

    async def close(self) -> None: ...


class RunningGateway:
    """The gateway's app (started: journal open, ledger rebuilt) behind a listening engine."""

    def __init__(self, gateway: Gateway, engine: ServerKind | None = None) -> None:
        daemon = gateway.table.config.daemon
        self.gateway = gateway
        self.app = build_app(gateway)
        dispatch = Dispatcher(build_routes(gateway))
        self.engine: Server = ENGINES[engine or daemon.server](
            self.app,
            dispatch,
            max_body_bytes=daemon.max_body_bytes,
            grace=daemon.shutdown_grace_seconds,
        )

    @property
    def port(self) -> int:
        return self.engine.port

    async def start(self, host: str, port: int) -> None:
        self.app.freeze()
        await self.app.startup()
        try:
            await self.engine.start(host, port)
        except BaseException:
            await self.app.cleanup()
            raise

    async def close(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the grace), then the app."""
        try:
            await self.engine.close()
        finally:
            await self.app.shutdown()
            await self.app.cleanup()


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    await gateway.journal.start()
    await gateway.rebuild_ledger()
    gateway.ready = True
    yield
    gateway.ready = False
    await gateway.close()


def _event_loop_run(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (it is a dependency on Linux), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


async def _run(gateway: Gateway, host: str, port: int) -> int:
    server = RunningGateway(gateway)
    await server.start(host, port)
    daemon = gateway.table.config.daemon
    grace = daemon.shutdown_grace_seconds
    log.info(
        "listening", host=host, port=port, server=daemon.server, generation=gateway.table.generation
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[tuple[bool, str]]] = set()

    def on_hup() -> None:
        task = loop.create_task(gateway.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    log.info("shutting_down", grace_seconds=grace)
    gateway.draining = True
    await server.close()
    log.info("stopped")
    return 0


def serve(config_path: Path, listen: str | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the process exit code."""
    metrics = Metrics()
    try:
        daemon = load_daemon(config_path)
        configure_logging(daemon.logging.level, daemon.logging.format)
        gateway = Gateway.load(config_path, metrics)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    for warning in gateway.table.config.warnings:
        log.warning("config_warning", message=warning)
    host, port = daemon.listen_host, daemon.listen_port
    if listen:
        host, _, port_text = listen.rpartition(":")
        host, port = host.strip("[]") or "127.0.0.1", int(port_text)
    return _event_loop_run(_run(gateway, host, port))
