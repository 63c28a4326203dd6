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
_IDS_PER_READ = 256  # request ids made from one read of the OS's random source


class RequestIds:
    """`req_` and 128 random bits (as uuid4().hex), unless the client sent its own id.

    The random bits come from `os.urandom`, as uuid4's do, but read for many ids at once: one
    system call per `_IDS_PER_READ` requests instead of one per request."""

    __slots__ = ("_fresh",)

    def __init__(self) -> None:
        self._fresh: list[str] = []

    def __call__(self, request: Request) -> str:
        given = request.headers.get("X-Request-Id", "")
        if 0 < len(given) <= 128 and given.isprintable():
            return given
        fresh = self._fresh
        if not fresh:
            hexed = os.urandom(16 * _IDS_PER_READ).hex()
            fresh += [f"req_{hexed[i : i + 32]}" for i in range(0, len(hexed), 32)]
        return fresh.pop()


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
        self._request_id = RequestIds()

    async def __call__(self, request: Request) -> Answer:
        request.request_id = request_id = self._request_id(request)
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
