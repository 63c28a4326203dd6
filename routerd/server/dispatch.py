"""The dispatcher: request id in/out, the route, and the error envelope of the caller's format.

Every engine calls `Dispatcher.__call__` once per request. Every exception is rendered here: a
`RouterdError` in the ingress's envelope with its status, a missing route as 404/405 likewise,
anything else as internal_error with the traceback only in the server log. No traceback ever
reaches a client.
"""

from __future__ import annotations

import os

import orjson
import structlog

from routerd.errors import (
    ErrorCode,
    RouterdError,
    anthropic_envelope,
    management_envelope,
    openai_envelope,
)
from routerd.server.http import JSON_HEADERS, Answer, Reply, Request
from routerd.server.routes import RouteMiss, Routes

log = structlog.get_logger("routerd")
MANAGEMENT_PATHS = ("/v1/keys", "/v1/users", "/v1/budgets", "/v1/pricing")


def _request_id(request: Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    if 0 < len(given) <= 128 and given.isprintable():
        return given
    return f"req_{os.urandom(16).hex()}"  # 128 random bits, as uuid4().hex but cheaper


def error_reply(request: Request, err: RouterdError, status: int | None = None) -> Reply:
    """`err` in the envelope of the API the request was made to."""
    request_id = request.request_id
    if request.path.startswith("/v1/messages"):
        body = anthropic_envelope(err, request_id)
    elif request.path.startswith(MANAGEMENT_PATHS):
        body = management_envelope(err, request_id)
    else:
        body = openai_envelope(err, request_id)
    headers = {**JSON_HEADERS, "X-Request-Id": request_id, **err.headers}
    return Reply(orjson.dumps(body), status or err.status, headers)


class Dispatcher:
    """Routes one request to its handler and renders whatever it raises."""

    def __init__(self, routes: Routes) -> None:
        self._resolve = routes.resolve

    async def __call__(self, request: Request) -> Answer:
        request.request_id = request_id = _request_id(request)
        try:
            handler, request.match_info = self._resolve(request.method, request.path)
            answer = await handler(request)
        except RouteMiss as miss:
            return error_reply(request, miss, miss.http_status)
        except RouterdError as err:
            return error_reply(request, err)
        except Exception:
            log.exception("unhandled_error", request_id=request_id, path=request.path)
            internal = RouterdError(ErrorCode.internal_error, "internal error; see the server log")
            return error_reply(request, internal)
        if type(answer) is Reply:
            answer.headers.setdefault("X-Request-Id", request_id)
        return answer
