"""Plumbing shared by the management API handlers (`admin_keys.py`, `admin_users.py`).

Owns: JSON bodies checked against a JSON Schema (422 `validation_error` whose `detail` is a
FastAPI-style list of `{loc, msg, type}`, as any-llm-gateway answers), `skip`/`limit` paging,
running one change through the managed store inside `Gateway.change` (so the next request sees
it), and mapping a rejected change to 422 (the request's own entry is invalid) or 409 (the change
breaks another entry, e.g. deleting a budget a key still names). Never logs a body.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import structlog

from routerd.config.load import ConfigProblem
from routerd.config.model import LoadedConfig, ManagedKind
from routerd.errors import ErrorCode, RouterdError
from routerd.managed.store import ChangeRejected, Docs, Focus, ManagedStore
from routerd.server.gateway import Gateway, TableBuilder
from routerd.server.http import Request
from routerd.server.pipeline import GATEWAY
from routerd.table import RoutingTable

log = structlog.get_logger("routerd.admin")
T = TypeVar("T")
MAX_LIMIT = 1000

# File field -> request field, so a problem in the request's own entry names the body field.
API_FIELDS: dict[ManagedKind, dict[str, str]] = {
    "keys": {"name": "key_name", "user": "user_id", "disabled": "is_active"},
    "users": {"id": "user_id"},
    "budgets": {"id": "budget_id", "limit_usd": "max_budget", "period": "budget_duration_sec"},
    "pricing": {
        "model": "model_key",
        "prompt": "input_price_per_million",
        "completion": "output_price_per_million",
    },
}
NULLABLE_STRING = {"type": ["string", "null"]}
ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator


class BodySchema:
    """A request body's JSON Schema, compiled by jsonschema when a body is first checked against
    it: the daemon does not import jsonschema (~3 MB of memory) until the admin API is used."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._validator: Draft202012Validator | None = None

    @property
    def validator(self) -> Draft202012Validator:
        if self._validator is None:
            from jsonschema import Draft202012Validator

            Draft202012Validator.check_schema(self.schema)
            self._validator = Draft202012Validator(self.schema)
        return self._validator


def schema_validator(schema: dict[str, Any]) -> BodySchema:
    return BodySchema(schema)


def invalid(detail: list[dict[str, Any]]) -> RouterdError:
    first = detail[0]
    where = ".".join(str(p) for p in first["loc"][1:]) or str(first["loc"][0])
    return RouterdError(
        ErrorCode.validation_error,
        f"{where}: {first['msg']}",
        param=where,
        details={"detail": detail},
    )


def _schema_detail(error: Any) -> list[dict[str, Any]]:
    loc = ["body", *error.absolute_path]
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - allowed)
        return [
            {"loc": [*loc, name], "msg": "unknown field", "type": "extra_forbidden"}
            for name in extra
        ]
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return [
            {"loc": [*loc, name], "msg": "field required", "type": "missing"} for name in missing
        ]
    return [{"loc": loc, "msg": str(error.message)[:300], "type": str(error.validator)}]


async def json_body(request: Request, schema: BodySchema) -> dict[str, Any]:
    """The request's JSON object, valid against `validator`'s schema; 422 otherwise."""
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise invalid(
            [{"loc": ["body"], "msg": "not valid JSON", "type": "json_invalid"}]
        ) from None
    errors = sorted(schema.validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise invalid([d for e in errors for d in _schema_detail(e)])
    result: dict[str, Any] = data
    return result


def page(request: Request) -> tuple[int, int]:
    """`skip` (>= 0, default 0) and `limit` (1..1000, default 100) from the query string."""
    values = {}
    for name, default, low in (("skip", 0, 0), ("limit", 100, 1)):
        text = request.query.get(name)
        try:
            value = default if text is None else int(text)
        except ValueError:
            value = -1
        if value < low or (name == "limit" and value > MAX_LIMIT):
            bound = f"an integer >= {low}" + (f" and <= {MAX_LIMIT}" if name == "limit" else "")
            raise invalid(
                [{"loc": ["query", name], "msg": f"must be {bound}", "type": "value_error"}]
            )
        values[name] = value
    return values["skip"], values["limit"]


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def source_fields(source: Path | None, config: LoadedConfig, kind: ManagedKind) -> dict[str, Any]:
    """`source`: "managed" (written by routerd) or "file" (a human file: read-only here)."""
    managed = config.daemon.managed_file(kind)
    return {
        "source": "managed" if source is not None and source == managed else "file",
        "source_file": str(source) if source is not None else None,
    }


def _problem_detail(
    problem: ConfigProblem, focus: Focus | None, store: ManagedStore
) -> dict[str, Any]:
    if focus is not None and problem.file == store.path(focus.kind):
        parts = problem.path.split(".")
        if len(parts) >= 3 and parts[0] == focus.kind and parts[1] == str(focus.index):
            field = API_FIELDS[focus.kind].get(parts[2], parts[2])
            return {"loc": ["body", field], "msg": problem.message, "type": "value_error"}
    loc = [str(problem.file), *(problem.path.split(".") if problem.path else [])]
    return {"loc": loc, "msg": problem.message, "type": "config_error"}


def rejected(exc: ChangeRejected, store: ManagedStore) -> RouterdError:
    detail = [_problem_detail(p, exc.focus, store) for p in exc.problems]
    if any(d["loc"][0] == "body" for d in detail):
        return invalid(sorted(detail, key=lambda d: d["loc"][0] != "body"))
    return RouterdError(
        ErrorCode.conflict,
        "the change would make the configuration invalid: " + "; ".join(map(str, exc.problems)),
        details={"detail": detail},
    )


async def commit(request: Request, mutate: Callable[[Docs, LoadedConfig], T]) -> T:
    """Apply one change to the managed files and swap in the resulting table."""
    gateway: Gateway = request.app[GATEWAY]
    store = ManagedStore.of(gateway.table.config.daemon, gateway.documents)
    if store is None:
        raise RouterdError(
            ErrorCode.invalid_request,
            "state_dir is not set in routerd.yaml: the management API can read but not write",
        )

    def run(build: TableBuilder) -> tuple[RoutingTable, T]:
        return store.commit(lambda docs: mutate(docs, gateway.table.config), build)

    try:
        result = await gateway.change(run)
    except ChangeRejected as exc:
        raise rejected(exc, store) from None
    log.info("admin_change", method=request.method, path=request.path)
    return result
