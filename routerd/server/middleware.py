"""The one middleware: request id in/out and the error envelope of the caller's format.

Every exception is rendered here: a `RouterdError` in the ingress's envelope with its status, an
aiohttp HTTP exception (unknown path, wrong method) likewise, anything else as internal_error
with the traceback only in the server log. No traceback ever reaches a client.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import orjson
import structlog
from aiohttp import web

from routerd.errors import (
    ErrorCode,
    RouterdError,
    anthropic_envelope,
    management_envelope,
    openai_envelope,
)

log = structlog.get_logger("routerd")
REQUEST_ID = web.RequestKey("request_id", str)
_HTTP_CODES = {
    401: ErrorCode.invalid_api_key,
    404: ErrorCode.invalid_request,
    405: ErrorCode.invalid_request,
    413: ErrorCode.payload_too_large,
}

MANAGEMENT_PATHS = ("/v1/keys", "/v1/users", "/v1/budgets", "/v1/pricing")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    if 0 < len(given) <= 128 and given.isprintable():
        return given
    return f"req_{os.urandom(16).hex()}"  # 128 random bits, as uuid4().hex but cheaper


def error_response(request: web.Request, err: RouterdError, request_id: str) -> web.Response:
    if request.path.startswith("/v1/messages"):
        body = anthropic_envelope(err, request_id)
    elif request.path.startswith(MANAGEMENT_PATHS):
        body = management_envelope(err, request_id)
    else:
        body = openai_envelope(err, request_id)
    headers = {"X-Request-Id": request_id, **err.headers}
    return web.Response(
        status=err.status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _from_http(exc: web.HTTPException) -> RouterdError:
    code = _HTTP_CODES.get(exc.status, ErrorCode.invalid_request)
    if exc.status == 404:
        return RouterdError(code, "no such endpoint")
    if exc.status == 413:
        return RouterdError(code, "request body is larger than the configured max_body_bytes")
    return RouterdError(code, exc.reason)


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except RouterdError as err:
        return error_response(request, err, request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(request, _from_http(exc), request_id)
        response.set_status(exc.status)
        return response
    except Exception:
        log.exception("unhandled_error", request_id=request_id, path=request.path)
        internal = RouterdError(ErrorCode.internal_error, "internal error; see the server log")
        return error_response(request, internal, request_id)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response
