"""Shared fixtures for the server tests: a fake OpenAI upstream, a tmp config dir, routerd served
in-process over real HTTP, and official SDK clients pointed at it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import anthropic
import openai
import pytest
import yaml

from routerd.metrics import Metrics
from routerd.server.gateway import Gateway
from tests.fakes import FakeOpenAI
from tests.serving import RouterdServer

if TYPE_CHECKING:
    from tests.fakes_faulty import FaultyUpstream
    from tests.routing_rig import Rig
from tests.fakes_anthropic import FakeAnthropic
from tests.fakes_gemini import FakeGemini

FULL_KEY = "sk-rd-test-full-0123456789abcdef"
ECHO_KEY = "sk-rd-test-echo-0123456789abcdef"
DISABLED_KEY = "sk-rd-test-disabled-0123456789ab"
EXPIRED_KEY = "sk-rd-test-expired-0123456789abc"
MASTER_KEY = "master-key-0123456789abcdef"
UPSTREAM_SECRET = "upstream-secret"
MAX_BODY_BYTES = 2048


def key_hash(plaintext: str) -> str:
    return "sha256:" + hashlib.sha256(plaintext.encode()).hexdigest()


def providers_doc(fake_base_url: str | None, alias_target: str = "fake/gpt-test") -> dict[str, Any]:
    providers: dict[str, Any] = {"echo": {"type": "echo"}}
    models: dict[str, Any] = {
        "echo/echo-1": {
            "pricing": {"prompt": 0, "completion": 0},
            "context_length": 131072,
            "deployments": [{"provider": "echo", "model": "echo-1"}],
        },
        "echo/echo-embed-1": {
            "pricing": {"prompt": 0, "completion": 0},
            "deployments": [{"provider": "echo", "model": "echo-embed-1"}],
        },
    }
    if fake_base_url is not None:
        providers["fake"] = {
            "type": "openai",
            "base_url": fake_base_url,
            "api_key": UPSTREAM_SECRET,
        }
        models["fake/embed-test"] = {
            "pricing": {"prompt": 0.02, "completion": 0},
            "features": ["embeddings"],
            "deployments": [{"provider": "fake", "model": "embed-upstream"}],
        }
        models["fake/gpt-test"] = {
            "pricing": {"prompt": 0.40, "completion": 1.60, "cached_prompt": 0.10},
            "context_length": 128000,
            "max_output_tokens": 16384,
            "deployments": [{"provider": "fake", "model": "gpt-upstream"}],
        }
    return {"providers": providers, "models": models, "aliases": {"fast": alias_target}}


def write_config(
    root: Path,
    fake_base_url: str | None,
    *,
    listen: str = "127.0.0.1:18999",
    alias_target: str = "fake/gpt-test",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    routerd = {
        "listen": listen,
        "providers": "providers.yaml",
        "keys": "keys.yaml",
        "budgets": "budgets.yaml",
        "master_key": MASTER_KEY,
        "journal": {"dir": str(root / "usage"), "fsync": "always"},
        "state_dir": "state",
        "timeouts": {"connect": 2, "first_byte": 1, "idle": 2, "total": 10},
        "max_body_bytes": MAX_BODY_BYTES,
        "shutdown_grace_seconds": 5,
        "logging": {"level": "warning", "format": "json"},
    }
    keys = {
        "keys": [
            {
                "id": "full",
                "hash": key_hash(FULL_KEY),
                "user": "alice",
                "tags": ["search", "team-a"],
                "models": ["*"],
            },
            {"id": "echo-only", "hash": key_hash(ECHO_KEY), "user": "bob", "models": ["echo/*"]},
            {"id": "off", "hash": key_hash(DISABLED_KEY), "disabled": True},
            {"id": "old", "hash": key_hash(EXPIRED_KEY), "expires_at": "2020-01-01T00:00:00Z"},
        ]
    }
    budgets = {
        "budgets": [{"id": "big", "limit_usd": 1_000_000, "period": "total", "scope": "global"}]
    }
    (root / "routerd.yaml").write_text(yaml.safe_dump(routerd, sort_keys=False))
    (root / "providers.yaml").write_text(
        yaml.safe_dump(providers_doc(fake_base_url, alias_target), sort_keys=False)
    )
    (root / "keys.yaml").write_text(yaml.safe_dump(keys, sort_keys=False))
    (root / "budgets.yaml").write_text(yaml.safe_dump(budgets, sort_keys=False))
    return root / "routerd.yaml"


def read_journal(journal_dir: Path) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted(journal_dir.glob("usage-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                lines.append(json.loads(line))
    return lines


async def wait_journal(journal_dir: Path, count: int, within: float = 5.0) -> list[dict[str, Any]]:
    """Poll until the journal holds at least `count` lines (the writer is a background task)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        lines = read_journal(journal_dir)
        if len(lines) >= count or asyncio.get_running_loop().time() > deadline:
            return lines
        await asyncio.sleep(0.02)


@dataclass
class Routerd:
    root: Path
    config_path: Path
    gateway: Gateway
    server: RouterdServer
    fake: FakeOpenAI

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def journal_dir(self) -> Path:
        return self.root / "usage"

    def journal(self) -> list[dict[str, Any]]:
        return read_journal(self.journal_dir)

    async def wait_journal(self, count: int) -> list[dict[str, Any]]:
        return await wait_journal(self.journal_dir, count)

    def set_alias(self, target: str) -> None:
        doc = providers_doc(self.fake.base_url, target)
        (self.root / "providers.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    async def metrics_text(self, http: aiohttp.ClientSession) -> str:
        async with http.get(f"{self.url}/metrics") as resp:
            assert resp.status == 200
            return await resp.text()


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@asynccontextmanager
async def serve_config(
    config_path: Path, fake: FakeOpenAI, clock: Callable[[], float] = time.time
) -> AsyncIterator[Routerd]:
    """routerd on `config_path` (as the test edited it), with an injectable clock."""
    gateway = Gateway.load(config_path, Metrics(), clock=clock)
    server = RouterdServer(gateway)
    await server.start_server()
    try:
        yield Routerd(config_path.parent, config_path, gateway, server, fake)
    finally:
        await server.close()


@pytest.fixture
def cfg(tmp_path: Path, fake_upstream: FakeOpenAI) -> Path:
    """A config for the fake upstream that a test edits before `serve_config`."""
    return write_config(tmp_path / "cfg", fake_upstream.base_url)


@pytest.fixture
async def routerd(tmp_path: Path, fake_upstream: FakeOpenAI) -> AsyncIterator[Routerd]:
    config_path = write_config(tmp_path / "cfg", fake_upstream.base_url)
    gateway = Gateway.load(config_path, Metrics())
    server = RouterdServer(gateway)
    await server.start_server()
    try:
        yield Routerd(tmp_path / "cfg", config_path, gateway, server, fake_upstream)
    finally:
        await server.close()


ANTHROPIC_SECRET = "sk-ant-upstream-secret"
GEMINI_SECRET = "gemini-upstream-secret"


def add_upstreams(config_path: Path, anthropic_url: str, gemini_url: str) -> None:
    """Add the fake Anthropic (`anth/claude-test`) and Gemini (`gem/gemini-test`) upstreams,
    and a body limit large enough for agent-sized requests."""
    daemon = yaml.safe_load(config_path.read_text())
    daemon["max_body_bytes"] = 1_048_576
    config_path.write_text(yaml.safe_dump(daemon, sort_keys=False))
    path = config_path.parent / "providers.yaml"
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    doc["providers"]["anth"] = {
        "type": "anthropic",
        "base_url": anthropic_url,
        "api_key": ANTHROPIC_SECRET,
        "api_version": "2023-06-01",
    }
    doc["providers"]["gem"] = {"type": "gemini", "base_url": gemini_url, "api_key": GEMINI_SECRET}
    doc["models"]["anth/claude-test"] = {
        "pricing": {"prompt": 3, "completion": 15, "cached_prompt": 0.3, "cache_write": 3.75},
        "max_output_tokens": 8192,
        "deployments": [{"provider": "anth", "model": "claude-upstream"}],
    }
    doc["models"]["gem/gemini-test"] = {
        "pricing": {"prompt": 0.30, "completion": 2.50, "cached_prompt": 0.03},
        "max_output_tokens": 8192,
        "deployments": [{"provider": "gem", "model": "gemini-upstream"}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=ANTHROPIC_SECRET)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def fake_gemini() -> AsyncIterator[FakeGemini]:
    fake = FakeGemini(api_key=GEMINI_SECRET)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def gw(
    tmp_path: Path,
    fake_upstream: FakeOpenAI,
    fake_anthropic: FakeAnthropic,
    fake_gemini: FakeGemini,
) -> AsyncIterator[Routerd]:
    """routerd in front of all three fake upstream types (OpenAI, Anthropic, Gemini)."""
    config_path = write_config(tmp_path / "cfg", fake_upstream.base_url)
    add_upstreams(config_path, fake_anthropic.base_url, fake_gemini.base_url)
    gateway = Gateway.load(config_path, Metrics())
    server = RouterdServer(gateway)
    await server.start_server()
    try:
        yield Routerd(tmp_path / "cfg", config_path, gateway, server, fake_upstream)
    finally:
        await server.close()


@pytest.fixture
async def oai(gw: Routerd) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=FULL_KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def claude(gw: Routerd) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key=FULL_KEY, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def client(routerd: Routerd) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=f"{routerd.url}/v1", api_key=FULL_KEY, max_retries=0)
    try:
        yield sdk
    finally:
        await sdk.close()


@pytest.fixture
async def echo_client(routerd: Routerd) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=f"{routerd.url}/v1", api_key=ECHO_KEY, max_retries=0)
    try:
        yield sdk
    finally:
        await sdk.close()


# -- the routing rig (tests/routing_rig.py imports this module, so it is imported lazily) ------


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyUpstream]:
    from tests.routing_rig import faulty_upstream

    async for upstream in faulty_upstream():
        yield upstream


@pytest.fixture
async def rig(tmp_path: Path, faulty: FaultyUpstream) -> AsyncIterator[Rig]:
    from tests.routing_rig import start_rig

    started = await start_rig(tmp_path, faulty)
    try:
        yield started
    finally:
        await started.server.close()


@pytest.fixture
async def sdk(rig: Rig) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{rig.url}/v1", api_key=FULL_KEY, max_retries=0
    ) as client:
        yield client
