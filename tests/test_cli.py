"""`routerd` CLI: check (good and broken files), keys new, --version; run in-process."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
import yaml

from routerd import __version__
from routerd.cli import main

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "routerd.yaml"
PROBLEM_LINE = re.compile(r"^(?P<file>/\S+\.yaml): (?P<path>[^:]+): (?P<message>.+)$")

PROVIDERS = """\
providers:
  echo: {type: echo}
  openai: {type: openai, base_url: https://api.openai.com/v1, api_key: "${OPENAI_API_KEY}"}
models:
  echo/echo-1:
    pricing: {prompt: 0, completion: 0}
    deployments: [{provider: echo, model: echo-1}]
  openai/gpt-4.1-mini:
    pricing: {prompt: 0.4, completion: 1.6}
    deployments: [{provider: openai, model: gpt-4.1-mini}]
aliases: {offline: echo/echo-1}
"""
KEYS = f"""\
keys:
  - id: demo
    hash: sha256:{"a" * 64}
    models: ["echo/*"]
    budgets: [demo-daily]
"""
BUDGETS = """\
budgets:
  - {id: demo-daily, limit_usd: 1, period: daily, scope: {key: demo}}
"""
DAEMON = """\
listen: 127.0.0.1:8080
providers: providers.yaml
keys: keys.yaml
budgets: budgets.yaml
journal: {dir: usage}
"""


@pytest.fixture(autouse=True)
def _no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "ROUTERD_MASTER_KEY"):
        monkeypatch.delenv(name, raising=False)


def write_config(tmp_path: Path, **overrides: str) -> Path:
    files = {
        "routerd.yaml": DAEMON,
        "providers.yaml": PROVIDERS,
        "keys.yaml": KEYS,
        "budgets.yaml": BUDGETS,
    }
    files.update({name.replace("_", "."): text for name, text in overrides.items()})
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path / "routerd.yaml"


def problems(err: str) -> list[re.Match[str]]:
    lines = [line for line in err.splitlines() if not line.endswith("configuration is invalid")]
    assert lines, err
    matches = [PROBLEM_LINE.match(line) for line in lines]
    assert all(matches), err
    return [m for m in matches if m]


def test_check_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(SHIPPED)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert out.rstrip().endswith("OK")
    assert re.search(r"^  echo \(echo\): enabled$", out, re.M)
    assert re.search(r"^  openai \(openai\): disabled: OPENAI_API_KEY is not set$", out, re.M)
    assert re.search(r"^  echo/echo-1$", out, re.M)  # servable
    assert re.search(r"^keys: 1 \(demo\)$", out, re.M)
    assert re.search(r"^budgets: \d+ \(.*demo-daily.*\)$", out, re.M)
    assert re.search(r"^listen 127\.0\.0\.1:8080 \(server: http1\)$", out, re.M)


def test_check_names_the_chosen_server_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, routerd_yaml=DAEMON + "server: aiohttp\n")
    assert main(["check", "-c", str(config)]) == 0
    assert "listen 127.0.0.1:8080 (server: aiohttp)" in capsys.readouterr().out


def test_shipped_demo_key_hash() -> None:
    data = yaml.safe_load((ROOT / "config" / "keys.yaml").read_text())
    (demo,) = [k for k in data["keys"] if k["id"] == "demo"]
    expected = hashlib.sha256(b"sk-rd-demo-0123456789abcdef").hexdigest()
    assert demo["hash"] == f"sha256:{expected}"
    assert demo["models"] == ["echo/*"]


def test_check_copy_of_shipped_files_with_secret_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    (tmp_path / "config").mkdir()
    for name in ("routerd.yaml", "keys.yaml", "budgets.yaml"):
        shutil.copy(ROOT / "config" / name, tmp_path / "config" / name)
    shutil.copy(ROOT / "providers.yaml", tmp_path / "providers.yaml")
    assert main(["check", "-c", str(tmp_path / "config" / "routerd.yaml")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  openai \(openai\): enabled$", out, re.M)


def test_check_minimal_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(write_config(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "models: 2 (1 servable)" in out
    assert "offline -> echo/echo-1" in out
    assert "admin API off" in out


@pytest.mark.parametrize(
    ("overrides", "file", "path", "message"),
    [
        (
            {"routerd_yaml": DAEMON + "colour: blue\n"},
            "routerd.yaml",
            "(top)",
            "unknown field",
        ),
        (
            {"keys_yaml": KEYS.replace("models:", "modles:")},
            "keys.yaml",
            "keys.0",
            "unknown field",
        ),
        (
            {"providers_yaml": PROVIDERS + "models: [unclosed\n"},
            "providers.yaml",
            "line",
            "invalid YAML",
        ),
        (
            {"providers_yaml": PROVIDERS.replace("{provider: echo,", "{provider: ekho,")},
            "providers.yaml",
            "models.echo/echo-1.deployments.0.provider",
            "unknown provider 'ekho'",
        ),
        (
            {"keys_yaml": KEYS.replace("[demo-daily]", "[nope]")},
            "keys.yaml",
            "keys.0.budgets",
            "unknown budget 'nope'",
        ),
        (
            {"routerd_yaml": DAEMON + "server: h2\n"},
            "routerd.yaml",
            "server",
            "",
        ),
        (
            {"budgets_yaml": BUDGETS.replace("period: daily", "period: fortnightly")},
            "budgets.yaml",
            "budgets.0.period",
            "",
        ),
        (
            {"routerd_yaml": DAEMON.replace("keys.yaml", "missing.yaml")},
            "missing.yaml",
            "(top)",
            "cannot read file",
        ),
    ],
)
def test_check_broken(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    overrides: dict[str, str],
    file: str,
    path: str,
    message: str,
) -> None:
    config = write_config(tmp_path, **overrides)
    assert main(["check", "-c", str(config)]) == 1
    out, err = capsys.readouterr()
    assert "OK" not in out
    assert "Traceback" not in out + err
    found = problems(err)
    assert any(
        Path(m["file"]).name == file and m["path"].startswith(path) and message in m["message"]
        for m in found
    ), err


def test_check_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path,
        keys_yaml=KEYS.replace("[demo-daily]", "[nope]"),
        providers_yaml=PROVIDERS.replace("{provider: echo,", "{provider: ekho,"),
    )
    assert main(["check", "-c", str(config)]) == 1
    files = {Path(m["file"]).name for m in problems(capsys.readouterr().err)}
    assert files == {"keys.yaml", "providers.yaml"}


def test_check_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(tmp_path / "nope.yaml")]) == 1
    (m,) = problems(capsys.readouterr().err)
    assert m["file"].endswith("nope.yaml")
    assert "cannot read file" in m["message"]


def test_keys_new(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["keys", "new", "--print-only", "--id", "search-team", "--user", "alice"]
    argv += ["--models", "openai/*", "echo/*", "--tags", "search"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    first, *rest = out.splitlines()
    assert re.fullmatch(r"sk-rd-[A-Za-z0-9_-]{43}", first)
    assert "not stored anywhere" in out
    snippet = "\n".join(line for line in rest if not line.startswith("#"))
    assert first not in snippet
    (entry,) = yaml.safe_load(snippet)
    assert entry == {
        "id": "search-team",
        "hash": "sha256:" + hashlib.sha256(first.encode()).hexdigest(),
        "user": "alice",
        "tags": ["search"],
        "models": ["openai/*", "echo/*"],
    }


def test_keys_new_entry_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "--print-only", "--id", "k1", "--models", "*"]) == 0
    out = capsys.readouterr().out
    snippet = "\n".join(line for line in out.splitlines()[1:] if not line.startswith("#"))
    config = write_config(tmp_path, keys_yaml="keys:\n" + snippet + "\n")
    assert main(["check", "-c", str(config)]) == 0
    assert "keys: 1 (k1)" in capsys.readouterr().out


def test_keys_new_is_random(capsys: pytest.CaptureFixture[str]) -> None:
    main(["keys", "new", "--print-only", "--id", "a"])
    main(["keys", "new", "--print-only", "--id", "a"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sk-rd-")]
    assert len(lines) == 2 and lines[0] != lines[1]


def test_keys_new_rejects_bad_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new", "--print-only", "--id", "bad id!"]) == 2
    out, err = capsys.readouterr()
    assert "sk-rd-" not in out
    assert "invalid --id" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"routerd {__version__}"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-c", "x.yaml", "--listen", "0.0.0.0:9000"], (Path("x.yaml"), "0.0.0.0:9000")),
        (["serve", "-c", "y.yaml"], (Path("y.yaml"), None)),
        ([], (Path("config/routerd.yaml"), None)),
    ],
)
def test_serve_dispatch(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: tuple[Path, str | None]
) -> None:
    import routerd.cli as cli

    calls: list[tuple[Path, str | None]] = []

    def fake_serve(config: Path, listen: str | None) -> int:
        calls.append((config, listen))
        return 7

    monkeypatch.setattr(cli, "_serve", fake_serve)
    assert main(argv) == 7
    assert calls == [expected]


def test_check_never_prints_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "tooshort-secret"  # under the 16-character minimum
    config = tmp_path / "routerd.yaml"
    (tmp_path / "providers.yaml").write_text(
        "providers: {echo: {type: echo}}\n"
        "models: {echo/echo-1: {pricing: {prompt: 0, completion: 0},"
        " deployments: [{provider: echo, model: echo-1}]}}\n"
    )
    config.write_text(f"providers: providers.yaml\nmaster_key: {secret}\n")
    assert main(["check", "-c", str(config)]) == 1
    out = capsys.readouterr()
    assert "master_key" in out.err
    assert secret not in out.err + out.out


def test_check_reports_a_bad_expiry_date_as_a_problem(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import write_config

    config = write_config(tmp_path / "cfg", None, alias_target="echo/echo-1")
    keys = tmp_path / "cfg" / "keys.yaml"
    keys.write_text(keys.read_text().replace("2020-01-01T00:00:00Z", "2020-13-45T99:00:00Z"))
    run = subprocess.run(
        [sys.executable, "-m", "routerd", "check", "-c", str(config)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 1
    assert "keys.3.expires_at: not an RFC 3339 date-time" in run.stderr
    assert "Traceback" not in run.stderr
