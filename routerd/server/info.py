"""Read-only and operational routes: models, health, readiness, metrics, admin reload."""

from __future__ import annotations

import hashlib
import hmac

from routerd.errors import ErrorCode, RouterdError
from routerd.metering.generations import generation_body
from routerd.server.auth import authenticate, presented_token
from routerd.server.http import Reply, Request, json_reply
from routerd.server.pipeline import GATEWAY


async def list_models(request: Request) -> Reply:
    table = request.app[GATEWAY].table
    key = authenticate(request, table)
    data = [
        route.public
        for route in table.models.values()
        if route.id in key.allowed_models and not route.unavailable_reason
    ]
    return json_reply({"object": "list", "data": data})


async def get_model(request: Request) -> Reply:
    table = request.app[GATEWAY].table
    key = authenticate(request, table)
    name = request.match_info["model_id"]
    route = table.resolve(name)
    if route is None or route.id not in key.allowed_models:
        raise RouterdError(ErrorCode.model_not_found, f"model {name!r} does not exist")
    return json_reply(route.public)


async def generation(request: Request) -> Reply:
    """OpenRouter-style metadata of a recent request made with the calling key."""
    gateway = request.app[GATEWAY]
    key = authenticate(request, gateway.table)
    request_id = request.query.get("id", "")
    if not request_id:
        raise RouterdError(ErrorCode.invalid_request, "'id' is required", param="id")
    record = gateway.generations.get(request_id, key.config.id)
    if record is None:
        raise RouterdError(
            ErrorCode.not_found,
            f"no recent request {request_id!r} for this key (kept for an hour, newest 10,000)",
            param="id",
        )
    return json_reply({"data": generation_body(record)})


async def healthz(request: Request) -> Reply:
    return json_reply({"status": "ok"})


async def readyz(request: Request) -> Reply:
    gateway = request.app[GATEWAY]
    if gateway.draining:
        return json_reply({"status": "draining"}, status=503)
    if not gateway.ready:
        return json_reply({"status": "starting"}, status=503)
    return json_reply({"status": "ready", "config_generation": gateway.table.generation})


async def metrics(request: Request) -> Reply:
    gateway = request.app[GATEWAY]
    for rule in gateway.table.budgets.values():
        status = await gateway.ledger.status(rule)
        gateway.metrics.budget_spent(rule.id, status.spent)
    body, content_type = gateway.metrics.render()
    return Reply(body, 200, {"Content-Type": content_type})


async def health_providers(request: Request) -> Reply:
    """Per deployment of the current table: breaker state, latency, error rate, in-flight."""
    gateway = request.app[GATEWAY]
    deployments: dict[tuple[str, str, str], dict[str, object]] = {}
    for route in gateway.table.models.values():
        for dep in route.deployments:
            entry = deployments.get(dep.key)
            if entry is None:
                entry = deployments[dep.key] = {
                    "deployment": dep.label,
                    "provider": dep.provider.config.name,
                    "upstream_model": dep.deployment.model,
                    "models": [],
                    **gateway.health.snapshot(dep.key, dep.provider.config.breaker),
                }
            models = entry["models"]
            assert isinstance(models, list)
            models.append(route.id)
    return json_reply({"deployments": list(deployments.values())})


def require_master_key(request: Request) -> None:
    expected = request.app[GATEWAY].table.config.daemon.master_key_sha256
    if expected is None:
        raise RouterdError(
            ErrorCode.invalid_request, "the admin API is off: set master_key in routerd.yaml"
        )
    token = presented_token(request) or ""
    digest = hashlib.sha256(token.encode()).hexdigest()
    if not hmac.compare_digest(digest, expected):
        raise RouterdError(ErrorCode.invalid_api_key, "invalid master key")


async def admin_reload(request: Request) -> Reply:
    require_master_key(request)
    ok, message = await request.app[GATEWAY].reload()
    if not ok:
        return json_reply({"reloaded": False, "error": message}, status=422)
    return json_reply(
        {"reloaded": True, "config_generation": request.app[GATEWAY].table.generation}
    )
