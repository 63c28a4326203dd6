"""How the machine's idle CPUs wait, and the bench's optional latency tuning.

An idle CPU that halts must be woken (on a VM: an exit to the hypervisor, which schedules the
vCPU again) before it runs the process a packet woke; that wake-up is paid on every hop of a
request that finds its CPU idle, so at concurrency 1 it dominates the added latency of any proxy.
`describe` names the cpuidle driver and governor (and haltpoll's polling window) for the bench
header. `--tune-latency` holds `/dev/cpu_dma_latency` at 0 us for the run: the cpuidle governor
then keeps idle CPUs polling instead of halting, what tuned's `latency-performance` profile does
on latency-sensitive hosts. It needs root and is off by default; the header says which applied.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_CPUIDLE = Path("/sys/devices/system/cpu/cpuidle")
_HALTPOLL_NS = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
_DMA_LATENCY = "/dev/cpu_dma_latency"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def describe() -> str:
    """`cpuidle driver haltpoll, governor haltpoll, guest_halt_poll_ns 0` or what is known."""
    driver = _read(_CPUIDLE / "current_driver")
    if driver is None:
        return "cpuidle: unknown (no /sys cpuidle)"
    governor = _read(_CPUIDLE / "current_governor") or _read(_CPUIDLE / "current_governor_ro")
    text = f"cpuidle driver {driver}, governor {governor or '?'}"
    poll_ns = _read(_HALTPOLL_NS)
    return text if poll_ns is None else f"{text}, guest_halt_poll_ns {poll_ns}"


@contextmanager
def latency_held(enabled: bool) -> Iterator[str]:
    """While open, `/dev/cpu_dma_latency` holds 0 us (when `enabled` and permitted); yields the
    header's description of the idle state the run had."""
    if not enabled:
        yield "default (idle CPUs may halt)"
        return
    try:
        fd = os.open(_DMA_LATENCY, os.O_WRONLY)
    except OSError as exc:
        yield f"default: --tune-latency not applied ({exc.strerror or exc})"
        return
    try:
        os.write(fd, struct.pack("i", 0))
        yield "--tune-latency: /dev/cpu_dma_latency held at 0 us (idle CPUs poll, never halt)"
    finally:
        os.close(fd)
