"""wrk as the load generator: a Lua script per (body, headers), one pinned run per row.

wrk (C, one thread per core) costs far less CPU per request than any Python client, so it is the
generator whenever it is installed. The script posts a fixed body and, in `done()`, prints one
`BENCHJSON {...}` line with requests, duration, latency percentiles (µs) and error counts. wrk's own
CPU time is read from the rusage of the reaped child (`resource.RUSAGE_CHILDREN`), so a saturated
generator shows in the table.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.bench.procs import pinned

_SCRIPT = """
local f = assert(io.open(%(body)s, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%%d,"duration_us":%%d,"p50":%%d,"p99":%%d,"max":%%d,' ..
    '"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for our inputs


def write_script(directory: Path, name: str, body: bytes, headers: dict[str, str]) -> Path:
    body_path = directory / f"{name}.body"
    body_path.write_bytes(body)
    hdrs = {"Content-Type": "application/json", **headers}
    lines = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in hdrs.items())
    script = directory / f"{name}.lua"
    script.write_text(_SCRIPT % {"body": _lua_string(str(body_path)), "headers": lines})
    return script


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    error_detail: str
    cpu_seconds: float  # wrk's own user+sys CPU

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run(
    url: str,
    script: Path,
    *,
    concurrency: int,
    seconds: int,
    cpu: int | None,
    timeout_s: int = 10,
) -> WrkResult:
    """One blocking wrk run (call it from a thread when the event loop must keep going)."""
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", f"--timeout={timeout_s}s"]
    cmd += ["-s", str(script), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(pinned(cmd, cpu), capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = proc.stdout.decode(errors="replace")
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out[-500:]} {proc.stderr[-500:]!r}")
    data = json.loads(line.removeprefix("BENCHJSON "))
    kinds = ("connect", "read", "write", "status", "timeout")
    errors = sum(int(data[k]) for k in kinds)
    detail = ", ".join(f"{k} {data[k]}" for k in kinds if data[k])
    return WrkResult(
        requests=int(data["requests"]),
        seconds=int(data["duration_us"]) / 1e6,
        p50_ms=int(data["p50"]) / 1000.0,
        p99_ms=int(data["p99"]) / 1000.0,
        errors=errors,
        error_detail=detail,
        cpu_seconds=cpu_s,
    )
