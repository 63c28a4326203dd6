"""Reading one declarative file: parse, `${ENV}` interpolation, JSON Schema validation, errors.

Owns the `file: path: message` problem type, YAML (libyaml's C loader when present) and JSON
parsing, the interpolation of `${VAR}` / `${VAR:-default}`, validation (a compiled fastjsonschema
check first; jsonschema, the reference with the precise messages, whenever that fails), secret
redaction in messages, and `DocumentCache`: a reload re-parses only the files that changed, and
of a changed list file (keys, users, budgets, pricing) only the entries whose text changed
(`entries.py` cuts the text; anything it cannot cut, or any problem, takes the whole-file path,
whose result and messages are the reference).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import fastjsonschema
import orjson
import yaml

from routerd.config.entries import Split, parse_entry, parse_rest, split_document

T = TypeVar("T")
# libyaml's C parser when PyYAML has it (faster loads; every admin change re-validates all).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    file: Path
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path or '(top)'}: {self.message}"


class ConfigError(Exception):
    """One or more problems in the files; nothing from them was applied."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _schema(name: str) -> dict[str, Any]:
    text = resources.files("routerd.config").joinpath(f"schemas/{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(name: str) -> Draft202012Validator:
    """jsonschema's validator, imported on first use: a valid config never needs it, and the
    package costs ~3 MB of the daemon's memory."""
    from jsonschema import Draft202012Validator

    schema = _schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def _fast_validator(name: str) -> Callable[[Any], Any]:
    """The schema compiled to Python by fastjsonschema: ~50x faster on a 10,000-key file."""
    return fastjsonschema.compile(_schema(name), formats={"date-time": lambda _: True})


def schema_errors(name: str, data: Any) -> list[Any]:
    """jsonschema's errors for `data` (sorted by path), computed only if the fast check fails.

    The compiled validator decides quickly that a document is valid; jsonschema (the reference,
    with the precise messages) has the last word whenever it does not.
    """
    try:
        _fast_validator(name)(data)
        return []
    except fastjsonschema.JsonSchemaException:
        pass
    return sorted(_validator(name).iter_errors(data), key=lambda e: list(e.absolute_path))


def _json_path(parts: Any) -> str:
    return ".".join(str(p) for p in parts)


def _parse_yaml(path: Path, raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(path, "", f"not UTF-8: {exc.reason}")]) from None
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(path, where, f"invalid YAML: {problem}")]) from None


def _interpolate(value: Any, path: tuple[str, ...], missing: dict[tuple[str, ...], str]) -> Any:
    """Replace `${VAR}` / `${VAR:-default}`; an unset VAR drops the field and is recorded."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            new = _interpolate(v, (*path, str(k)), missing)
            if new is not _UNSET:
                out[str(k)] = new
        return out
    if isinstance(value, list):
        items = [_interpolate(v, (*path, str(i)), missing) for i, v in enumerate(value)]
        return [item for item in items if item is not _UNSET]
    if isinstance(value, datetime | date):
        return value.isoformat().replace("+00:00", "Z")
    if not isinstance(value, str) or "${" not in value:
        return value
    unset: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        env = os.environ.get(name)
        if env:
            return env
        if default is not None:
            return default
        unset.append(name)
        return ""

    result = _ENV_PATTERN.sub(substitute, value)
    if unset:
        missing[path] = unset[0]
        return _UNSET
    return result


_UNSET = object()


def _dates_as_text(value: Any) -> Any:
    """YAML timestamps as RFC 3339 text, as `_interpolate` does, but nothing else replaced."""
    if isinstance(value, dict):
        return {str(k): _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat().replace("+00:00", "Z")
    return value


# Documents used instead of reading their paths (a managed change validated before it is written).
Overlay = Mapping[Path, Any]


def _identity(path: Path) -> tuple[int, ...] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class _Cached:
    identity: tuple[int, ...]
    schema: str
    managed: bool
    data: dict[str, Any]
    missing: dict[tuple[str, ...], str]


class DocumentCache:
    """Validated documents by path, reused while the file is unchanged (same inode, size,
    mtime and ctime): a reload re-reads only the files that changed. Owned by the gateway;
    documents handed out are shared and must not be mutated."""

    def __init__(self) -> None:
        self._docs: dict[Path, _Cached] = {}
        self._derived: dict[tuple[Path, str], tuple[object, object]] = {}
        # The entries of the last version of each list file, by their text.
        self._entries: dict[tuple[Path, str, bool], dict[str, Any]] = {}

    def derived(self, path: Path, data: object, what: str, build: Callable[[], T]) -> T:
        """`build()`'s result for this very document object, reused while it is unchanged."""
        found = self._derived.get((path, what))
        if found is not None and found[0] is data:
            return cast(T, found[1])
        value = build()
        self._derived[(path, what)] = (data, value)
        return value

    def derived_since(
        self,
        path: Path,
        data: dict[str, Any],
        what: str,
        build: Callable[[dict[str, Any], tuple[dict[str, Any], T] | None], T],
    ) -> T:
        """Like `derived`, but `build` also gets the previous document and its result."""
        found = self._derived.get((path, what))
        if found is not None and found[0] is data:
            return cast(T, found[1])
        previous = cast(tuple[dict[str, Any], T], found) if found is not None else None
        value = build(data, previous)
        self._derived[(path, what)] = (data, value)
        return value

    def read(
        self, path: Path, schema: str, managed: bool
    ) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
        """Read and validate `path`; a list file entry by entry, unchanged entries reused."""
        if not _entry_wise_schema(schema):
            return _validated(path, *_read(path), schema, managed)
        raw = _read_bytes(path)
        key = (path, schema, managed)
        found = _entry_wise(path, raw, schema, managed, self._entries.get(key, {}))
        if found is None:  # the known entries stay: a fixed file reuses them again
            parsed, plain = _parse_raw(path, raw)
            return _validated(path, parsed, not plain, schema, managed)
        data, self._entries[key] = found
        return data, {}

    def get(self, path: Path, schema: str, managed: bool) -> _Cached | None:
        cached = self._docs.get(path)
        if cached is None or (cached.schema, cached.managed) != (schema, managed):
            return None
        return cached if cached.identity == _identity(path) else None

    def put(self, path: Path, cached: _Cached) -> None:
        self._docs[path] = cached


@dataclass(frozen=True, slots=True)
class Reader:
    """How one load reads its files: `overlay` documents instead of some paths (a managed change
    validated before it is written), and an optional cache of unchanged files."""

    overlay: Overlay | None = None
    cache: DocumentCache | None = None

    def has(self, path: Path) -> bool:
        return path.exists() or (self.overlay is not None and path in self.overlay)

    def document(
        self, path: Path, schema: str, *, managed: bool = False
    ) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
        """Read (or take from the overlay or the cache), interpolate and validate one file.
        Managed files are never interpolated: what the API stored is what is read back."""
        if self.overlay is not None and path in self.overlay:
            return _validated(path, self.overlay[path], True, schema, managed)
        if self.cache is None:
            return _validated(path, *_read(path), schema, managed)
        cached = self.cache.get(path, schema, managed)
        if cached is None:
            identity = _identity(path)
            data, missing = self.cache.read(path, schema, managed)
            if identity is not None and identity == _identity(path):
                self.cache.put(path, _Cached(identity, schema, managed, data, missing))
            return data, missing
        return cached.data, cached.missing

    def derived(
        self,
        path: Path,
        schema: str,
        build: Callable[[dict[str, Any]], T],
        *,
        managed: bool = False,
        depends_on: str = "",
    ) -> T:
        """`build(document)`, computed once per version of the file (and of `depends_on`, what
        else `build` reads) when there is a cache: e.g. the `KeyConfig`s of an unchanged
        10,000-key file are reused by a reload."""
        data, _ = self.document(path, schema, managed=managed)
        if self.cache is None or (self.overlay is not None and path in self.overlay):
            return build(data)
        return self.cache.derived(path, data, f"{schema}:{depends_on}", lambda: build(data))

    def derived_since(
        self,
        path: Path,
        schema: str,
        build: Callable[[dict[str, Any], tuple[dict[str, Any], T] | None], T],
        *,
        managed: bool = False,
    ) -> T:
        """`build(document, previous)`, once per version of the file like `derived`; `previous`
        is the last version's document and result (None without one), for `build` to reuse
        what it made of entries that are still there (the same objects: see `DocumentCache`)."""
        data, _ = self.document(path, schema, managed=managed)
        if self.cache is None or (self.overlay is not None and path in self.overlay):
            return build(data, None)
        return self.cache.derived_since(path, data, f"{schema}:since", build)


def _read(path: Path) -> tuple[Any, bool]:
    """The parsed file, and whether it needs the walk that replaces `${VAR}` and YAML dates
    (not for JSON without `${`: a 10,000-key file then skips a pass over every value)."""
    raw, plain = _parse(path)
    return raw, not plain


def read_document(path: Path) -> Any:
    """Parse one file (see `_parse`)."""
    return _parse(path)[0]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigProblem(path, "", f"cannot read file: {exc.strerror}")]) from None


def _parse(path: Path) -> tuple[Any, bool]:
    """Parse one file, and say whether it is plain JSON (no `${`). A JSON document, after any
    leading `#` comment lines, is parsed with orjson (routerd writes its managed files that way,
    and JSON is YAML); anything else, or JSON that orjson rejects, with the YAML loader (whose
    message then says what is wrong)."""
    return _parse_raw(path, _read_bytes(path))


def _parse_raw(path: Path, raw: bytes) -> tuple[Any, bool]:
    body = raw
    while body[:1] == b"#":
        body = body.partition(b"\n")[2]
    if body.lstrip()[:1] == b"{":
        try:
            return orjson.loads(body), b"${" not in body
        except orjson.JSONDecodeError:
            pass
    return _parse_yaml(path, raw), False


def _validated(
    path: Path, raw: Any, walk: bool, schema: str, managed: bool
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    if raw is None:
        raw = {}
    missing: dict[tuple[str, ...], str] = {}
    if not walk:
        data = raw
    elif managed:
        data = _dates_as_text(raw)
    else:
        data = _interpolate(raw, (), missing)
    if missing and schema in ("keys", "budgets", "users", "pricing"):
        raise ConfigError(
            [ConfigProblem(path, _json_path(p), f"{var} is not set") for p, var in missing.items()]
        )
    errors = schema_errors(schema, data)
    if errors:
        raise ConfigError(
            [ConfigProblem(path, _json_path(e.absolute_path), _describe(e)) for e in errors]
        )
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(path, "", "expected a mapping at the top")])
    return data, missing


_LIST_SCHEMAS = frozenset({"keys", "users", "budgets", "pricing"})  # the list is named so
_TOP_KEYWORDS = frozenset(
    {"$schema", "$id", "title", "description", "type", "additionalProperties", "required"}
    | {"properties", "$defs"}
)


@cache
def _entry_wise_schema(name: str) -> bool:
    """Whether a `name` document is valid exactly when its rest (with an empty list) and each
    entry alone (in that rest) are: the list's schema is only `type: array` and `items`, and
    the top level has no keyword that looks into the list."""
    if name not in _LIST_SCHEMAS:
        return False
    schema = _schema(name)
    prop = schema.get("properties", {}).get(name, {})
    return (
        set(schema) <= _TOP_KEYWORDS
        and set(prop) <= {"type", "items", "description"}
        and prop.get("type") == "array"
    )


_NOT_KNOWN = object()


def _entry_wise(
    path: Path, raw: bytes, schema: str, managed: bool, known: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The validated document read entry by entry, taking the entries of `known` (by text), and
    the new text -> entry map; None when the whole-file path must decide (see `entries.py`).
    An invalid document raises the whole-file path's `ConfigError`, found entry by entry."""
    try:
        split = split_document(raw.decode("utf-8"), schema)
    except UnicodeDecodeError:
        return None
    rest = parse_rest(split) if split is not None else None
    if split is None or rest is None:
        return None
    missing: dict[tuple[str, ...], str] = {}
    rest = _dates_as_text(rest) if managed else _interpolate(rest, (), missing)
    if missing:
        return None
    entries, seen, new = [], {}, []
    try:
        for i, text in enumerate(split.items):
            entry = seen[text] = known.get(text, _NOT_KNOWN)
            if entry is _NOT_KNOWN:
                entry = seen[text] = _entry(split, text)
                new.append((i, entry))
            entries.append(entry)
    except ValueError:
        return None
    try:  # the rest, and the new entries (the known ones are valid)
        _fast_validator(schema)({**rest, schema: [entry for _, entry in new]})
    except fastjsonschema.JsonSchemaException:
        problems = _entry_problems(path, schema, rest, new)
        if problems:
            raise ConfigError(problems) from None
    rest[schema] = entries
    return rest, seen


def _entry_problems(
    path: Path, schema: str, rest: dict[str, Any], new: list[tuple[int, Any]]
) -> list[ConfigProblem]:
    """What `_validated` reports for the whole document, from jsonschema's errors for the rest
    (with an empty list) and for each new entry alone (its path given its index in the file),
    sorted by path as there."""
    validator = _validator(schema)
    found = [(list(e.absolute_path), e) for e in validator.iter_errors({**rest, schema: []})]
    for i, entry in new:
        for error in validator.iter_errors({**rest, schema: [entry]}):
            where = list(error.absolute_path)
            if where[:2] == [schema, 0]:  # the others are the rest's, found above
                found.append(([schema, i, *where[2:]], error))
    found.sort(key=lambda item: item[0])
    return [ConfigProblem(path, _json_path(where), _describe(e)) for where, e in found]


def _entry(split: Split, text: str) -> Any:
    """One entry parsed alone, as the whole-file path's walk leaves it (YAML dates as text)."""
    value = parse_entry(split, text)
    if split.json:
        return value  # split only when there is no `${`: the whole file is not walked either
    if "${" in repr(value):
        raise ValueError("interpolated: the whole file decides")
    return _dates_as_text(value)


_SECRET_FIELDS = frozenset({"master_key", "api_key"})


def _is_secret(path: Any) -> bool:
    parts = [str(p) for p in path]
    return bool(parts) and (parts[-1] in _SECRET_FIELDS or "headers" in parts[:-1])


def _describe(error: Any) -> str:
    if _is_secret(error.absolute_path):
        return f"invalid value (not shown: it is a secret): fails the {error.validator!r} rule"
    if error.validator == "additionalProperties":
        return str(error.message).replace("Additional properties are not allowed", "unknown field")
    if error.validator == "oneOf" and error.context:
        best = min(error.context, key=lambda e: len(list(e.relative_path)))
        return f"{error.message[:120]}: {best.message[:160]}"
    return str(error.message)
