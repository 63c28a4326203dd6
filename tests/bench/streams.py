"""Paced streams: how many concurrent streams one core relays without dropping or delaying frames.

The fake upstream's paced mode (`upstream.py`) writes 20 chunks 5 ms apart and stamps each content
chunk with its monotonic write time (`T<ns>`). This client is a minimal HTTP/1.1 keep-alive
client on raw asyncio protocols (far cheaper than aiohttp per frame), so the generator core can
follow thousands of frames per second. For every stamped frame it compares the gap it saw since
the previous frame with the gap the upstream sent (`jitter`), and counts frames that never came.

A trial of N streams passes when nothing failed, no frame was lost and the p99 of |jitter| is
within `max_jitter_ms` (1 ms). `ladder` runs N = 8, 16, 32 ... and `capacity` is the largest N
that passes. On small VMs an idle vCPU wakes up late (ms), so even the bare proxy may fail the
absolute 1 ms criterion at small N: `relative_capacity` is the largest N where a target stays
within 1 ms of the bare proxy's own jitter at the same N.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_STAMP = re.compile(rb"T(\d{6,}) ")
_END = b"0\r\n\r\n"


@dataclass
class Trial:
    streams: int
    completed: int = 0
    failed: int = 0
    lost_frames: int = 0
    jitter_ms: list[float] = field(default_factory=list)
    first_error: str | None = None

    def jitter_p99(self) -> float:
        if not self.jitter_ms:
            return float("nan")
        data = sorted(self.jitter_ms)
        return data[min(len(data) - 1, int(0.99 * len(data)))]

    def passed(self, max_jitter_ms: float) -> bool:
        ok = self.completed > 0 and not self.failed and not self.lost_frames
        return ok and self.jitter_p99() <= max_jitter_ms


class _Conn(asyncio.Protocol):
    """One keep-alive connection; `request()` sends a stream request and awaits its end."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.stamps: list[tuple[int, int]] = []  # (sent ns, received ns)
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.Transport):
            self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.stamps.extend((int(m.group(1)), now) for m in _STAMP.finditer(data))
        self.buf += data
        if self.done is not None and not self.done.done() and self._complete():
            self.done.set_result(None)

    def _complete(self) -> bool:
        if self.buf.startswith(b"HTTP/1.1 200"):
            return self.buf.endswith(_END)
        head, sep, body = bytes(self.buf).partition(b"\r\n\r\n")
        match = re.search(rb"(?i)content-length:\s*(\d+)", head)
        return bool(sep) and (match is None or len(body) >= int(match.group(1)))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionError("connection closed"))

    async def request(self, raw: bytes) -> tuple[bytes, list[tuple[int, int]]]:
        assert self.transport is not None
        self.buf.clear()
        self.stamps = []
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        await asyncio.wait_for(self.done, 30)
        return bytes(self.buf), self.stamps


def _raw_request(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {host}:{port}"]
    head += [f"{k}: {v}" for k, v in {"Content-Type": "application/json", **headers}.items()]
    head += [f"Content-Length: {len(body)}", "", ""]
    return host, port, "\r\n".join(head).encode() + body


def _account(trial: Trial, raw: bytes, stamps: list[tuple[int, int]], expected: int) -> None:
    if not raw.startswith(b"HTTP/1.1 200") or b"data: [DONE]" not in raw:
        trial.failed += 1
        if trial.first_error is None:
            trial.first_error = raw[:200].decode(errors="replace")
        return
    trial.completed += 1
    trial.lost_frames += max(0, expected - len(stamps))
    for (s0, r0), (s1, r1) in itertools.pairwise(stamps):
        trial.jitter_ms.append(abs((r1 - r0) - (s1 - s0)) / 1e6)


async def trial(
    url: str, body: bytes, headers: dict[str, str], streams: int, seconds: float, chunks: int
) -> Trial:
    """N connections, each streaming back to back for `seconds` (after one unmeasured stream)."""
    host, port, raw = _raw_request(url, body, headers)
    result = Trial(streams)
    loop = asyncio.get_running_loop()
    expected = chunks - 1  # every chunk but the final (empty, finish_reason) one is stamped

    async def worker(deadline: float) -> None:
        try:
            transport, conn = await loop.create_connection(_Conn, host, port)
            conn.transport = transport
        except OSError as exc:
            result.failed += 1
            result.first_error = result.first_error or f"connect: {exc}"
            return
        try:
            await conn.request(raw)  # warm: not measured
            while time.monotonic() < deadline:
                got, stamps = await conn.request(raw)
                _account(result, got, stamps, expected)
        except (OSError, TimeoutError) as exc:
            result.failed += 1
            result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
        finally:
            transport.close()

    deadline = time.monotonic() + seconds + 1.0
    await asyncio.gather(*(worker(deadline) for _ in range(streams)))
    return result


LADDER = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


async def ladder(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    seconds: float,
    chunks: int,
    limit: int = 4096,
    give_up_ms: float = 50.0,
) -> list[Trial]:
    """Trials at N = 8, 16, 32 ... `limit`; stops after a trial that lost or failed streams or
    whose jitter p99 passed `give_up_ms` (the relay has collapsed; bigger N says nothing new)."""
    tried: list[Trial] = []
    for n in (n for n in LADDER if n <= limit):
        t = await trial(url, body, headers, n, seconds, chunks)
        tried.append(t)
        if t.failed or t.lost_frames or not t.jitter_p99() <= give_up_ms:
            break
    return tried


def capacity(tried: list[Trial], max_jitter_ms: float = 1.0) -> int:
    """The largest N of consecutive passing ladder steps (0 when the first step fails)."""
    best = 0
    for t in tried:
        if not t.passed(max_jitter_ms):
            break
        best = t.streams
    return best


def relative_capacity(tried: list[Trial], base: list[Trial], slack_ms: float = 1.0) -> int:
    """The largest N (consecutive steps) with nothing lost or failed and a jitter p99 within
    `slack_ms` of `base` (the bare proxy) at the same N."""
    ref = {t.streams: t.jitter_p99() for t in base if not t.failed and not t.lost_frames}
    best = 0
    for t in tried:
        if t.streams not in ref or t.failed or t.lost_frames or t.completed == 0:
            break
        if not t.jitter_p99() <= ref[t.streams] + slack_ms:
            break
        best = t.streams
    return best
