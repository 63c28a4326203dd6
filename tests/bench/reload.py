"""Reload rows: SIGHUP -> new generation visible, and failed requests during a reload loop.

Runs against a routerd started with the big config (`config.write_big_config`, logging at info so
the daemon's own `config_reloaded` line is there). A reload is timed twice: from the moment the
signal was sent to the first `/metrics` scrape showing the new `routerd_config_generation`
(polled every 5 ms, so an upper bound), and to the timestamp of the daemon's `config_reloaded`
log line for that generation (the daemon's own timing, same wall clock).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson

_GEN = re.compile(rb"^routerd_config_generation\s+([0-9.e+]+)$", re.M)


@dataclass
class ReloadTiming:
    poll_s: list[float] = field(default_factory=list)
    log_s: list[float] = field(default_factory=list)


async def generation(session: aiohttp.ClientSession, metrics_url: str) -> int:
    async with session.get(metrics_url) as resp:
        match = _GEN.search(await resp.read())
    if match is None:
        raise RuntimeError("routerd_config_generation not found in /metrics")
    return int(float(match.group(1)))


def _log_time(log: Path, gen: int) -> float | None:
    """Wall-clock time of the `config_reloaded` line for generation `gen`, if logged."""
    for line in reversed(log.read_bytes().splitlines()):
        if b"config_reloaded" not in line:
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if event.get("event") == "config_reloaded" and event.get("generation") == gen:
            return datetime.fromisoformat(str(event["timestamp"])).timestamp()
    return None


async def reload_once(
    session: aiohttp.ClientSession, pid: int, metrics_url: str, log: Path, limit: float = 300.0
) -> tuple[float, float | None]:
    """Send SIGHUP, wait for the next generation; (poll seconds, log seconds or None)."""
    gen = await generation(session, metrics_url)
    sent_wall, sent = time.time(), time.monotonic()
    os.kill(pid, signal.SIGHUP)
    while await generation(session, metrics_url) <= gen:
        if time.monotonic() - sent > limit:
            raise RuntimeError(f"no new generation {limit}s after SIGHUP")
        await asyncio.sleep(0.005)
    poll_s = time.monotonic() - sent
    logged = _log_time(log, gen + 1)
    return poll_s, (logged - sent_wall if logged is not None else None)


async def time_reloads(pid: int, metrics_url: str, log: Path, count: int) -> ReloadTiming:
    timing = ReloadTiming()
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            poll_s, log_s = await reload_once(session, pid, metrics_url, log)
            timing.poll_s.append(poll_s)
            if log_s is not None:
                timing.log_s.append(log_s)
    return timing


async def reload_loop(pid: int, metrics_url: str, log: Path, stop: asyncio.Event) -> int:
    """Reload back to back until `stop` is set; returns how many reloads completed."""
    done = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            await reload_once(session, pid, metrics_url, log)
            done += 1
            await asyncio.sleep(0.05)
    return done
