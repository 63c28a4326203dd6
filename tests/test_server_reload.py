"""Hot reload in-process (under load, broken files, admin endpoint) and the daemon as a
subprocess (SIGHUP reload, SIGTERM graceful exit with the journal flushed)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.conftest import (
    ECHO_KEY,
    FULL_KEY,
    MASTER_KEY,
    UPSTREAM_SECRET,
    Routerd,
    read_journal,
    write_config,
)
from tests.test_server_ops import sample

MESSAGES = [{"role": "user", "content": "hi"}]
AUTH = {"Authorization": f"Bearer {FULL_KEY}"}


async def ask(
    http: aiohttp.ClientSession, url: str, model: str = "fast", key: str = FULL_KEY
) -> tuple[int, str]:
    async with http.post(
        f"{url}/v1/chat/completions",
        json={"model": model, "messages": MESSAGES},
        headers={"Authorization": f"Bearer {key}"},
    ) as resp:
        await resp.read()
        return resp.status, resp.headers.get("x-routerd-model", "")


async def test_reload_alias_under_load(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    results: list[tuple[int, str]] = []

    flowing = asyncio.Event()  # reload once answers are flowing (no fixed sleep: CI is slow)

    async def worker() -> None:
        for _ in range(25):
            results.append(await ask(http, routerd.url))
            flowing.set()

    tasks = [asyncio.create_task(worker()) for _ in range(4)]
    async with asyncio.timeout(10):
        await flowing.wait()
    routerd.set_alias("echo/echo-1")
    ok, message = await routerd.gateway.reload()
    assert ok, message
    await asyncio.gather(*tasks)

    assert len(results) == 100
    assert all(status == 200 for status, _ in results), results
    assert {model for _, model in results} == {"fake/gpt-test", "echo/echo-1"}
    assert routerd.gateway.table.generation == 2
    assert await ask(http, routerd.url) == (200, "echo/echo-1")
    lines = await routerd.wait_journal(101)
    assert len(lines) == 101
    assert all(line["status"] == 200 for line in lines)
    assert lines[-1]["config_generation"] == 2
    assert lines[-1]["resolved_model"] == "echo/echo-1"
    assert lines[-1]["model"] == "fast"


async def test_admin_reload(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    url = f"{routerd.url}/admin/reload"
    async with http.post(url) as resp:
        assert resp.status == 401
    async with http.post(url, headers=AUTH) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "invalid_api_key"
    assert routerd.gateway.table.generation == 1
    routerd.set_alias("echo/echo-1")
    async with http.post(url, headers={"Authorization": f"Bearer {MASTER_KEY}"}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"reloaded": True, "config_generation": 2}
    assert await ask(http, routerd.url) == (200, "echo/echo-1")


async def test_broken_reload_keeps_serving(routerd: Routerd, http: aiohttp.ClientSession) -> None:
    (routerd.root / "providers.yaml").write_text("providers: {fake: {type: nosuch}}\nmodels: [\n")
    ok, message = await routerd.gateway.reload()
    assert not ok
    assert "providers.yaml" in message
    assert routerd.gateway.table.generation == 1
    async with http.post(
        f"{routerd.url}/admin/reload", headers={"Authorization": f"Bearer {MASTER_KEY}"}
    ) as resp:
        assert resp.status >= 400
        body = await resp.json()
        assert "Traceback" not in str(body)
    assert await ask(http, routerd.url) == (200, "fake/gpt-test")
    text = await routerd.metrics_text(http)
    assert sample(text, "routerd_config_reloads_total", result="error") == 2
    assert sample(text, "routerd_config_generation") == 1


async def test_broken_schema_reload_counts_one_error(
    routerd: Routerd, http: aiohttp.ClientSession
) -> None:
    (routerd.root / "providers.yaml").write_text("providers: {fake: {type: nosuch}}\nmodels: {}\n")
    ok, message = await routerd.gateway.reload()
    assert not ok
    assert "providers.yaml" in message
    text = await routerd.metrics_text(http)
    assert sample(text, "routerd_config_reloads_total", result="error") == 1
    assert await ask(http, routerd.url) == (200, "fake/gpt-test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(
    http: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process
) -> None:
    for _ in range(200):
        if proc.returncode is not None:
            raise AssertionError(f"routerd exited with {proc.returncode}")
        try:
            async with http.get(f"{url}/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("routerd did not become ready")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_subprocess_sighup_and_sigterm(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    root = tmp_path / "cfg"
    config = write_config(root, None, alias_target="echo/echo-1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "ROUTERD_MASTER_KEY"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "routerd",
        "-c",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        await wait_ready(http, url, proc)
        assert await ask(http, url, "echo/echo-1", ECHO_KEY) == (200, "echo/echo-1")
        assert await ask(http, url, "fast", ECHO_KEY) == (200, "echo/echo-1")

        # SIGHUP: point the alias somewhere else (a second echo model) and reload
        doc = yaml.safe_load((root / "providers.yaml").read_text())
        doc["models"]["echo/echo-2"] = {
            "pricing": {"prompt": 0, "completion": 0},
            "deployments": [{"provider": "echo", "model": "echo-2"}],
        }
        doc["aliases"]["fast"] = "echo/echo-2"
        (root / "providers.yaml").write_text(yaml.safe_dump(doc))
        proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            if await ask(http, url, "fast", ECHO_KEY) == (200, "echo/echo-2"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the alias did not switch after SIGHUP")

        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    lines = read_journal(root / "usage")
    assert len(lines) >= 3
    assert lines[0]["model"] == "echo/echo-1"
    assert lines[0]["key_id"] == "echo-only"
    assert lines[1]["model"] == "fast"
    assert lines[1]["config_generation"] == 1
    assert lines[-1]["resolved_model"] == "echo/echo-2"
    assert lines[-1]["config_generation"] == 2
    assert all(line["status"] == 200 for line in lines)


async def test_reload_that_changes_a_providers_headers_is_seen_by_the_next_request(
    routerd: Routerd, http: aiohttp.ClientSession
) -> None:
    """The provider's fixed headers are encoded once at load: a reload must encode them anew."""
    assert await ask(http, routerd.url, "fake/gpt-test") == (200, "fake/gpt-test")
    first = routerd.fake.last.headers
    assert first["Authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert "X-Team" not in first
    doc = yaml.safe_load((routerd.root / "providers.yaml").read_text())
    doc["providers"]["fake"]["headers"] = {"X-Team": "blue"}
    doc["providers"]["fake"]["api_key"] = "sk-rotated"
    (routerd.root / "providers.yaml").write_text(yaml.safe_dump(doc))
    ok, message = await routerd.gateway.reload()
    assert ok, message
    assert await ask(http, routerd.url, "fake/gpt-test") == (200, "fake/gpt-test")
    after = routerd.fake.last.headers
    assert after["X-Team"] == "blue"
    assert after["Authorization"] == "Bearer sk-rotated"
    assert after["Content-Type"] == "application/json"
    assert routerd.fake.last.body["model"] == "gpt-upstream"
