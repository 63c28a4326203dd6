"""A list document's text cut into its top-level entries, so a reload parses only the changed ones.

Owns the splitter and the parse of one entry alone. A keys (users, budgets, pricing) file is a
mapping whose `keys:` list holds the entries; `split_document` cuts the text into the rest of the
document (the `keys:` line kept, its value left empty) and one text per entry:
- YAML: a block sequence under `keys:` (at column 0); an entry starts at a line `- ` at the
  list's indentation and runs to the next one (comment and blank lines in between stay with it);
- JSON (routerd's managed files, `dump_document`): `{"keys": [`, one entry a line, `]}`.

An entry is the same parsed alone (`keys:` + its text) as in the whole file unless something
ties it to the rest: an anchor, alias or merge key (checked on the entry's events), a tag, a
directive or document marker, or text the splitter does not cut exactly (an unterminated quote
or flow collection then fails to parse alone). Whatever cannot be shown to be the same gives
None, and the caller parses the whole file instead: a result from here is always exactly what
the full parse gives.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Characters YAML treats as line breaks besides \n, a tab (indentation rules), a BOM.
_UNSPLITTABLE = ("\r", "\t", "\x85", "\u2028", "\u2029", "\ufeff")
# Blank and comment lines, then the first entry's `-` (group 2: its indentation).
_FIRST_ITEM = re.compile(r"( *(?:#[^\n]*)?\n)*( *)-(?: |\n|\Z)")
_LINKED = re.compile(r"[&*!]|<<")  # anchors, aliases, tags, merge keys: look at the events
# One-line quoted scalars: what they hold is text, never an anchor, alias, tag or merge key (a
# `models: ["team/*"]` glob then needs no look at the events). A quote that does not close on
# its line is left in place, so its `*` still sends the entry to the events check.
_QUOTED = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\n]|'')*'""")


@dataclass(frozen=True, slots=True)
class Split:
    """One document's text: `rest` (the whole minus its entries) and each entry's text."""

    field: str
    json: bool
    rest: str
    items: list[str]


def split_document(text: str, field: str) -> Split | None:
    """Cut `text` into the rest and the entries of its `field` list; None if not sure how."""
    body = text
    while body[:1] == "#":
        body = body.partition("\n")[2]
    if body.lstrip()[:1] == "{":
        return _split_json(body, field)
    return _split_yaml(text, field)


def _split_json(body: str, field: str) -> Split | None:
    """`{"field": [` NL, one entry a line (each but the last ending in `,`), `]}` NL. An entry's
    text is its whole line (a JSON string holds no raw newline: a line is whole values)."""
    lines = body.rstrip().split("\n")
    if len(lines) < 3 or lines[0] != "{" + orjson.dumps(field).decode() + ": [":
        return None
    if lines[-1] != "]}" or "${" in body:
        return None
    items = lines[1:-1]
    if body.count(",\n") != len(items) - 1 or items[-1].endswith(","):
        return None  # a comma ends every entry's line but the last one's, and no other line
    return Split(field, True, "", items)


@functools.cache
def _patterns(indent: int) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """For a list at `indent` spaces: an entry's first line, and any line that is not one, nor
    blank, a comment or more indented (the top-level line after the list, or a line the
    splitter does not understand). Both start with the newline before the line: a literal
    prefix, so the regex engine finds the candidates at C speed."""
    entry = rf" {{{indent}}}-(?: |\n|\Z)"
    return re.compile(rf"\n(?={entry})"), re.compile(
        rf"\n(?! {{{indent + 1}}}| *#| *(?:\n|\Z)|{entry})"
    )


def _split_yaml(text: str, field: str) -> Split | None:
    if any(c in text for c in _UNSPLITTABLE):
        return None
    padded = "\n" + text  # every line, the first too, now follows a newline
    head = "\n" + field
    at = padded.find(head)
    line = re.compile(rf"\n{re.escape(field)}:(?: +#[^\n]*| *)\n")
    if at < 0 or not line.match(padded, at):
        return None
    first = _FIRST_ITEM.match(padded, padded.index("\n", at + 1) + 1)
    if first is None:
        return None
    entry, other = _patterns(len(first.group(2)))
    begin = first.start(2)
    found = other.search(padded, begin - 1)
    if found is not None and padded[found.start() + 1] == " ":
        return None  # an indented line that belongs to no entry
    end = found.start() + 1 if found is not None else len(padded)
    rest = padded[:begin] + padded[end:]
    if rest.count(head) != 1 or any(m in rest for m in ("\n---", "\n...", "\n%")):
        return None  # another `field` line, several documents, or directives
    starts = [m.start() + 1 for m in entry.finditer(padded, begin - 1, end)]
    items = [padded[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)]
    return Split(field, False, rest[1:], items)


class _NotAlone(Exception):
    """The entry cannot be parsed on its own (the caller parses the whole file)."""


def _check_events(text: str) -> None:
    """No anchor, alias, tag or merge key: nothing that could tie the entry to the rest."""
    for event in yaml.parse(text, Loader=_SAFE_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _NotAlone
        if getattr(event, "tag", None) is not None:
            raise _NotAlone
        if isinstance(event, yaml.ScalarEvent) and event.value == "<<" and not event.style:
            raise _NotAlone


def parse_entry(split: Split, text: str) -> Any:
    """One entry's value parsed alone; raises `ValueError` when it cannot be (see above)."""
    if split.json:
        try:
            value = orjson.loads(text.strip().removesuffix(","))
        except orjson.JSONDecodeError:
            raise ValueError("not one JSON value") from None
        return value
    doc = f"{split.field}:\n{text}"
    try:
        if _LINKED.search(text) and _LINKED.search(_QUOTED.sub("", text)):
            _check_events(doc)
        parsed = yaml.load(doc, Loader=_SAFE_LOADER)
    except (yaml.YAMLError, _NotAlone):
        raise ValueError("not parsed alone") from None
    if not isinstance(parsed, dict) or list(parsed) != [split.field]:
        raise ValueError("not one entry")
    entries = parsed[split.field]
    if not isinstance(entries, list) or len(entries) != 1:
        raise ValueError("not one entry")
    return entries[0]


def parse_rest(split: Split) -> dict[str, Any] | None:
    """The document without its entries (`field` present, None), or None if it is not that."""
    if split.json:
        return {split.field: None}
    try:
        parsed = yaml.load(split.rest, Loader=_SAFE_LOADER)
    except yaml.YAMLError:
        return None
    if not isinstance(parsed, dict) or split.field not in parsed or parsed[split.field] is not None:
        return None
    return parsed
