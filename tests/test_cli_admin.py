"""`routerd keys|users|budgets ...` in-process, with the daemon stopped: the managed files they
write, what they print, and how they refuse (human-owned entries, invalid changes)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from routerd.cli import main
from routerd.config.load import load_all
from tests.conftest import write_config


@pytest.fixture(autouse=True)
def _no_master_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROUTERD_MASTER_KEY", raising=False)
    monkeypatch.delenv("ROUTERD_URL", raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "cfg", None, alias_target="echo/echo-1")


def managed(config: Path, kind: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = yaml.safe_load(
        (config.parent / "state" / f"{kind}.yaml").read_text()
    )[kind]
    return items


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_new_list_rotate_revoke(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(config)
    code, out, _ = run(
        capsys, "keys", "new", "--id", "ci", "--user", "carol", "--models", "echo/*", "-c", c
    )
    assert code == 0
    plaintext = out.splitlines()[0]
    assert re.fullmatch(r"sk-rd-[A-Za-z0-9_-]{43}", plaintext)
    assert "ROUTERD_MASTER_KEY is not set" in out
    (entry,) = managed(config, "keys")
    assert entry["hash"] == "sha256:" + hashlib.sha256(plaintext.encode()).hexdigest()
    assert entry["user"] == "carol" and entry["models"] == ["echo/*"]
    assert [u["id"] for u in managed(config, "users")] == ["carol"]
    state_text = "".join(p.read_text() for p in (config.parent / "state").glob("*.yaml"))
    assert plaintext not in state_text

    code, out, _ = run(capsys, "keys", "list", "--json", "-c", c)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["source"]) for r in rows][-1] == ("ci", "managed")
    assert rows[0]["source"] == f"file:{config.parent / 'keys.yaml'}"
    assert plaintext not in out

    code, out, _ = run(capsys, "keys", "rotate", "ci", "-c", c)
    assert code == 0
    rotated = out.splitlines()[0]
    assert rotated != plaintext
    assert (
        managed(config, "keys")[0]["hash"]
        == "sha256:" + hashlib.sha256(rotated.encode()).hexdigest()
    )

    assert run(capsys, "keys", "revoke", "ci", "-c", c)[0] == 0
    assert managed(config, "keys") == []
    code, _, err = run(capsys, "keys", "revoke", "full", "-c", c)
    assert code == 1
    assert str(config.parent / "keys.yaml") in err
    code, _, err = run(capsys, "keys", "revoke", "nope", "-c", c)
    assert code == 1 and "no key 'nope'" in err


def test_users_commands(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(config)
    assert (
        run(
            capsys,
            "budgets",
            "set",
            "per-user",
            "--limit-usd",
            "5",
            "--period",
            "daily",
            "--scope",
            "per_user",
            "-c",
            c,
        )[0]
        == 0
    )
    assert (
        run(capsys, "users", "add", "dora", "--alias", "Dora", "--budget", "per-user", "-c", c)[0]
        == 0
    )
    assert run(capsys, "users", "block", "dora", "-c", c)[0] == 0
    assert managed(config, "users")[0]["blocked"] is True
    (user,) = load_all(config).users
    assert user.blocked and user.budget_id == "per-user" and user.alias == "Dora"
    assert run(capsys, "users", "unblock", "dora", "-c", c)[0] == 0
    assert "blocked" not in managed(config, "users")[0]
    code, out, _ = run(capsys, "users", "list", "-c", c)
    assert code == 0 and re.search(r"^dora\s+Dora\s+False\s+per-user\s+managed$", out, re.M)
    code, _, err = run(capsys, "users", "add", "dora", "-c", c)
    assert code == 1 and "already exists" in err
    code, _, err = run(capsys, "users", "add", "eve", "--budget", "missing", "-c", c)
    assert code == 1 and "unknown budget 'missing'" in err
    assert [u["id"] for u in managed(config, "users")] == ["dora"]
    assert run(capsys, "users", "rm", "dora", "-c", c)[0] == 0
    assert managed(config, "users") == []


def test_budgets_commands(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(config)
    code, _, _ = run(
        capsys,
        "budgets",
        "set",
        "team",
        "--limit-usd",
        "50",
        "--period",
        "weekly",
        "--scope",
        "tag:search",
        "-c",
        c,
    )
    assert code == 0
    assert managed(config, "budgets") == [
        {
            "id": "team",
            "limit_usd": 50.0,
            "period": "weekly",
            "scope": {"tag": "search"},
            "created_at": managed(config, "budgets")[0]["created_at"],
            "updated_at": managed(config, "budgets")[0]["updated_at"],
        }
    ]
    code, _, _ = run(
        capsys,
        "budgets",
        "set",
        "team",
        "--limit-usd",
        "60",
        "--period",
        "3600s",
        "--scope",
        "global",
        "-c",
        c,
    )
    assert code == 0 and managed(config, "budgets")[0]["limit_usd"] == 60.0
    code, _, err = run(
        capsys,
        "budgets",
        "set",
        "x",
        "--limit-usd",
        "1",
        "--period",
        "hourly",
        "--scope",
        "global",
        "-c",
        c,
    )
    assert code == 1 and "budgets.1.period" in err
    code, _, err = run(
        capsys,
        "budgets",
        "set",
        "x",
        "--limit-usd",
        "1",
        "--period",
        "daily",
        "--scope",
        "team:a",
        "-c",
        c,
    )
    assert code == 2 and "invalid --scope" in err
    code, out, _ = run(capsys, "budgets", "list", "-c", c)
    assert re.search(r"^big\s+1000000\s+total\s+global\s+file:", out, re.M)
    assert re.search(r"^team\s+60.0\s+3600s\s+global\s+managed$", out, re.M)
    code, _, err = run(capsys, "budgets", "rm", "big", "-c", c)
    assert code == 1 and "budgets.yaml" in err
    assert run(capsys, "budgets", "rm", "team", "-c", c)[0] == 0


def test_without_state_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "cfg", None, alias_target="echo/echo-1")
    daemon = yaml.safe_load(config.read_text())
    del daemon["state_dir"]
    config.write_text(yaml.safe_dump(daemon))
    code, out, err = run(capsys, "keys", "new", "--id", "x", "-c", str(config))
    assert code == 1 and "no state_dir" in err
    assert "sk-rd-" not in out
    code, out, _ = run(capsys, "keys", "new", "--id", "x", "--print-only", "-c", str(config))
    assert code == 0 and out.startswith("sk-rd-")
