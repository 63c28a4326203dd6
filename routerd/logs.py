"""structlog setup: one cheap processor chain, JSON (orjson) or console output, to stderr.

`configure_logging` may be called again (on reload); it replaces the structlog configuration and
its own stdlib handler rather than stacking new ones. Loggers are cached on first use, so a level
change reaches loggers obtained (and used) before the call only for new `get_logger()` results.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog
from structlog.typing import Processor

__all__ = ["LEVELS", "configure_logging"]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_STDLIB_HANDLER_MARK = "_routerd_handler"


def _orjson_dumps(obj: Any, **kwargs: Any) -> bytes:
    """`orjson.dumps` that ignores keywords meant for `json.dumps` (structlog passes `default`)."""
    return orjson.dumps(obj, default=kwargs.get("default"))


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog (and stdlib logging at warning+) to write to stderr.

    `level` is one of `LEVELS`; `fmt` is "json" (one orjson line per event) or "console".
    """
    try:
        min_level = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; expected one of {sorted(LEVELS)}") from None

    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    logger_factory: Any
    if fmt == "json":
        processors.append(structlog.processors.format_exc_info)
        processors.append(structlog.processors.JSONRenderer(serializer=_orjson_dumps))
        buffer = getattr(sys.stderr, "buffer", None)
        if buffer is not None:
            logger_factory = structlog.BytesLoggerFactory(file=buffer)
        else:  # stderr replaced by a text-only stream (some test harnesses)
            processors.append(_decode)
            logger_factory = structlog.PrintLoggerFactory(file=sys.stderr)
    elif fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
        logger_factory = structlog.PrintLoggerFactory(file=sys.stderr)
    else:
        raise ValueError(f"unknown log format {fmt!r}; expected 'json' or 'console'")

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    _configure_stdlib()


def _decode(_logger: Any, _name: str, event: Any) -> str:
    """Turn the rendered JSON bytes into text for a text-only stream."""
    return event.decode() if isinstance(event, bytes) else str(event)


def _configure_stdlib() -> None:
    """Route stdlib logging (e.g. `aiohttp.server` errors) at warning+ to stderr, once."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _STDLIB_HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _STDLIB_HANDLER_MARK, True)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
