"""The route table: (method, path) -> handler, built once when the app is built.

Exact paths are one dict lookup; the few paths with parameters (`/v1/keys/{key_id}`,
`/v1/models/{model_id:.+}`) are regular expressions tried in the order they were added. A GET
route also answers HEAD. A path that exists under other methods is a 405 with `Allow`, an
unknown path a 404, both as `RouterdError`s the dispatcher renders in the caller's format.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from routerd.errors import ErrorCode, RouterdError
from routerd.server.http import Answer, Request

Handler = Callable[[Request], Awaitable[Answer]]
_PARAM = re.compile(r"\{(\w+)(?::([^{}]+))?\}")


class RouteMiss(RouterdError):
    """No route: 404 for an unknown path, 405 for a known path under another method."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(ErrorCode.invalid_request, message, headers=headers)
        self.http_status = status


def _compile(pattern: str) -> re.Pattern[str]:
    out, pos = [], 0
    for match in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos : match.start()]))
        out.append(f"(?P<{match[1]}>{match[2] or '[^/]+'})")
        pos = match.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out) + r"\Z")


class Routes:
    """Handlers by method and path; `resolve` is the only call on the request path."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Handler]] = {}
        self._patterns: list[tuple[re.Pattern[str], dict[str, Handler]]] = []
        self._by_pattern: dict[str, dict[str, Handler]] = {}

    def add(self, method: str, path: str, handler: Handler) -> None:
        if "{" not in path:
            methods = self._exact.setdefault(path, {})
        elif path in self._by_pattern:
            methods = self._by_pattern[path]
        else:
            methods = self._by_pattern[path] = {}
            self._patterns.append((_compile(path), methods))
        methods[method] = handler
        if method == "GET":
            methods.setdefault("HEAD", handler)

    def get(self, path: str, handler: Handler) -> None:
        self.add("GET", path, handler)

    def post(self, path: str, handler: Handler) -> None:
        self.add("POST", path, handler)

    def patch(self, path: str, handler: Handler) -> None:
        self.add("PATCH", path, handler)

    def delete(self, path: str, handler: Handler) -> None:
        self.add("DELETE", path, handler)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and path parameters; raises `RouteMiss` (404 or 405)."""
        methods = self._exact.get(path)
        params: dict[str, str] = {}
        if methods is None:
            for pattern, candidates in self._patterns:
                match = pattern.match(path)
                if match is not None:
                    methods, params = candidates, match.groupdict()
                    break
            else:
                raise RouteMiss(404, "no such endpoint")
        handler = methods.get(method)
        if handler is None:
            allow = ", ".join(sorted(methods))
            raise RouteMiss(405, "Method Not Allowed", {"Allow": allow})
        return handler, params
