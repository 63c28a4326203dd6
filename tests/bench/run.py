"""`python -m tests.bench` (`make bench`): routerd vs a bare aiohttp proxy vs direct, one run.

Starts, each in its own subprocess on a free loopback port: a zero-latency fake OpenAI upstream
(`upstream.py`), the bare reference proxy (`bare_proxy.py`) and routerd with a temporary config
(journal in a temp dir, logging at warning, metrics on). With `taskset` and >= 2 CPUs, routerd and
the bare proxy are pinned to one CPU and the load generator and upstream to another. Runs are
interleaved (direct, bare, routerd; repeated per round) and the table shows medians over rounds.

A benchmark, never a test: nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from tests.bench.loadgen import RowResult, run_row

REPO = Path(__file__).resolve().parents[2]
MODEL = "bench/gpt-bench"
API_KEY = "sk-rd-bench-0123456789abcdef0123456789"
TARGETS = ("direct", "bare", "routerd")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


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


def write_config(tmp: Path, upstream_port: int, listen_port: int) -> Path:
    key_hash = hashlib.sha256(API_KEY.encode()).hexdigest()
    (tmp / "providers.yaml").write_text(
        "providers:\n"
        "  fake:\n"
        "    type: openai\n"
        f"    base_url: http://127.0.0.1:{upstream_port}/v1\n"
        "    api_key: x\n"
        "models:\n"
        f"  {MODEL}:\n"
        "    pricing: {prompt: 0.4, completion: 1.6}\n"
        "    deployments: [{provider: fake, model: gpt-bench}]\n"
    )
    (tmp / "keys.yaml").write_text(
        f'keys:\n  - id: bench\n    hash: "sha256:{key_hash}"\n    models: ["*"]\n'
    )
    config = tmp / "routerd.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{listen_port}\n"
        "providers: providers.yaml\n"
        "keys: keys.yaml\n"
        "journal:\n"
        f"  dir: {tmp / 'journal'}\n"
        "  fsync: interval\n"
        "shutdown_grace_seconds: 2\n"
        "logging:\n"
        "  level: warning\n"
        "  format: json\n"
        "metrics:\n"
        "  enabled: true\n"
    )
    return config


def start(name: str, cmd: list[str], tmp: Path, cpu: int | None) -> Proc:
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    log = tmp / f"{name}.log"
    with open(log, "wb") as fh:
        popen = subprocess.Popen(
            cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
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


async def wait_ready(proc: Proc, url: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}"
                )
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready at {url} after {limit}s:\n{proc.tail()}")


def fmt(value: float | None, spec: str = ".2f") -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    return format(value, spec)


@dataclass
class Plan:
    urls: dict[str, str]
    headers: dict[str, dict[str, str]]
    pids: dict[str, int]
    procs: dict[str, Proc]
    concurrency: list[int]
    duration: float
    rounds: int


async def bench(plan: Plan) -> tuple[dict[tuple[str, str, int], list[RowResult]], int]:
    chat = orjson.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Say hello in five words."}],
            "max_tokens": 16,
        }
    )
    stream = orjson.dumps({**orjson.loads(chat), "stream": True})
    bodies = {"chat": chat, "stream TTFT": stream}
    rows = [("chat", c) for c in plan.concurrency] + [("stream TTFT", 1)]
    results: dict[tuple[str, str, int], list[RowResult]] = {}
    sent_to_routerd = 0

    async def row(target: str, mode: str, conc: int, duration: float) -> RowResult:
        for proc in plan.procs.values():
            if proc.popen.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}"
                )
        return await run_row(
            plan.urls[target],
            bodies[mode],
            plan.headers[target],
            concurrency=conc,
            duration=duration,
            stream=mode != "chat",
            server_pid=plan.pids[target],
        )

    print("warming up ...", file=sys.stderr, flush=True)
    for target in TARGETS:
        warm = await row(target, "chat", max(plan.concurrency), 1.0)
        warm_s = await row(target, "stream TTFT", 1, 0.3)
        if target == "routerd":
            sent_to_routerd += warm.sent + warm_s.sent
        for name, res in (("chat", warm), ("stream", warm_s)):
            if res.errors:
                print(f"  warmup {target} {name}: {res.errors} errors, first: {res.first_error}")

    for rnd in range(plan.rounds):
        print(f"round {rnd + 1}/{plan.rounds} ...", file=sys.stderr, flush=True)
        for mode, conc in rows:
            for target in TARGETS:
                res = await row(target, mode, conc, plan.duration)
                results.setdefault((target, mode, conc), []).append(res)
                if target == "routerd":
                    sent_to_routerd += res.sent
    return results, sent_to_routerd


def report(
    results: dict[tuple[str, str, int], list[RowResult]], concurrency: list[int], duration: float
) -> list[str]:
    def med(key: tuple[str, str, int], attr: str) -> float:
        runs = results[key]
        vals = {
            "rps": [r.rps for r in runs],
            "p50": [r.pct(50) for r in runs],
            "p99": [r.pct(99) for r in runs],
            "gen": [100 * r.gen_cpu / r.duration for r in runs if r.duration],
            "srv": [
                100 * r.server_cpu / r.duration
                for r in runs
                if r.server_cpu is not None and r.duration
            ],
        }[attr]
        return statistics.median(vals) if vals else float("nan")

    out = [
        "| target | mode | conc | req/s | p50 ms | p99 ms | added p50 vs direct ms "
        "| routerd/bare req/s | errors | gen CPU % | server CPU % |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    errors: list[str] = []
    rows = [("chat", c) for c in concurrency] + [("stream TTFT", 1)]
    for mode, conc in rows:
        direct_p50 = med(("direct", mode, conc), "p50")
        bare_rps = med(("bare", mode, conc), "rps")
        for target in TARGETS:
            key = (target, mode, conc)
            p50 = med(key, "p50")
            added = None if target == "direct" else p50 - direct_p50
            ratio = med(key, "rps") / bare_rps if target == "routerd" and bare_rps else None
            n_err = sum(r.errors for r in results[key])
            out.append(
                f"| {target} | {mode} | {conc} | {fmt(med(key, 'rps'), '.0f')} | {fmt(p50, '.3f')}"
                f" | {fmt(med(key, 'p99'), '.3f')} | {fmt(added, '+.3f')} | {fmt(ratio, '.2f')}"
                f" | {n_err} | {fmt(med(key, 'gen'), '.0f')} | {fmt(med(key, 'srv'), '.0f')} |"
            )
            for r in results[key]:
                if r.first_error:
                    errors.append(f"- {target} {mode} c={conc}: {r.errors} errors; first: ")
                    errors[-1] += r.first_error
                    break
    if errors:
        out += ["", "Errors (first per row):", *errors]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per row (2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--concurrency", default="1,16,64", help="chat rows (1,16,64)")
    parser.add_argument("--chunks", type=int, default=20, help="SSE chunks per stream (20)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin CPUs with taskset")
    args = parser.parse_args(argv)
    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]

    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = not args.no_pin and shutil.which("taskset") is not None and len(allowed) >= 2
    gen_cpu, srv_cpu = (allowed[0], allowed[1]) if pin else (None, None)
    try:
        import uvloop
    except ImportError:
        uvloop = None

    py = sys.executable
    procs: dict[str, Proc] = {}
    started = time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="routerd-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            if pin:
                os.sched_setaffinity(0, {gen_cpu})
            up_port, bare_port, rd_port = free_port(), free_port(), free_port()
            config = write_config(tmp, up_port, rd_port)
            up_cmd = [py, "-m", "tests.bench.upstream", "--port", str(up_port)]
            up_cmd += ["--chunks", str(args.chunks)]
            bare_cmd = [py, "-m", "tests.bench.bare_proxy", "--port", str(bare_port)]
            bare_cmd += ["--upstream", f"http://127.0.0.1:{up_port}"]
            procs["upstream"] = start(
                "upstream",
                up_cmd,
                tmp,
                gen_cpu,
            )
            procs["bare"] = start(
                "bare",
                bare_cmd,
                tmp,
                srv_cpu,
            )
            procs["routerd"] = start(
                "routerd",
                [py, "-m", "routerd", "-c", str(config), "--listen", f"127.0.0.1:{rd_port}"],
                tmp,
                srv_cpu,
            )

            async def ready() -> None:
                await wait_ready(procs["upstream"], f"http://127.0.0.1:{up_port}/health")
                await wait_ready(procs["bare"], f"http://127.0.0.1:{bare_port}/health")
                await wait_ready(procs["routerd"], f"http://127.0.0.1:{rd_port}/readyz")

            plan = Plan(
                urls={
                    "direct": f"http://127.0.0.1:{up_port}/v1/chat/completions",
                    "bare": f"http://127.0.0.1:{bare_port}/v1/chat/completions",
                    "routerd": f"http://127.0.0.1:{rd_port}/v1/chat/completions",
                },
                headers={
                    "direct": {},
                    "bare": {},
                    "routerd": {"Authorization": f"Bearer {API_KEY}"},
                },
                pids={
                    "direct": procs["upstream"].popen.pid,
                    "bare": procs["bare"].popen.pid,
                    "routerd": procs["routerd"].popen.pid,
                },
                procs=procs,
                concurrency=concurrency,
                duration=args.duration,
                rounds=args.rounds,
            )

            async def everything() -> tuple[dict[tuple[str, str, int], list[RowResult]], int]:
                await ready()
                return await bench(plan)

            if uvloop is not None:
                results, sent = uvloop.run(everything())
            else:
                results, sent = asyncio.run(everything())

            rd_exit = stop(procs["routerd"], grace=10)
            journal = sum(
                sum(1 for _ in p.open("rb")) for p in (tmp / "journal").rglob("*") if p.is_file()
            )
            lines = [
                "## routerd bench",
                "",
                f"- machine: {cpu_model()}; nproc {os.cpu_count()} "
                f"(usable {len(allowed) or '?'}); Linux {platform.release()}",
                f"- load average (1 min) {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} "
                "after: other work on this machine skews every row",
                f"- python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
                f"event loop {'uvloop' if uvloop else 'asyncio'} (generator, upstream, bare proxy)",
                "- pinning: "
                + (
                    f"routerd + bare proxy on CPU {srv_cpu}; load generator + upstream on "
                    f"CPU {gen_cpu} (taskset)"
                    if pin
                    else "none (taskset missing, < 2 CPUs or --no-pin)"
                ),
                f"- {args.rounds} interleaved rounds (direct, bare, routerd) x {args.duration:g} s"
                " per row after warmup; medians over rounds; errors summed",
                "- load generator: in-tree asyncio/aiohttp, closed loop, keep-alive; it shares the "
                "CPU budget (with the upstream) and its own CPU use is the `gen CPU %` column. "
                "`server CPU %` is the process under test (upstream for direct).",
                "- stream rows: p50/p99 are time to first SSE data frame "
                f"({args.chunks} chunks, zero latency); req/s are completed streams",
                "",
                *report(results, concurrency, args.duration),
                "",
                f"routerd: exit {rd_exit} after SIGTERM; journal {journal} lines for {sent} "
                f"requests sent; total bench time {time.monotonic() - started:.0f} s\n",
            ]
            print("\n".join(lines))
            tail = procs["routerd"].tail(10)
            if tail.strip():
                print("\nrouterd log (last lines, level warning):\n" + tail)
            return 0
        finally:
            for proc in procs.values():
                stop(proc)
