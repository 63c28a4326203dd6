"""The aiohttp application and the daemon lifecycle: start, SIGHUP reload, graceful shutdown.

`build_app` wires routes and the single middleware around a `Gateway`; `serve` runs it: it loads
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
from typing import Any

import structlog
from aiohttp import web

from routerd.config.load import ConfigError, load_daemon
from routerd.logs import configure_logging
from routerd.metrics import Metrics
from routerd.server import account, info
from routerd.server.admin_api import add_admin_routes
from routerd.server.chat import chat_completions
from routerd.server.count_tokens import count_tokens
from routerd.server.embeddings import embeddings
from routerd.server.gateway import Gateway
from routerd.server.messages import messages
from routerd.server.middleware import request_middleware
from routerd.server.pipeline import GATEWAY
from routerd.server.responses import responses

log = structlog.get_logger("routerd")


def build_app(gateway: Gateway) -> web.Application:
    daemon = gateway.table.config.daemon
    app = web.Application(middlewares=[request_middleware], client_max_size=daemon.max_body_bytes)
    app[GATEWAY] = gateway
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/chat/completions", chat_completions)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/responses", responses)
    app.router.add_post("/embeddings", embeddings)
    app.router.add_get("/v1/models", info.list_models)
    app.router.add_get("/v1/models/{model_id:.+}", info.get_model)
    app.router.add_get("/v1/generation", info.generation)
    app.router.add_get("/v1/key", account.key_info)
    app.router.add_get("/admin/budgets", account.admin_budgets)
    app.router.add_get("/admin/usage", account.admin_usage)
    app.router.add_get("/healthz", info.healthz)
    app.router.add_get("/readyz", info.readyz)
    if daemon.metrics.enabled:
        app.router.add_get("/metrics", info.metrics)
        app.router.add_get("/health/providers", info.health_providers)
    app.router.add_post("/admin/reload", info.admin_reload)
    add_admin_routes(app.router)
    app.cleanup_ctx.append(_lifecycle)
    return app


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
    app = build_app(gateway)
    grace = gateway.table.config.daemon.shutdown_grace_seconds
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    log.info("listening", host=host, port=port, generation=gateway.table.generation)
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
    await runner.cleanup()
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
