"""Reading files: the cache of unchanged documents (what a reload re-reads), JSON documents (the
managed files' format, also accepted from people), and the fast validator agreeing with
jsonschema, whose messages are the ones shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from routerd.config.documents import DocumentCache, Reader, schema_errors
from routerd.config.load import ConfigError, load_all
from routerd.managed.store import dump_document
from tests.conftest import key_hash, write_config


def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "cfg", None, alias_target="echo/echo-1")


def test_an_unchanged_file_is_reused_and_a_changed_one_read_again(tmp_path: Path) -> None:
    path = config(tmp_path)
    keys = path.parent / "keys.yaml"
    cache = DocumentCache()
    first = load_all(path, None, cache)
    second = load_all(path, None, cache)
    assert second.keys[0] is first.keys[0]  # the same objects: nothing was parsed again
    doc = yaml.safe_load(keys.read_text())
    doc["keys"].append({"id": "new", "hash": key_hash("sk-new-0123456789abcdef")})
    keys.write_text(yaml.safe_dump(doc))
    third = load_all(path, None, cache)
    assert [k.id for k in third.keys][-1] == "new"
    assert third.keys[0] is not first.keys[0]


def test_a_same_size_rewrite_is_noticed(tmp_path: Path) -> None:
    path = config(tmp_path)
    budgets = path.parent / "budgets.yaml"
    cache = DocumentCache()
    assert load_all(path, None, cache).budgets[0].limit_usd == 1_000_000
    text = budgets.read_text()
    budgets.write_text(text.replace("1000000", "2000000"))
    stat = budgets.stat()
    os.utime(budgets, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the same mtime
    assert load_all(path, None, cache).budgets[0].limit_usd == 2_000_000


def test_keys_may_be_json_with_leading_comments(tmp_path: Path) -> None:
    path = config(tmp_path)
    doc = {"keys": [{"id": "j", "hash": key_hash("sk-json-0123456789abcdef"), "tags": ["x"]}]}
    (path.parent / "keys.yaml").write_bytes(dump_document("keys", doc))
    text = (path.parent / "keys.yaml").read_text()
    assert text.startswith("# Managed by routerd") and '\n  {"id":"j"' in text
    assert yaml.safe_load(text) == doc  # still YAML for every other tool
    loaded = load_all(path)
    assert [(k.id, k.tags) for k in loaded.keys] == [("j", ("x",))]


def test_invalid_documents_get_jsonschema_messages_with_paths(tmp_path: Path) -> None:
    path = config(tmp_path)
    (path.parent / "keys.yaml").write_text(
        "keys:\n  - {id: a, hash: 'sha256:nothex'}\n  - {id: b, hash: "
        f"'{key_hash('sk-b-0123456789abcdef')}', limits: {{rpm: 0}}, colour: red}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_all(path)
    text = str(caught.value)
    assert "keys.yaml: keys.0.hash: 'sha256:nothex' does not match" in text
    assert "keys.1: unknown field ('colour' was unexpected)" in text
    assert "keys.1.limits.rpm: 0 is less than the minimum of 1" in text


@pytest.mark.parametrize(
    "doc",
    [
        {"keys": []},
        {"keys": [{"id": "a", "hash": "sha256:" + "0" * 64, "expires_at": "whenever"}]},
        {"keys": [{"id": "-bad", "hash": "sha256:" + "0" * 64}]},
        {"keys": [{"id": "a", "hash": "sha256:" + "0" * 64, "budgets": ["x", "x"]}]},
        {"keys": [], "rate_limits": {"users": {"u": {"rpm": 1, "burst": 2}}}},
        {"keys": "nope"},
    ],
)
def test_the_fast_validator_never_accepts_what_jsonschema_rejects(doc: object) -> None:
    from routerd.config.documents import _validator

    reference = list(_validator("keys").iter_errors(doc))
    assert [e.message for e in schema_errors("keys", doc)] == [
        e.message for e in sorted(reference, key=lambda e: list(e.absolute_path))
    ]


def test_an_overlay_document_is_never_cached(tmp_path: Path) -> None:
    path = config(tmp_path)
    keys = path.parent / "keys.yaml"
    cache = DocumentCache()
    overlay_doc = {"keys": [{"id": "o", "hash": key_hash("sk-overlay-0123456789ab")}]}
    reader = Reader({keys: overlay_doc}, cache)
    assert reader.document(keys, "keys")[0]["keys"][0]["id"] == "o"
    assert load_all(path, None, cache).keys[0].id == "full"
