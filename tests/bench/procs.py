"""Subprocesses of the benchmark: start (optionally pinned with taskset), wait ready, stop, RSS.

Every server under test (fake upstream, bare proxy, routerd) runs in its own session with its
output in a log file under the bench temp dir, so a crash shows its last lines.
"""

from __future__ import annotations

import asyncio
import platform
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    return cmd if cpu is None else ["taskset", "-c", str(cpu), *cmd]


def start(name: str, cmd: list[str], tmp: Path, cpu: int | None) -> Proc:
    log = tmp / f"{name}.log"
    with open(log, "wb") as fh:
        popen = subprocess.Popen(
            pinned(cmd, cpu), cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Proc(name, popen, log)


def stop(proc: Proc, grace: float = 5.0) -> int | None:
    if proc.popen.poll() is None:
        try:
            proc.popen.send_signal(signal.SIGTERM)
            proc.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(timeout=5)
        except ProcessLookupError:
            pass
    return proc.popen.returncode


async def wait_ready(proc: Proc, url: str, limit: float = 60.0) -> float:
    """Poll `url` until 200; returns the seconds it took. Raises if the process dies."""
    started = time.monotonic()
    deadline = started + limit
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while time.monotonic() < deadline:
            proc.check()
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.02)
    raise RuntimeError(f"{proc.name} not ready at {url} after {limit}s:\n{proc.tail()}")


def rss_mb(pid: int) -> float | None:
    """VmRSS of a process in MB (10^6 bytes), from /proc/PID/status."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None
    return None
