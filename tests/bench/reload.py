"""Reload rows: SIGHUP -> new generation visible, and failed requests during a reload loop.

Runs against a routerd started with the big config (`config.write_big_config`, logging at info so
the daemon's own `config_reloaded` line is there). Three kinds of reload are timed: no file
changed (routerd re-reads only changed files), one key added to the 10,000-key YAML file, and
the same with the file in routerd's JSON form. A reload is timed twice: from the moment the
signal was sent to the first `/metrics` scrape showing the new `routerd_config_generation`
(polled every 5 ms, so an upper bound), and to the timestamp of the daemon's `config_reloaded`
log line for that generation (the daemon's own timing, same wall clock).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import time
from collections.abc import Callable
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


Edit = Callable[[], None]


def add_key_edit(keys_file: Path) -> Edit:
    """An edit that appends one more key to `keys_file` (YAML or routerd's JSON form), as an
    operator adding a key and sending SIGHUP does: the 10,000-key file must be read again."""
    counter = iter(range(10**9))

    def edit() -> None:
        n = next(counter)
        digest = hashlib.sha256(f"reload-key-{n}".encode()).hexdigest()
        text = keys_file.read_text()
        if text.rstrip().endswith("]}"):  # JSON: one entry per line
            entry = orjson.dumps({"id": f"reload-{n}", "hash": f"sha256:{digest}"}).decode()
            text = text.rstrip()[:-2].rstrip() + f",\n  {entry}\n]}}\n"
        else:
            text += f"  - id: reload-{n}\n    hash: sha256:{digest}\n"
        keys_file.write_text(text)

    return edit


def to_json_keys(keys_file: Path) -> None:
    """Rewrite a YAML keys file in routerd's JSON form (what its managed files use)."""
    import yaml

    from routerd.managed.store import dump_document

    doc = yaml.load(keys_file.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    keys_file.write_bytes(dump_document("keys", doc))


async def reload_once(
    session: aiohttp.ClientSession,
    pid: int,
    metrics_url: str,
    log: Path,
    limit: float = 300.0,
    edit: Edit | None = None,
) -> tuple[float, float | None]:
    """Send SIGHUP (after `edit`), wait for the next generation; (poll s, log s or None)."""
    gen = await generation(session, metrics_url)
    if edit is not None:
        edit()
    sent_wall, sent = time.time(), time.monotonic()
    os.kill(pid, signal.SIGHUP)
    while await generation(session, metrics_url) <= gen:
        if time.monotonic() - sent > limit:
            raise RuntimeError(f"no new generation {limit}s after SIGHUP")
        await asyncio.sleep(0.005)
    poll_s = time.monotonic() - sent
    logged = _log_time(log, gen + 1)
    return poll_s, (logged - sent_wall if logged is not None else None)


async def time_reloads(
    pid: int, metrics_url: str, log: Path, count: int, edit: Edit | None = None
) -> ReloadTiming:
    timing = ReloadTiming()
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            poll_s, log_s = await reload_once(session, pid, metrics_url, log, edit=edit)
            timing.poll_s.append(poll_s)
            if log_s is not None:
                timing.log_s.append(log_s)
    return timing


async def reload_loop(
    pid: int, metrics_url: str, log: Path, stop: asyncio.Event, edit: Edit | None = None
) -> int:
    """Reload back to back until `stop` is set (every other one after `edit`); returns how
    many reloads completed."""
    done = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            await reload_once(session, pid, metrics_url, log, edit=edit if done % 2 else None)
            done += 1
            await asyncio.sleep(0.05)
    return done
