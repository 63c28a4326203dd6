"""routerd in front of the misbehaving upstream (`tests/fakes_faulty.py`), for the routing tests.

Three OpenAI-wire providers `a`, `b`, `c` are three path prefixes of one faulty server. Models:

    t/primary   deployments a, b (ordered), fallbacks [t/backup]
    t/backup    deployment c, its own (higher) price
    t/single    deployment a only
    t/pair      deployments a, b (ordered), no fallbacks

Timeouts are short (first byte 0.5 s, idle 0.3 s) and the breaker opens after 3 failures and
cools down for 0.3 s, so the fault tests run fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from routerd.metrics import Metrics
from routerd.providers.base import AiohttpTransport
from routerd.providers.http1 import Http1Transport
from routerd.server.gateway import Gateway
from tests.conftest import read_journal, wait_journal, write_config
from tests.fakes_faulty import FaultyUpstream
from tests.serving import RouterdServer

TIMEOUTS = {"connect": 1, "first_byte": 0.5, "idle": 0.3, "total": 5}
BREAKER = {"failures": 3, "cooldown": 1.0, "min_requests": 50}  # wide: CI runs loaded
PRIMARY_PRICE = {"prompt": 0.40, "completion": 1.60, "cached_prompt": 0.10}
BACKUP_PRICE = {"prompt": 1.00, "completion": 4.00}


def provider(faulty: FaultyUpstream, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "openai",
        "base_url": faulty.base_url(name),
        "api_key": f"secret-{name}",
        "timeouts": TIMEOUTS,
        "circuit_breaker": BREAKER,
        **extra,
    }


def catalog(faulty: FaultyUpstream) -> dict[str, Any]:
    def deps(*names: str) -> list[dict[str, str]]:
        return [{"provider": n, "model": f"{n}-model"} for n in names]

    return {
        "providers": {"echo": {"type": "echo"}, **{n: provider(faulty, n) for n in "abc"}},
        "models": {
            "echo/echo-1": {
                "pricing": {"prompt": 0, "completion": 0},
                "deployments": [{"provider": "echo", "model": "echo-1"}],
            },
            "t/primary": {
                "pricing": PRIMARY_PRICE,
                "strategy": "ordered",
                "deployments": deps("a", "b"),
                "fallbacks": ["t/backup"],
            },
            "t/backup": {"pricing": BACKUP_PRICE, "deployments": deps("c")},
            "t/single": {"pricing": PRIMARY_PRICE, "deployments": deps("a")},
            "t/pair": {
                "pricing": PRIMARY_PRICE,
                "strategy": "ordered",
                "deployments": deps("a", "b"),
            },
        },
    }


@dataclass
class Rig:
    root: Path
    gateway: Gateway
    server: RouterdServer
    faulty: FaultyUpstream

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def journal(self) -> list[dict[str, Any]]:
        return read_journal(self.root / "usage")

    async def wait_journal(self, count: int) -> list[dict[str, Any]]:
        return await wait_journal(self.root / "usage", count)

    def write_catalog(self, doc: dict[str, Any]) -> None:
        (self.root / "providers.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    async def metrics(self) -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/metrics") as resp,
        ):
            return await resp.text()

    async def health(self) -> dict[str, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/health/providers") as resp,
        ):
            assert resp.status == 200
            body = await resp.json()
        return {d["deployment"]: d for d in body["deployments"]}

    async def assert_no_leaks(self) -> None:
        """No upstream connection still held and no task left besides the servers' own."""
        for _ in range(50):
            held = 0
            for p in self.gateway.table.providers.values():
                if isinstance(p.transport, AiohttpTransport) and p.transport.connector:
                    held += len(p.transport.connector._acquired)  # aiohttp keeps no public count
                elif isinstance(p.transport, Http1Transport):
                    held += p.transport.in_use
            if held == 0 and not stray_tasks():
                break
            await asyncio.sleep(0.02)
        assert held == 0, f"{held} upstream connection(s) still acquired"
        assert not stray_tasks(), stray_tasks()
        inflight = [d["in_flight"] for d in (await self.health()).values()]
        assert sum(inflight) == 0


def stray_tasks() -> list[str]:
    """Pending tasks other than the test's own and the servers' (connection handlers, journal
    writer, the gateway's delayed close of retired pools)."""
    current = asyncio.current_task()
    names = []
    for task in asyncio.all_tasks():
        if task is current or task.done():
            continue
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", repr(coro))
        if name.startswith(("RequestHandler.", "Answering.", "JournalWriter.", "Gateway.")):
            continue
        names.append(name)
    return names


async def start_rig(tmp_path: Path, faulty: FaultyUpstream) -> Rig:
    root = tmp_path / "cfg"
    write_config(root, None)
    rig_doc = catalog(faulty)
    (root / "providers.yaml").write_text(yaml.safe_dump(rig_doc, sort_keys=False))
    gateway = Gateway.load(root / "routerd.yaml", Metrics())
    server = RouterdServer(gateway)
    await server.start_server()
    return Rig(root, gateway, server, faulty)


async def faulty_upstream() -> AsyncIterator[FaultyUpstream]:
    faulty = FaultyUpstream()
    await faulty.start()
    try:
        yield faulty
    finally:
        await faulty.close()
