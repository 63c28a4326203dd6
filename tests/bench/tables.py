"""Turn one run's results into the bench table (`report.Table`) and its notes, with the targets
of issue 7 checked row by row."""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from tests.bench import streams
from tests.bench.phases import Bench
from tests.bench.report import Table, fmt, ok_ge, ok_le


def _med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _cpu_us(b: Bench, key: str) -> float | None:
    """Median server CPU microseconds per request of a row's rounds: on one saturated core the
    inverse of its throughput, and far less moved by other load on the machine than req/s."""
    return _med([s.srv_cpu_pct * 1e4 / s.rps for s in b.samples.get(key, [])
                 if s.srv_cpu_pct is not None and s.rps])  # fmt: skip


def _throughput(t: Table, b: Bench, concurrency: list[int]) -> None:
    for conc in concurrency:
        t.section(f"passthrough chat, concurrency {conc}")
        m = {
            x: (lambda a, x=x, c=conc: b.median(f"{x} chat {c}", a))
            for x in ("direct", "bare", "routerd")
        }
        ratio = m["routerd"]("rps") / m["bare"]("rps") if m["bare"]("rps") else None
        t.add("req/s", m["direct"]("rps"), m["bare"]("rps"), m["routerd"]("rps"), spec=".0f",
              ratio=ratio, target=">= 1.0x bare" if conc == 16 else "",
              ok=ok_ge(ratio, 1.0) if conc == 16 else None)  # fmt: skip
        t.add("p50 ms", m["direct"]("p50"), m["bare"]("p50"), m["routerd"]("p50"), spec=".3f")
        t.add("p99 ms", m["direct"]("p99"), m["bare"]("p99"), m["routerd"]("p99"), spec=".3f")
        for q, limit in (("p50", 0.3), ("p99", 1.5)):
            added = [m[x](q) - m["direct"](q) for x in ("bare", "routerd")]
            t.add(f"added {q} vs direct ms", None, added[0], added[1], spec="+.3f",
                  target=f"<= {limit} ms" if conc == 1 else "",
                  ok=ok_le(added[1], limit) if conc == 1 else None)  # fmt: skip
        t.add("generator CPU %", m["direct"]("gen_cpu_pct"), m["bare"]("gen_cpu_pct"),
              m["routerd"]("gen_cpu_pct"), spec=".0f")  # fmt: skip
        t.add("server CPU % (upstream for direct)", m["direct"]("srv_cpu_pct"),
              m["bare"]("srv_cpu_pct"), m["routerd"]("srv_cpu_pct"), spec=".0f")  # fmt: skip
        t.add("server CPU us per request", None, _cpu_us(b, f"bare chat {conc}"),
              _cpu_us(b, f"routerd chat {conc}"), spec=".0f")  # fmt: skip
        errs = [sum(s.errors for s in b.samples.get(f"{x} chat {conc}", [])) for x in m]
        t.add("errors (all rounds)", *errs, spec="d")
    t.section("translated: Anthropic Messages in, OpenAI upstream (routerd only)")
    for conc in concurrency:
        rps = b.median(f"routerd messages {conc}", "rps")
        base = b.median(f"routerd chat {conc}", "rps")
        ratio = rps / base if base else None
        t.add(f"c={conc} req/s (ratio: / passthrough)", None, None, rps, spec=".0f", ratio=ratio,
              target=">= 0.7x passthrough", ok=ok_ge(ratio, 0.7))  # fmt: skip
        cpu = _cpu_us(b, f"routerd messages {conc}")
        cpu_base = _cpu_us(b, f"routerd chat {conc}")
        t.add(f"c={conc} CPU us per request (ratio: passthrough's / this)", None, None, cpu,
              spec=".0f", ratio=cpu_base / cpu if cpu and cpu_base else None)  # fmt: skip
        t.add(f"c={conc} p50 / p99 ms", routerd=None, routerd_text=(
            f"{fmt(b.median(f'routerd messages {conc}', 'p50'), '.3f')} / "
            f"{fmt(b.median(f'routerd messages {conc}', 'p99'), '.3f')}"))  # fmt: skip
    errs = sum(s.errors for k, v in b.samples.items() if "messages" in k for s in v)
    t.add("errors (all rounds)", routerd=errs, spec="d")


def _ttft(t: Table, b: Bench) -> None:
    t.section("streaming (20 chunks, no pacing), time to first token, concurrency 1")
    m = {x: (lambda a, x=x: b.median(f"{x} ttft 1", a)) for x in ("direct", "bare", "routerd")}
    t.add("TTFT p50 ms", m["direct"]("p50"), m["bare"]("p50"), m["routerd"]("p50"), spec=".3f")
    t.add("TTFT p99 ms", m["direct"]("p99"), m["bare"]("p99"), m["routerd"]("p99"), spec=".3f")
    for q in ("p50", "p99"):
        over = [m[x](q) - m["direct"](q) for x in ("bare", "routerd")]
        t.add(f"TTFT overhead {q} vs direct ms", None, over[0], over[1], spec="+.3f",
              target="<= 0.3 ms" if q == "p50" else "",
              ok=ok_le(over[1], 0.3) if q == "p50" else None)  # fmt: skip
    t.add("completed streams/s", m["direct"]("rps"), m["bare"]("rps"), m["routerd"]("rps"),
          spec=".0f")  # fmt: skip


def _paced(t: Table, res: dict[str, Any], args: argparse.Namespace) -> None:
    paced = res.get("paced")
    if not paced:
        return
    t.section(f"paced streams ({args.chunks} chunks {args.pace_ms:g} ms apart), one core")
    best = {x: streams.capacity(paced[x]) for x in ("direct", "bare", "routerd")}
    t.add("max concurrent streams, jitter p99 <= 1 ms, 0 lost, upstream >= 95 % of pace",
          best["direct"], best["bare"], best["routerd"], spec="d", target=">= 256",
          ok=ok_ge(best["routerd"], 256))  # fmt: skip
    rel = streams.relative_capacity(paced["routerd"], paced["bare"])
    t.add("max streams, jitter p99 within 1 ms of the bare proxy's, 0 lost", routerd=rel,
          spec="d")  # fmt: skip
    _per_frame(t, paced, args.pace_ms)
    by_n = {x: {tr.streams: tr for tr in paced[x]} for x in best}
    for n in sorted(set(by_n["direct"]) | set(by_n["bare"]) | set(by_n["routerd"])):
        cells = [by_n[x].get(n) for x in ("direct", "bare", "routerd")]
        t.add(f"N={n}: jitter p99 ms (lost frames; upstream frame rate % of nominal)", routerd=None,
              routerd_text=_cell(cells[2]))  # fmt: skip
        t.rows[-1].direct, t.rows[-1].bare = _cell(cells[0]), _cell(cells[1])


def _per_frame(t: Table, paced: dict[str, list[streams.Trial]], pace_ms: float) -> None:
    """Server CPU per relayed frame at the largest N where no stream failed and the upstream kept
    95 % of its pace, the generator's (this process: client and paced upstream), and the streams
    one core could hold at that cost."""
    picked = {
        x: next((tr for tr in reversed(paced[x]) if not tr.failed and tr.offered >= 0.95), None)
        for x in paced
    }
    us = {x: tr.server_us_per_frame() if tr else None for x, tr in picked.items()}
    at = {x: f" (N={tr.streams})" if tr else "" for x, tr in picked.items()}
    t.add("server CPU us per relayed frame", routerd=None,
          routerd_text=f"{fmt(us['routerd'], '.1f')}{at['routerd']}")  # fmt: skip
    t.rows[-1].direct = f"{fmt(us['direct'], '.1f')}{at['direct']}"
    t.rows[-1].bare = f"{fmt(us['bare'], '.1f')}{at['bare']}"
    client = {x: tr.client_cpu / tr.frames * 1e6 if tr and tr.client_cpu and tr.frames else None
              for x, tr in picked.items()}  # fmt: skip
    t.add("generator process CPU us per frame (client + paced upstream)", client["direct"],
          client["bare"],
          client["routerd"], spec=".1f")  # fmt: skip
    cost = {**us, "direct": client["direct"]}  # direct: the upstream runs in the client process
    bound = {x: 1e6 / (v * 1000 / pace_ms) if v else None for x, v in cost.items()}
    t.add(f"one-core bound, streams: 1e6 / (us per frame x {1000 / pace_ms:g}); direct: client"
          " + upstream", bound["direct"], bound["bare"], bound["routerd"], spec=".0f")  # fmt: skip


def _cell(trial: streams.Trial | None) -> str:
    if trial is None:
        return "—"
    extra = f", {trial.failed} failed" if trial.failed else ""
    offered = fmt(100 * trial.offered, ".0f")
    return f"{fmt(trial.jitter_p99(), '.2f')} ({trial.lost_frames}{extra}; {offered} %)"


def _rss(t: Table, res: dict[str, Any], args: argparse.Namespace) -> None:
    rss = res["rss"]
    t.section("memory (VmRSS, MB)")
    t.add("idle", None, rss.get("bare_idle"), rss.get("idle"), spec=".1f", target="<= 60 MB",
          ok=ok_le(rss.get("idle"), 60))  # fmt: skip
    for total in [args.rss_requests, 1_000_000]:
        if total in rss:
            sent, mb = rss[total]
            grow = mb - rss[args.rss_requests][1] if total != args.rss_requests else None
            t.add(f"after {sent:,} requests", None, None, mb, spec=".1f",
                  target="flat" if grow is not None else "",
                  ok=ok_le(grow, 5.0) if grow is not None else None)  # fmt: skip
        elif total == 1_000_000:
            t.add("after 1,000,000 requests", routerd_text="not run (needs --long)")
    trace = [mb for sent, mb in res.get("rss_trace", ()) if sent >= args.rss_requests]
    if len(trace) > 1:
        t.add(f"min / max while driving it past {args.rss_requests:,} ({len(trace)} samples)",
              routerd_text=f"{min(trace):.1f} / {max(trace):.1f}")  # fmt: skip
    if "bare_end" in rss:
        t.add("bare proxy at the end", None, rss["bare_end"], None, spec=".1f")


def _reload(t: Table, res: dict[str, Any], args: argparse.Namespace) -> None:
    rl = res.get("reload")
    if not rl:
        return
    t.section(f"reload, {args.keys:,} keys and {args.models:,} models")
    t.add("startup to /readyz s", routerd=rl["startup_s"], spec=".2f")
    log_ms = _med([s * 1000 for s in rl["log_s"]])
    t.add("SIGHUP, no file changed -> config_reloaded ms (median)", routerd=log_ms, spec=".0f",
          target="<= 200 ms", ok=ok_le(log_ms, 200))  # fmt: skip
    for label, key in (("YAML", "yaml_edit_log_s"), ("JSON", "json_edit_log_s")):
        if rl.get(key):
            ms = _med([s * 1000 for s in rl[key]])
            t.add(f"SIGHUP after adding a key to the {label} keys file ms (median)",
                  routerd=ms, spec=".0f", target="<= 200 ms", ok=ok_le(ms, 200))  # fmt: skip
    t.add("SIGHUP -> new generation in /metrics ms (median)",
          routerd=_med([s * 1000 for s in rl["poll_s"]]), spec=".0f")  # fmt: skip
    t.add(f"failed requests, c=16 for {rl['loop_seconds']:.0f} s, "
          f"{rl['loop_reloads']} reloads (every other one edits keys)",
          routerd=rl["loop_failed"], spec="d",
          target="0", ok=rl["loop_failed"] == 0 and rl["loop_reloads"] > 0)  # fmt: skip
    t.add("requests served during the reload loop", routerd=rl["loop_requests"], spec=",d")
    t.add("RSS with the big config MB", routerd=rl["rss_mb"], spec=".1f")


def _replay(t: Table, res: dict[str, Any]) -> None:
    rp = res.get("replay")
    if not rp:
        return
    t.section(f"journal replay, {rp['lines']:,} lines / 30 files ({rp['bytes'] / 1e6:.0f} MB)")
    full = rp["lines"] == 1_000_000
    target = "<= 5 s" + ("" if full else " (for 1M)")
    t.add("replay s, cold (first start: every line parsed)", routerd=rp["seconds"], spec=".2f",
          target=target, ok=ok_le(rp["seconds"], 5.0) if full else None)  # fmt: skip
    if "warm_seconds" in rp:
        t.add("replay s, warm (restart: closed days from summaries)", routerd=rp["warm_seconds"],
              spec=".2f", target=target,
              ok=ok_le(rp["warm_seconds"], 5.0) if full else None)  # fmt: skip
    t.add("lines/s, cold", routerd=rp["lines"] / rp["seconds"], spec=",.0f")


def build_table(res: dict[str, Any], args: argparse.Namespace) -> tuple[Table, list[str]]:
    b: Bench = res["bench"]
    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    t = Table()
    _throughput(t, b, concurrency)
    _ttft(t, b)
    _paced(t, res, args)
    _rss(t, res, args)
    _reload(t, res, args)
    _replay(t, res)
    notes = [
        f"routerd: exit {res['routerd_exit']} after SIGTERM; journal {res['journal_lines']:,} "
        f"lines; the harness counted {b.routerd_sent:,} requests (wrk counts completed ones "
        "only; warmup and stream trials included)",
    ]
    if res.get("replay"):
        notes.append(f"replay timed: {res['replay']['callable']}")
    for key, samples in b.samples.items():
        first = next((s.first_error for s in samples if s.first_error), None)
        if first:
            notes.append(f"- errors in {key}: {first}")
    if res.get("profile"):
        total, top = res["profile"]
        notes += ["", f"py-spy, routerd passthrough c=16, top self time ({total} samples):"]
        notes += [f"  {100 * n / total:5.1f}%  {name}" for name, n in top]
    if res.get("reload"):
        rl = res["reload"]
        if rl["loop_error_detail"]:
            notes.append(f"- reload loop errors: {rl['loop_error_detail']}")
    return t, notes
