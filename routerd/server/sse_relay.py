"""Byte-level SSE helpers for passthrough streams: frame splitting, frame checks, the chat
usage filter.

Passthrough frames keep their bytes, but each one's `data:` is parsed once (orjson, ~1 µs): a
frame that is not JSON ends the client's stream with an error event, as on the translated path,
instead of reaching the client's SDK. A frame that mentions `"usage"` also gives the usage, and
the usage-only chunk routerd asked for on the client's behalf is dropped.

Per upstream read, `CheckedFrames.relay` checks the read's whole frames and relays them as slices
of the read's bytes, with no per-frame list, tuple or join: only a frame that mentions `"usage"`
(the last of a stream) is looked at, and only when it is dropped is the read cut around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import orjson

from routerd.errors import ErrorCode
from routerd.formats.codecs import sse_json
from routerd.metering.usage import Usage
from routerd.providers.base import UpstreamError
from routerd.server.context import RequestContext

FrameData = dict[str, Any] | None  # a frame's JSON object (None: `[DONE]`, a comment, ...)


class FrameSplitter:
    """Split a byte stream into SSE frames (blank-line separated, LF or CRLF)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            yield buffer[start : end + 2]
            start = end + 2
        self._buffer = buffer[start:]

    def frames(self, chunk: bytes) -> Sequence[bytes]:
        """`feed` as a sequence; a read that is exactly one whole frame (the usual paced read)
        is returned as it is, without a generator."""
        whole = not self._buffer and chunk.find(b"\n\n") == len(chunk) - 2 >= 0
        if whole and b"\r" not in chunk:
            return (chunk,)
        return list(self.feed(chunk))

    def finish(self) -> bytes:
        """At the end of the body: the last frame when the upstream only left out its closing
        blank line, b"" when nothing is left; raises when the body ended inside an event."""
        rest, self._buffer = self._buffer.strip(), b""
        if not rest:
            return b""
        try:
            if rest.startswith(b"data:") and (
                rest[5:].strip() == b"[DONE]" or isinstance(orjson.loads(rest[5:]), dict)
            ):
                return rest + b"\n\n"
        except orjson.JSONDecodeError:
            pass
        raise UpstreamError(
            ErrorCode.provider_unavailable,
            "the upstream stream was cut off in the middle of an event",
        )


def _malformed_frame() -> UpstreamError:
    return UpstreamError(
        ErrorCode.provider_unavailable, "the upstream sent a malformed stream frame"
    )


def frame_json(frame: bytes) -> dict[str, Any] | None:
    """The JSON object of one complete SSE frame; None for `[DONE]`, comments and non-objects.

    Raises the provider_unavailable `UpstreamError` when the frame's data is not JSON.
    """
    if frame.startswith(b"data: ") and frame.count(b"\n") == 2:  # the usual one-line frame
        payload = frame[6:].strip()
        if payload == b"[DONE]":
            return None
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise _malformed_frame() from None
        return data if isinstance(data, dict) else None
    try:
        return sse_json(frame)
    except orjson.JSONDecodeError:
        raise _malformed_frame() from None


def _check(frame: bytes) -> None:
    """`frame_json`'s check without its result: the usual one-line object frame is parsed
    (orjson skips the trailing blank line) and nothing else is done with it."""
    if frame.startswith(b"data: {") and frame.count(b"\n") == 2:
        try:
            orjson.loads(frame[6:])
        except orjson.JSONDecodeError:
            raise _malformed_frame() from None
        return
    frame_json(frame)


class CheckedFrames:
    """Frames of a passthrough stream, each checked: the good ones before a bad frame are still
    relayed, and the error is raised on the next call (the relay then ends the stream)."""

    def __init__(self) -> None:
        self._splitter = FrameSplitter()
        self._error: UpstreamError | None = None

    def feed(self, chunk: bytes) -> list[tuple[bytes, dict[str, Any] | None]]:
        if self._error is not None:
            raise self._error
        return self._checked(self._splitter.feed(chunk))

    def relay(self, chunk: bytes, marker: bytes, keep: Callable[[FrameData], bool]) -> bytes:
        """The whole frames completed by `chunk`, each checked, as bytes: a frame that mentions
        `marker` is parsed and relayed only when `keep(its data)` says so; the others (every
        frame of a stream but its usage one) as they came, in one slice per run of frames. A
        bad frame is handled as in `feed`."""
        if self._error is not None:
            raise self._error
        splitter = self._splitter
        buffer = splitter._buffer + chunk if splitter._buffer else chunk
        if b"\r" in buffer:  # CRLF line ends: the splitter normalizes them
            return b"".join(f for f, data in self.feed(chunk) if marker not in f or keep(data))
        cut = buffer.rfind(b"\n\n") + 2
        if cut < 2:
            splitter._buffer = buffer
            return b""
        splitter._buffer = buffer[cut:]
        if marker not in buffer:  # the usual read: only checks, no dropped frame
            return self._checked_run(buffer, cut)
        out = []
        start = run = 0  # `run`: where the frames relayed since the last dropped one start
        while start < cut:
            end = buffer.find(b"\n\n", start) + 2
            frame = buffer[start:end]
            try:
                if marker not in frame:
                    _check(frame)
                elif not keep(frame_json(frame)):
                    out.append(buffer[run:start])
                    run = end
            except UpstreamError as err:
                self._error = err
                if not start:
                    raise
                cut = start
                break
            start = end
        out.append(buffer[run:cut])
        return out[0] if len(out) == 1 else b"".join(out)

    def _checked_run(self, buffer: bytes, cut: int) -> bytes:
        """`buffer[:cut]`, whole frames, each checked (up to a bad one, as in `feed`)."""
        start = 0
        while start < cut:
            end = buffer.find(b"\n\n", start) + 2
            try:
                _check(buffer[start:end])
            except UpstreamError as err:
                self._error = err
                if not start:
                    raise
                return buffer[:start]
            start = end
        return buffer if cut == len(buffer) else buffer[:cut]

    def finish(self) -> list[tuple[bytes, dict[str, Any] | None]]:
        if self._error is not None:
            raise self._error
        last = self._splitter.finish()
        return self._checked([last] if last else [])

    def _checked(self, frames: Iterable[bytes]) -> list[tuple[bytes, dict[str, Any] | None]]:
        out = []
        for frame in frames:
            try:
                out.append((frame, frame_json(frame)))
            except UpstreamError as err:
                self._error = err
                if not out:
                    raise
                break
        return out


class ChatUsageFilter:
    """OpenAI chat passthrough: record usage; drop the usage chunk the client did not ask for."""

    def __init__(self, ctx: RequestContext, client_wants_usage: bool) -> None:
        self._ctx = ctx
        self._keep_usage_chunk = client_wants_usage
        self._frames = CheckedFrames()

    def _keep(self, data: dict[str, Any] | None) -> bool:
        usage = None if data is None else data.get("usage")
        if data is None or not usage:
            return True
        self._ctx.usage = Usage.from_openai(usage)
        return self._keep_usage_chunk or bool(data.get("choices"))

    def feed(self, chunk: bytes) -> bytes:
        return self._frames.relay(chunk, b'"usage"', self._keep)

    def finish(self) -> bytes:
        return b"".join(f for f, data in self._frames.finish() if self._keep(data))
