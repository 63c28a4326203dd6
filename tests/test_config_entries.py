"""Reading a list file entry by entry (a reload parses only the entries whose text changed): the
result is exactly the whole-file parse's, for every edit, and whatever the splitter cannot prove
safe takes the whole-file path, with its messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from routerd.config.documents import ConfigError, DocumentCache, Reader, _entry_wise
from routerd.config.entries import split_document
from routerd.config.load import load_all
from routerd.managed.store import dump_document
from tests.bench.config import write_big_config
from tests.conftest import key_hash, write_config

REPO = Path(__file__).resolve().parent.parent
H = [key_hash(f"sk-entries-{i:04d}-0123456789abcdef") for i in range(20)]

BASE = f"""# keys
keys:
  # the first one
  - id: a
    hash: "{H[0]}"
    user: alice
    tags: [search, "x - y # z & w"]
    models: ["openai/*", echo/*]
    limits: {{rpm: 10}}

  - id: b
    hash: {H[1]}
    name: 'it''s - a # test & more'
    expires_at: 2027-01-01T00:00:00Z
# a comment at column 0 between entries
  - {{id: c, hash: "{H[2]}",
     tags: [t1,
       t2], metadata: {{k: "v: - w"}}}}
  -
    id: d
    hash: {H[3]}
    metadata:
      note: |
        line one
        - not an entry
      folded: >-
        some
        text
  - id: e
    hash: {H[4]}
    metadata: {{created: 2026-01-02}}
rate_limits:
  users: {{alice: {{rpm: 5}}}}
"""


def outcome(read: Any) -> tuple[str, Any]:
    try:
        return "ok", read()
    except ConfigError as exc:
        return "error", str(exc)


def full(path: Path, schema: str = "keys") -> tuple[str, Any]:
    """The reference: the whole-file path (no cache)."""
    return outcome(lambda: Reader().document(path, schema)[0])


def check(path: Path, text: str, cache: DocumentCache, schema: str = "keys") -> tuple[str, Any]:
    """Write `text`, read it entry-wise through `cache`, and compare with the reference."""
    path.write_text(text)
    got = outcome(lambda: cache.read(path, schema, False)[0])
    assert got == full(path, schema)
    return got


def entry_wise(text: str, schema: str = "keys") -> dict[str, Any] | None:
    found = _entry_wise(Path("keys.yaml"), text.encode(), schema, False, {})
    return found[0] if found is not None else None


def test_edits_give_the_whole_file_result_and_reuse_unchanged_entries(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    cache = DocumentCache()
    first = check(path, BASE, cache)[1]
    assert entry_wise(BASE) == first and len(first["keys"]) == 5
    assert first["keys"][1]["expires_at"] == "2027-01-01T00:00:00Z"  # dates as text
    added = BASE.replace("rate_limits:", f"  - id: f\n    hash: {H[5]}\nrate_limits:")
    second = check(path, added, cache)[1]
    assert [k["id"] for k in second["keys"]] == ["a", "b", "c", "d", "e", "f"]
    assert all(second["keys"][i] is first["keys"][i] for i in range(5))
    entries = BASE.split("\n  - ")
    reordered = "\n  - ".join([entries[0], entries[3], entries[1], entries[2], *entries[4:]])
    third = check(path, reordered, cache)[1]  # entries[3] is c and d (`-` then a new line)
    assert [k["id"] for k in third["keys"]] == ["c", "d", "a", "b", "e"]
    assert third["keys"][0] is first["keys"][2]
    edits = [
        BASE.replace("  - id: b\n", "  - id: b2\n"),  # changed
        BASE.replace(f"  - id: e\n    hash: {H[4]}\n    metadata: {{created: 2026-01-02}}\n", ""),
        BASE.replace("\n  - id: b", "\n\n   # indented comment\n\n  - id: b"),
        BASE.replace("    limits: {rpm: 10}\n", "    limits: {rpm: 10}  # trailing\n"),
        BASE.rstrip("\n"),  # no newline at the end
        BASE.replace("rate_limits:\n  users: {alice: {rpm: 5}}\n", ""),
        "rate_limits: {}\n" + BASE.replace("rate_limits:\n  users: {alice: {rpm: 5}}\n", ""),
        f"keys:\n- id: a\n  hash: {H[0]}\n# note\n-\n  id: b\n  hash: {H[1]}\nrate_limits: {{}}\n",
    ]
    for text in edits:
        assert check(path, text, cache)[0] == "ok", text
        assert entry_wise(text) == full(path)[1], text


def test_the_shipped_files_and_the_bench_config(tmp_path: Path) -> None:
    cache = DocumentCache()
    for name, schema in (("keys.yaml", "keys"), ("budgets.yaml", "budgets")):
        text = (REPO / "config" / name).read_text()
        assert entry_wise(text, schema) == check(tmp_path / name, text, cache, schema)[1]
    config = write_big_config(tmp_path / "big", 1, 2, keys=300, models=20)
    keys = config.parent / "keys.yaml"
    text = keys.read_text()
    assert entry_wise(text) == check(keys, text, cache)[1]
    doc = full(keys)[1]
    json_text = dump_document("keys", doc).decode()
    json_path = tmp_path / "big" / "keys.json"
    first = check(json_path, json_text, cache)[1]
    assert entry_wise(json_text) == first == doc
    lines = json_text.split("\n")
    edited = "\n".join([*lines[:5], lines[6], lines[5].replace('"key-', '"kez-'), *lines[7:]])
    second = check(json_path, edited, cache)[1]
    assert second["keys"][1] is first["keys"][2] and second["keys"][4] is first["keys"][4]
    assert second["keys"][2]["id"] == "kez-00001"  # a changed line: parsed again


@pytest.mark.parametrize(
    "text",
    [
        f"keys:\n  - &x {{id: a, hash: '{H[0]}'}}\n  - *x\n",  # anchor, alias
        f"keys:\n  - id: a\n    hash: &h '{H[0]}'\n  - id: b\n    hash: *h\n",
        f"keys:\n  - {{id: a, hash: '{H[0]}'}}\n  - {{<<: {{id: b}}, hash: '{H[1]}'}}\n",
        f"keys:\n  - {{id: !!str a, hash: '{H[0]}'}}\n",  # a tag
        f"---\nkeys:\n  - {{id: a, hash: '{H[0]}'}}\n",  # a document marker
        f"keys:\n  - {{id: a,\thash: '{H[0]}'}}\n",  # a tab
        f"{{keys: [{{id: a, hash: '{H[0]}'}}]}}\n",  # flow style at the top
        "keys: []\n",
        f"keys:\n  - id: a\n    name: \"x\n  - id: b\"\n    hash: '{H[0]}'\n",  # a quoted `- `
        f"keys:\n  - {{id: a, hash: '{H[0]}'}}\nkeys:\n  - {{id: b, hash: '{H[1]}'}}\n",
        f"keys:\n    - {{id: a, hash: '{H[0]}'}}\n  - {{id: b, hash: '{H[1]}'}}\n",
        f"keys:\n  - {{id: a, hash: '{H[0]}'}}\n  - {{id: b, hash: '{H[1]}'\n",  # bad YAML
        f"keys:\n  - {{id: a, hash: '{H[0]}', name: '${{NO_SUCH_VAR_X}}'}}\n",
    ],
)
def test_what_the_splitter_cannot_prove_takes_the_whole_file_path(
    tmp_path: Path, text: str
) -> None:
    assert entry_wise(text) is None
    cache = DocumentCache()
    check(tmp_path / "keys.yaml", BASE, cache)
    check(tmp_path / "keys.yaml", text, cache)  # the same result, or the same message


BAD = [
    f"keys:\n  - {{id: a, hash: '{H[0]}'}}\n  - {{id: b, hash: 'sha256:nothex'}}\n",
    f"keys:\n  - {{id: a, hash: '{H[0]}'}}\nrate_limits: {{users: {{u: {{rpm: 0}}}}}}\n",
    f"keys:\n  - {{id: -a, hash: '{H[0]}', colour: red, limits: {{rpm: 0, burst: 1}}}}\n"
    f"  - {{id: ok, hash: '{H[1]}'}}\n  - {{hash: 7, tags: [x, x], disabled: maybe}}\n"
    "  - just text\nrate_limits: {tags: {t: {tpm: -1}}, groups: {}}\nextra: 1\n",
    f"keys:\n  - {{id: a, hash: '{H[0]}', budgets: [b, b], expires_at: 7}}\n  - []\n",
]


@pytest.mark.parametrize("text", BAD)
def test_invalid_entries_get_the_whole_file_messages(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        entry_wise(text)  # found entry by entry, not by the whole-file path
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as reference:
        Reader().document(path, "keys")
    assert str(caught.value) == str(reference.value).replace(str(path), "keys.yaml")
    cache = DocumentCache()
    check(path, BASE, cache)
    check(path, text, cache)  # after a valid version, through the cache: the same message


def test_quoted_indicators_and_flow_entries_are_split(tmp_path: Path) -> None:
    split = split_document(BASE, "keys")
    assert split is not None and len(split.items) == 5
    assert split.items[2].startswith("  - {id: c,") and "t2], metadata" in split.items[2]
    assert split.items[1].endswith("# a comment at column 0 between entries\n")
    assert split.rest.startswith("# keys\nkeys:\n  # the first one\n")
    assert split.rest.endswith("rate_limits:\n  users: {alice: {rpm: 5}}\n")


def test_a_changed_entry_with_an_error_has_the_whole_file_message(tmp_path: Path) -> None:
    path = write_config(tmp_path / "cfg", None, alias_target="echo/echo-1")
    keys = path.parent / "keys.yaml"
    entries = "".join(
        f"  - id: k{i}\n    hash: {H[i]}\n    models: ['echo/*']\n" for i in range(12)
    )
    keys.write_text("keys:\n" + entries)
    cache = DocumentCache()
    assert len(load_all(path, None, cache).keys) == 12
    keys.write_text("keys:\n" + entries.replace(f"hash: {H[7]}", "hash: sha256:nothex"))
    with pytest.raises(ConfigError) as cached:
        load_all(path, None, cache)
    with pytest.raises(ConfigError) as reference:
        load_all(path)
    assert str(cached.value) == str(reference.value)
    assert "keys.yaml: keys.7.hash: 'sha256:nothex' does not match" in str(cached.value)
    keys.write_text("keys:\n" + entries.replace("id: k9\n", "id: k9\n    expires_at: soon\n"))
    with pytest.raises(ConfigError) as cached:
        load_all(path, None, cache)
    assert "keys.yaml: keys.9.expires_at" in str(cached.value)
    keys.write_text("keys:\n" + entries.replace("id: k9\n", "id: k1\n"))
    with pytest.raises(ConfigError) as cached:
        load_all(path, None, cache)
    assert "keys.yaml: keys.9.id: duplicate key id 'k1'" in str(cached.value)


def test_unchanged_entries_keep_their_key_objects(tmp_path: Path) -> None:
    path = write_config(tmp_path / "cfg", None, alias_target="echo/echo-1")
    keys = path.parent / "keys.yaml"
    entries = [f"  - id: k{i}\n    hash: {H[i]}\n" for i in range(10)]
    keys.write_text("keys:\n" + "".join(entries))
    cache = DocumentCache()
    first = load_all(path, None, cache).keys
    keys.write_text("keys:\n" + "".join(entries[:3] + entries[4:] + [entries[3]]))
    second = load_all(path, None, cache).keys
    assert [k.id for k in second] == [f"k{i}" for i in (0, 1, 2, 4, 5, 6, 7, 8, 9, 3)]
    assert all(any(k is old for old in first) for k in second)


POOL = [
    f"  - id: p{{n}}\n    hash: {H[6]}\n    tags: [a, 'b - c']\n",
    f"  - {{{{id: p{{n}}, hash: '{H[7]}', name: \"q # r & s\"}}}}\n",
    f"  -\n    id: p{{n}}\n    hash: {H[8]}\n\n",
    f"  - id: p{{n}}\n    hash: {H[9]}\n    metadata:\n      text: |+\n        keep\n\n",
    f"  - id: p{{n}}  # a comment\n    hash: {H[10]}\n# at column 0\n",
    f"  - id: p{{n}}\n    hash: {H[11]}\n    models: [\n      'x/*',\n      y]\n",
    f"  - id: p{{n}}\n    hash: {H[12]}\n    expires_at: 2030-05-06 07:08:09+02:00\n",
    f'  - id: p{{n}}\n    hash: {H[13]}\n    name: "multi\n      line"\n',
    f"  - id: p{{n}}\n    hash: {H[14]}\n    name: &anchor x\n",  # whole-file path
    f"  - id: p{{n}}\n    hash: {H[15]}\n    limits: {{{{rpm: 0}}}}\n",  # invalid
]


def test_random_edit_sequences_match_the_whole_file_parse(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    path = tmp_path / "keys.yaml"
    cache = DocumentCache()
    entries: list[str] = []
    weighted = POOL[:-2] * 8 + POOL[-2:]  # mostly entries the splitter takes
    for _ in range(150):
        action = rng.choice(["add", "add", "remove", "remove", "swap", "edit"])
        if action == "add" or not entries:
            entries.insert(rng.randrange(len(entries) + 1), rng.choice(weighted))
        elif action == "remove":
            entries.pop(rng.randrange(len(entries)))
        elif action == "swap":
            i, j = rng.randrange(len(entries)), rng.randrange(len(entries))
            entries[i], entries[j] = entries[j], entries[i]
        else:
            entries[rng.randrange(len(entries))] = rng.choice(weighted)
        numbered = [e.format(n=i) for i, e in enumerate(entries)]  # ids unique: valid files
        tail = rng.choice(["", "rate_limits: {tags: {a: {rpm: 3}}}\n", "# end\n"])
        check(path, "# header\nkeys:\n" + "".join(numbered) + tail, cache)


@pytest.mark.parametrize(
    ("schema", "text", "edited"),
    [
        (
            "users",
            "users:\n  - id: alice\n    budget_id: b\n  - {id: bob, blocked: true}\n",
            "users:\n  - id: alice\n    budget_id: b\n  - {id: bob, blocked: false}\n",
        ),
        (
            "pricing",
            "pricing:\n- {model: a/b, prompt: 1, completion: 2}\n- model: c/d\n  prompt: 0.5\n"
            "  completion: 1\n  updated_at: 2026-11-24T10:00:00Z\n",
            "pricing:\n- {model: a/b, prompt: 1, completion: 2}\n- {model: e/f, prompt: x}\n",
        ),
    ],
)
def test_users_and_pricing_files_are_read_entry_wise_too(
    tmp_path: Path, schema: str, text: str, edited: str
) -> None:
    cache = DocumentCache()
    path = tmp_path / f"{schema}.yaml"
    first = check(path, text, cache, schema)[1]
    assert entry_wise(text, schema) == first
    second = check(path, edited, cache, schema)
    if second[0] == "ok":
        assert second[1][schema][0] is first[schema][0]
