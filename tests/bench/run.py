"""`python -m tests.bench` (`make bench`): every row of issue 7 in one run, one table.

Starts, each in its own subprocess on a free loopback port: a zero-latency fake OpenAI upstream
(`upstream.py`), the bare reference proxy (`bare_proxy.py`) and routerd with every feature on
(`config.py`). With `taskset` and >= 2 CPUs, routerd and the bare proxy share one CPU and the load
generator (wrk when installed, else the in-tree one) and the upstream the other. Then, in order:
interleaved rounds of throughput/latency rows and stream TTFT rows (medians), paced-stream
capacity, RSS idle / after 100k / after 1M requests (`--long`), an optional py-spy profile, the
reload rows on a second routerd with 10,000 keys and 1,000 models, and the journal replay row.

A benchmark, never a test: it measures and prints; nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from tests.bench import cpuidle, paced_upstream, phases, reload, wrk
from tests.bench.config import write_bench_config, write_big_config
from tests.bench.procs import Proc, cpu_model, free_port, rss_mb, start, stop, wait_ready
from tests.bench.replay import write_journal
from tests.bench.tables import build_table


def _env(name: str, default: str) -> str:
    return os.environ.get(f"BENCH_{name}", default)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        default=_env("QUICK", "") == "1",
        help="short run: 1 round of 1 s rows, small reload/replay/RSS rows",
    )
    p.add_argument(
        "--long",
        action="store_true",
        default=_env("LONG", "") == "1",
        help="also the RSS row after 1,000,000 requests (several minutes)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=float(_env("DURATION", "3")),
        help="seconds per throughput row (3)",
    )
    p.add_argument(
        "--rounds", type=int, default=int(_env("ROUNDS", "3")), help="interleaved rounds (3)"
    )
    p.add_argument("--concurrency", default=_env("CONCURRENCY", "1,16,64"))
    p.add_argument("--chunks", type=int, default=20, help="SSE chunks per stream (20)")
    p.add_argument("--pace-ms", type=float, default=5.0, help="paced stream chunk gap (5)")
    p.add_argument("--stream-seconds", type=float, default=2.0, help="per paced-stream trial")
    p.add_argument("--max-streams", type=int, default=4096)
    p.add_argument("--keys", type=int, default=10_000, help="keys in the reload config")
    p.add_argument("--models", type=int, default=1_000, help="models in the reload config")
    p.add_argument("--reloads", type=int, default=5, help="timed reloads (5)")
    p.add_argument(
        "--reload-load-seconds",
        type=int,
        default=60,
        help="length of the reload loop under load (60)",
    )
    p.add_argument("--replay-lines", type=int, default=1_000_000)
    p.add_argument("--rss-requests", type=int, default=100_000)
    p.add_argument("--profile", metavar="FILE", help="py-spy collapsed stacks of routerd at c=16")
    p.add_argument("--profile-seconds", type=int, default=15)
    p.add_argument("--json", metavar="FILE", help="save every result as JSON")
    p.add_argument("--no-wrk", action="store_true", help="use the in-tree load generator")
    p.add_argument("--no-pin", action="store_true", help="do not pin CPUs with taskset")
    p.add_argument("--skip", default="", help="comma list of: rounds,paced,rss,reload,replay")
    p.add_argument(
        "--tune-latency",
        action="store_true",
        default=_env("TUNE_LATENCY", "") == "1",
        help="hold /dev/cpu_dma_latency at 0 us for the run (root; see cpuidle.py)",
    )
    args = p.parse_args(argv)  # fmt: skip
    args.cpus = _cpus(args.no_pin)  # before the bench process pins itself
    if args.quick:
        args.duration, args.rounds = 1.0, 1
        args.stream_seconds, args.reloads, args.reload_load_seconds = 1.0, 2, 15
        args.replay_lines, args.rss_requests = 100_000, 20_000
    return args


def _cpus(no_pin: bool) -> tuple[int | None, int | None, list[int]]:
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if no_pin or shutil.which("taskset") is None or len(allowed) < 2:
        return None, None, allowed
    return allowed[0], allowed[1], allowed


async def _reload_rows(tmp: Path, args: argparse.Namespace, up_port: int, srv_cpu: int | None,
                       gen_cpu: int | None) -> dict[str, Any]:  # fmt: skip
    port = free_port()
    config = write_big_config(tmp / "big", up_port, port, args.keys, args.models)
    py = sys.executable
    cmd = [py, "-m", "routerd", "-c", str(config), "--listen", f"127.0.0.1:{port}"]
    proc = start("routerd-big", cmd, tmp, srv_cpu)
    try:
        print(f"reload: starting routerd with {args.keys} keys ...", file=sys.stderr, flush=True)
        startup = await wait_ready(proc, f"http://127.0.0.1:{port}/readyz", limit=600)
        metrics = f"http://127.0.0.1:{port}/metrics"
        timing = await reload.time_reloads(proc.pid, metrics, proc.log, args.reloads)
        keys_file = config.parent / "keys.yaml"
        edit = reload.add_key_edit(keys_file)
        yaml_edit = await reload.time_reloads(proc.pid, metrics, proc.log, args.reloads, edit)
        reload.to_json_keys(keys_file)
        # Untimed: the rewrite in JSON changed every line; the row times adding one key.
        await reload.time_reloads(proc.pid, metrics, proc.log, 1)
        json_edit = await reload.time_reloads(proc.pid, metrics, proc.log, args.reloads, edit)
        print("reload: loop under load ...", file=sys.stderr, flush=True)
        script = wrk.write_script(tmp, "big-chat", phases.CHAT, phases.AUTH)
        stop_evt = asyncio.Event()
        loop_task = asyncio.create_task(
            reload.reload_loop(proc.pid, metrics, proc.log, stop_evt, edit)
        )
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        res = await asyncio.to_thread(
            wrk.run, url, script, concurrency=16, seconds=args.reload_load_seconds, cpu=gen_cpu
        )
        stop_evt.set()
        reloads_done = await loop_task
        return {
            "startup_s": startup, "poll_s": timing.poll_s, "log_s": timing.log_s,
            "yaml_edit_log_s": yaml_edit.log_s, "json_edit_log_s": json_edit.log_s,
            "loop_requests": res.requests, "loop_failed": res.errors,
            "loop_error_detail": res.error_detail, "loop_reloads": reloads_done,
            "loop_seconds": res.seconds, "rss_mb": rss_mb(proc.pid),
        }  # fmt: skip
    finally:
        stop(proc, grace=10)


def _replay_row(tmp: Path, lines: int, srv_cpu: int | None) -> dict[str, Any]:
    import subprocess

    from tests.bench.procs import REPO, pinned

    directory = tmp / "replay"
    print(f"replay: writing {lines} journal lines ...", file=sys.stderr, flush=True)
    size = write_journal(directory, lines)
    cmd = pinned([sys.executable, "-m", "tests.bench.replay", str(directory)], srv_cpu)
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, check=True).stdout
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result.update(lines=lines, bytes=size)
    shutil.rmtree(directory, ignore_errors=True)
    return result


async def _main(args: argparse.Namespace, tmp: Path, procs: dict[str, Proc]) -> dict[str, Any]:
    gen_cpu, srv_cpu, _ = args.cpus
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if gen_cpu is not None:
        os.sched_setaffinity(0, {gen_cpu})
    ports = {"upstream": free_port(), "bare": free_port(), "routerd": free_port()}
    ports["paced"] = free_port()
    log_level = _env("LOG_LEVEL", "warning")
    config = write_bench_config(tmp / "rd", ports["upstream"], ports["routerd"], log_level,
                                ports["paced"])  # fmt: skip
    py = sys.executable
    procs["upstream"] = start("upstream", [py, "-m", "tests.bench.upstream", "--port",
        str(ports["upstream"]), "--chunks", str(args.chunks)], tmp, gen_cpu)  # fmt: skip
    # the paced upstream runs in this (generator) process: one event loop with the stream client,
    # so the two never wait for each other's CFS time slice on the generator core
    paced_server = await paced_upstream.serve(
        "127.0.0.1", ports["paced"], args.chunks, args.pace_ms / 1000.0
    )
    procs["bare"] = start("bare", [py, "-m", "tests.bench.bare_proxy", "--port",
        str(ports["bare"]), "--upstream", f"http://127.0.0.1:{ports['upstream']}",
        "--paced-upstream", f"http://127.0.0.1:{ports['paced']}"], tmp, srv_cpu)  # fmt: skip
    procs["routerd"] = start("routerd", [py, "-m", "routerd", "-c", str(config), "--listen",
        f"127.0.0.1:{ports['routerd']}"], tmp, srv_cpu)  # fmt: skip
    await wait_ready(procs["upstream"], f"http://127.0.0.1:{ports['upstream']}/health")
    await wait_ready(procs["bare"], f"http://127.0.0.1:{ports['bare']}/health")
    await wait_ready(procs["routerd"], f"http://127.0.0.1:{ports['routerd']}/readyz")
    await asyncio.sleep(1.0)
    res: dict[str, Any] = {"rss": {"idle": rss_mb(procs["routerd"].pid),
                                   "bare_idle": rss_mb(procs["bare"].pid)}}  # fmt: skip
    b = phases.Bench(tmp, procs, ports, gen_cpu, wrk.available() and not args.no_wrk,
                     args.duration)  # fmt: skip
    if "rounds" not in skip:
        await phases.rounds(b, concurrency, args.rounds)
    res["rounds_sent"] = b.routerd_sent
    if "paced" not in skip:
        res["paced"] = await phases.paced(
            b, args.stream_seconds, args.chunks, args.max_streams, args.pace_ms
        )
    if args.profile:
        print("profiling routerd at concurrency 16 ...", file=sys.stderr, flush=True)
        res["profile"] = await phases.profile(b, args.profile_seconds, Path(args.profile))
    if "rss" not in skip:
        for total in [args.rss_requests] + ([1_000_000] if args.long else []):
            print(f"RSS: driving routerd to {total} requests ...", file=sys.stderr, flush=True)
            await phases.top_up(b, total)
            await asyncio.sleep(1.0)
            res["rss"][total] = (b.routerd_sent, rss_mb(procs["routerd"].pid))
        res["rss"]["bare_end"] = rss_mb(procs["bare"].pid)
    paced_server.close()
    res["bench"] = b
    res["rss_trace"] = b.rss_trace
    res["routerd_exit"] = stop(procs["routerd"], grace=10)
    res["journal_lines"] = sum(
        sum(1 for _ in p.open("rb")) for p in (tmp / "rd" / "journal").rglob("*") if p.is_file()
    )
    if "reload" not in skip:
        res["reload"] = await _reload_rows(tmp, args, ports["upstream"], srv_cpu, gen_cpu)
    if "replay" not in skip:
        res["replay"] = await asyncio.to_thread(_replay_row, tmp, args.replay_lines, srv_cpu)
    return res


def _header(
    args: argparse.Namespace, b: phases.Bench, load: tuple[float, float], idle: str
) -> list[str]:
    gen_cpu, srv_cpu, allowed = args.cpus
    try:
        import uvloop  # noqa: F401

        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    pin = (f"routerd + bare proxy on CPU {srv_cpu}; load generator + upstream on CPU {gen_cpu}"
           if srv_cpu is not None else "none (taskset missing, < 2 CPUs or --no-pin)")  # fmt: skip
    gen = "wrk 4.x (-t1, Lua POST script)" if b.use_wrk else "in-tree asyncio/aiohttp"
    return [
        "## routerd bench",
        "",
        f"- machine: {cpu_model()}; nproc {os.cpu_count()} (usable {len(allowed) or '?'}); "
        f"Linux {platform.release()}; python {platform.python_version()}, "
        f"aiohttp {aiohttp.__version__}, {loop_name}",
        f"- load average (1 min) {load[0]:.2f} before, {load[1]:.2f} after",
        f"- idle CPUs: {cpuidle.describe()}; this run: {idle}",
        f"- pinning: {pin}",
        f"- load generator: {gen}; stream TTFT rows: in-tree aiohttp client at concurrency 1; "
        "paced streams: in-tree raw-asyncio client",
        f"- {args.rounds} interleaved rounds x {args.duration:g} s per row after warmup; medians",
        f"- routerd config: 1 key with rpm/tpm/concurrency limits and 3 budgets (key, tag, "
        f"global; never refusing), metrics on, journal fsync interval, log level "
        f"{_env('LOG_LEVEL', 'warning')}, provider pool_size 4096",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs: dict[str, Proc] = {}
    started, load0 = time.monotonic(), os.getloadavg()[0]
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    with tempfile.TemporaryDirectory(prefix="routerd-bench-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            with cpuidle.latency_held(args.tune_latency) as idle:
                res = runner(_main(args, tmp, procs))
        finally:
            for proc in procs.values():
                stop(proc)
        b: phases.Bench = res["bench"]
        table, notes = build_table(res, args)
        lines = [*_header(args, b, (load0, os.getloadavg()[0]), idle), "", *table.markdown(), "",
                 *notes, f"\ntotal bench time {time.monotonic() - started:.0f} s"]  # fmt: skip
        print("\n".join(lines))
        tail = procs["routerd"].tail(5)
        if tail.strip():
            print("\nrouterd log (last lines):\n" + tail)
        if args.json:
            dump = {k: v for k, v in res.items() if k not in ("bench", "paced")}
            dump["samples"] = {k: [asdict(s) for s in v] for k, v in b.samples.items()}
            dump["paced"] = {
                t: [{"streams": x.streams, "completed": x.completed, "failed": x.failed,
                     "lost_frames": x.lost_frames, "jitter_p99_ms": x.jitter_p99()}
                    for x in tried]
                for t, tried in res.get("paced", {}).items()
            }  # fmt: skip
            dump["table"] = table.as_json()
            dump["args"] = vars(args)
            Path(args.json).write_text(json.dumps(dump, indent=2, default=str))
    return 0
