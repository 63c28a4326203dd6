"""Managed files: a crash between temp write and rename leaves the old file; a failed write
swaps nothing; the CLI (other processes) and the daemon never lose each other's writes; the
loader's rules for managed files (after human files, duplicates name both, no interpolation)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from routerd.cli import main
from routerd.config.load import ConfigError, load_all
from tests.conftest import MASTER_KEY, Routerd, key_hash, write_config
from tests.test_admin_keys import call, chat

ROOT = Path(__file__).resolve().parent.parent


def env_without_master() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("ROUTERD_MASTER_KEY", "ROUTERD_URL")}


@pytest.fixture(autouse=True)
def _no_master_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTERD_MASTER_KEY", raising=False)
    monkeypatch.delenv("ROUTERD_URL", raising=False)


def test_crash_between_temp_write_and_rename_keeps_old_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", None, alias_target="echo/echo-1")
    assert main(["users", "add", "first", "-c", str(config)]) == 0
    users_file = tmp_path / "cfg" / "state" / "users.yaml"
    before = users_file.read_bytes()
    crash = (
        "import os, sys\n"
        "from routerd.cli import main\n"
        "os.replace = lambda src, dst: os._exit(9)  # the process dies right before the rename\n"
        f"sys.exit(main(['users', 'add', 'second', '-c', {str(config)!r}]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", crash], cwd=ROOT, env=env_without_master(), capture_output=True
    )
    assert proc.returncode == 9, proc.stderr.decode()
    assert users_file.read_bytes() == before
    (orphan,) = users_file.parent.glob(".users.yaml.*.tmp")
    assert "second" in orphan.read_text()  # the new content never replaced the old file
    assert [u.id for u in load_all(config).users] == ["first"]
    # the next change (holding the lock) clears the orphan and applies normally
    assert main(["users", "add", "second", "-c", str(config)]) == 0
    assert not list(users_file.parent.glob(".*.tmp"))
    assert [u.id for u in load_all(config).users] == ["first", "second"]


async def test_failed_write_swaps_nothing(
    routerd: Routerd, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await call(http, "POST", f"{routerd.url}/v1/keys", {"id": "a"}))[0] == 200
    keys_file = routerd.root / "state" / "keys.yaml"
    before = keys_file.read_bytes()
    generation = routerd.gateway.table.generation

    def disk_full(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    status, body = await call(http, "POST", f"{routerd.url}/v1/keys", {"id": "b"})
    monkeypatch.undo()
    assert status == 500 and body["error"]["code"] == "internal_error"
    assert keys_file.read_bytes() == before
    assert not list(keys_file.parent.glob(".*.tmp"))
    assert routerd.gateway.table.generation == generation
    assert (await call(http, "GET", f"{routerd.url}/v1/keys/b"))[0] == 404
    assert (await call(http, "POST", f"{routerd.url}/v1/keys", {"id": "b"}))[0] == 200


async def test_cli_processes_and_daemon_interleave_without_loss(
    routerd: Routerd, http: aiohttp.ClientSession
) -> None:
    async def cli(i: int) -> int:
        argv = ["users", "add", f"cli-{i}", "-c", str(routerd.config_path)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "routerd", *argv,
            cwd=ROOT, env=env_without_master(),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return 0

    async def api(i: int) -> int:
        status, body = await call(http, "POST", f"{routerd.url}/v1/users", {"user_id": f"api-{i}"})
        assert status == 200, body
        return 0

    await asyncio.gather(*(cli(i) for i in range(8)), *(api(i) for i in range(20)))
    users = yaml.safe_load((routerd.root / "state" / "users.yaml").read_text())["users"]
    expected = {f"cli-{i}" for i in range(8)} | {f"api-{i}" for i in range(20)}
    assert {u["id"] for u in users} == expected
    ok, _ = await routerd.gateway.reload()  # the daemon sees the CLI's users after a reload
    assert ok
    status, listed = await call(http, "GET", f"{routerd.url}/v1/users?limit=100")
    assert status == 200
    assert expected <= {u["user_id"] for u in listed}


def test_duplicate_ids_across_human_and_managed_files(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", None, alias_target="echo/echo-1")
    state = tmp_path / "cfg" / "state"
    state.mkdir()
    (state / "keys.yaml").write_text(
        yaml.safe_dump({"keys": [{"id": "full", "hash": key_hash("sk-rd-another-key-000000")}]})
    )
    (state / "budgets.yaml").write_text(
        yaml.safe_dump({"budgets": [{"id": "big", "limit_usd": 1, "period": "daily"}]})
    )
    with pytest.raises(ConfigError) as exc:
        load_all(config)
    messages = {str(p.file): p.message for p in exc.value.problems}
    assert str(tmp_path / "cfg" / "keys.yaml") in messages[str(state / "keys.yaml")]
    assert str(tmp_path / "cfg" / "budgets.yaml") in messages[str(state / "budgets.yaml")]


def test_managed_files_load_after_human_files_without_interpolation(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cfg", None, alias_target="echo/echo-1")
    assert load_all(config).users == ()  # no state dir yet: empty, not an error
    state = tmp_path / "cfg" / "state"
    state.mkdir()
    (state / "keys.yaml").write_text(
        "keys:\n"
        "  - id: m\n"
        f"    hash: {key_hash('sk-rd-managed-key-0000000')}\n"
        "    metadata: {v: '${HOME}'}\n"
        "    expires_at: 2099-01-01T00:00:00Z\n"  # an unquoted YAML timestamp (a hand edit)
    )
    keys = load_all(config).keys
    assert [k.id for k in keys][-1] == "m"
    assert keys[-1].expires_at is not None and keys[-1].expires_at.year == 2099
    assert keys[-1].metadata == {"v": "${HOME}"}
    assert keys[-1].source == state / "keys.yaml"


async def test_cli_tells_a_running_daemon(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    from tests.test_server_reload import free_port, wait_ready

    port = free_port()
    config = write_config(
        tmp_path / "cfg", None, listen=f"127.0.0.1:{port}", alias_target="echo/echo-1"
    )
    url = f"http://127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "routerd", "-c", str(config),
        cwd=ROOT, env=env_without_master(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_ready(http, url, proc)
        argv = ["keys", "new", "--id", "from-cli", "--models", "echo/*", "-c", str(config)]
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "routerd", *argv,
            cwd=ROOT, env={**env_without_master(), "ROUTERD_MASTER_KEY": MASTER_KEY},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await cli.communicate()
        assert cli.returncode == 0, err.decode()
        plaintext = out.decode().splitlines()[0]
        assert f"routerd at {url} reloaded" in out.decode()
        assert await chat(url, plaintext)  # the daemon serves the CLI's key at once
    finally:
        proc.terminate()
        await proc.wait()
    # with the daemon gone, the CLI says when the change applies
    env = {**env_without_master(), "ROUTERD_MASTER_KEY": MASTER_KEY}
    argv = ["keys", "revoke", "from-cli", "-c", str(config)]
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "routerd", *argv,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await cli.communicate()
    assert cli.returncode == 0, err.decode()
    assert "not running" in out.decode() and "next start" in out.decode()
