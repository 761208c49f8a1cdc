"""Writes a run's report: ``results.json``, ``results.md`` (Markdown tables) and ``latency.png``.

The Markdown is what loadtests/README.md pastes; every figure in it comes from the Report
struct, which is also what ``results.json`` holds (read it back with `load_report`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from loadtests.results import (
    CostPoint,
    LoadPoint,
    LoadRun,
    Overload,
    Report,
    StreamPoint,
    target_figures,
)

__all__ = ["PlotUnavailable", "load_report", "plot_latency", "render_markdown", "write_report"]

_decoder = msgspec.json.Decoder(Report)


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed, so latency.png cannot be drawn."""


def _table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table; `align` has one letter per column, l or r."""
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _chat_rows(points: Sequence[LoadPoint]) -> list[list[str]]:
    rows = []
    for p in points:
        k, d = p.keyway, p.direct
        rows.append(
            [
                f"{p.upstream_latency_ms:g} ms",
                str(p.connections),
                _num(k.rps),
                _num(p.rps_per_worker),
                _num(d.rps),
                f"{_ms(k.latency.p50_ms)} / {_ms(k.latency.p90_ms)} / {_ms(k.latency.p99_ms)}",
                f"{_ms(d.latency.p50_ms)} / {_ms(d.latency.p90_ms)} / {_ms(d.latency.p99_ms)}",
                _signed(p.added_p50_ms),
                _signed(p.added_p99_ms),
                f"{k.non_2xx + k.socket_errors} / {d.non_2xx + d.socket_errors}",
            ]
        )
    return rows


def _cost_rows(points: Sequence[LoadPoint]) -> list[list[str]]:
    rows = []
    for p in points:
        r = p.keyway.redis
        rows.append(
            [
                f"{p.upstream_latency_ms:g} ms",
                str(p.connections),
                _num(p.keyway.server_cpu_us_per_request),
                _num(p.keyway.server_cpu_pct),
                _num(p.keyway.others_on_core_pct),
                _num(p.keyway.cpu_bound_rps),
                _num(p.direct.server_cpu_us_per_request),
                _num(r.evalsha_per_request if r else None, 2),
                _num(r.reads_per_request if r else None, 2),
                _num(r.commands_per_request if r else None, 1),
                _num(r.cpu_us_per_request if r else None),
            ]
        )
    return rows


def _command_lines(points: Sequence[LoadPoint]) -> list[str]:
    """Which Redis commands make up the per-request count, at the busiest instant-upstream point."""
    busiest = max(
        (p for p in points if p.keyway.redis is not None and p.keyway.redis.commands_by_name),
        key=lambda p: (p.upstream_latency_ms == 0, p.connections),
        default=None,
    )
    if busiest is None or busiest.keyway.redis is None:
        return []
    names = ", ".join(f"{n} {v:.1f}" for n, v in busiest.keyway.redis.commands_by_name.items())
    return [
        f"Redis commands per request by name ({busiest.scenario}, {busiest.connections} "
        f"connections; those run inside scripts included): {names}."
    ]


def _redis_runs(report: Report) -> list[tuple[str, str, LoadRun]]:
    """(what, connections, run) of every Keyway run that measured Redis, scaling aside."""
    runs = [
        (f"{p.scenario}", str(p.connections), p.keyway)
        for p in report.chat
        if p.keyway.redis is not None
    ]
    runs += [(f"cost: {c.label}", str(c.run.connections), c.run) for c in report.costs]
    return runs


def _share(run: LoadRun) -> str:
    k = run.keys
    if k is None or k.requests == 0:
        return "-"
    return (
        f"{k.max_over_mean:.2f} / {k.min_over_mean:.2f} "
        f"({k.keys_used}/{k.pool_keys} keys, {k.requests:,} req)"
    )


def _kib(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:+,.0f}"


def _redis_row(what: str, conns: str, run: LoadRun) -> list[str]:
    r = run.redis
    if r is None:
        return [what, conns, _num(run.rps), *["-"] * 11]
    return [
        what,
        conns,
        _num(run.rps),
        _num(r.calls_per_request, 2),
        _num(r.command_us_per_request, 1),
        _num(r.in_scripts_us_per_request, 1),
        _num(r.cpu_us_per_request, 1),
        _num(r.cpu_pct),
        _num(r.ceiling_rps),
        _num(r.command_ceiling_rps),
        _kib(r.memory_growth_bytes_per_min),
        "-" if r.keys_growth is None else f"{r.keys_growth:+,}",
        _share(run),
    ]


_REDIS_HEADER = [
    "run",
    "conns",
    "Keyway req/s",
    "commands sent/req",
    "Redis command µs/req",
    "of which in scripts' calls",
    "Redis CPU µs/req",
    "Redis CPU %",
    "one-shard ceiling req/s (CPU)",
    "ceiling req/s (commands)",
    "Redis memory KiB/min",
    "keys added",
    "key share: max / min of mean (keys used, requests)",
]


def _cost_summary(costs: Sequence[CostPoint]) -> list[str]:
    """Sentences comparing the cost pools: limited vs unlimited, small vs large pools."""
    by = {(c.limited, c.pool_keys): c.run.redis for c in costs}
    sizes = sorted({c.pool_keys for c in costs})
    lines = []

    def us(limited: bool, size: int) -> float | None:
        r = by.get((limited, size))
        return None if r is None else r.command_us_per_request

    def cpu(limited: bool, size: int) -> float | None:
        r = by.get((limited, size))
        return None if r is None else r.cpu_us_per_request

    for size in sizes:
        a, b = us(True, size), us(False, size)
        if a and b:
            lines.append(
                f"- {size} keys: limited {a:.1f} µs/req in Redis commands vs unlimited {b:.1f} "
                f"(x{a / b:.2f}); Redis CPU {cpu(True, size) or 0:.1f} vs "
                f"{cpu(False, size) or 0:.1f} µs/req."
            )
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        for limited in (True, False):
            a, b = us(limited, small), us(limited, large)
            if a and b:
                lines.append(
                    f"- {'limited' if limited else 'unlimited'}: {small} keys {a:.1f} µs/req vs "
                    f"{large} keys {b:.1f} (x{b / a:.2f}); Redis CPU {cpu(limited, small) or 0:.1f}"
                    f" vs {cpu(limited, large) or 0:.1f} µs/req."
                )
    return lines


def _command_table(columns: Sequence[tuple[str, LoadRun]], top: int = 14) -> list[str]:
    """Per-command breakdown (calls/req and µs/call) of a few runs side by side."""
    runs = [(name, run.redis) for name, run in columns if run.redis and run.redis.commands]
    if not runs:
        return []
    totals: dict[str, float] = {}
    for _, r in runs:
        for cmd, use in r.commands.items():
            totals[cmd] = max(totals.get(cmd, 0.0), use.usec_per_request)
    names = sorted(totals, key=lambda n: totals[n], reverse=True)[:top]
    header = ["command", *[f"{name}: calls/req, µs/call, µs/req" for name, _ in runs]]
    rows = []
    for cmd in names:
        inner = any(r.commands[cmd].in_scripts for _, r in runs if cmd in r.commands)
        cells = [f"{cmd} (in scripts)" if inner else cmd]
        for _, r in runs:
            got = r.commands.get(cmd)
            cells.append(
                "-"
                if got is None
                else f"{got.calls_per_request:.2f}, {got.usec_per_call:.2f}, "
                f"{got.usec_per_request:.1f}"
            )
        rows.append(cells)
    return _table(header, "l" + "r" * len(runs), rows)


def _redis_section(report: Report) -> list[str]:
    runs = _redis_runs(report)
    if not runs:
        return []
    lines = [
        "## Redis per request (shared state)",
        "",
        "Redis command µs/req: `INFO commandstats` microseconds of the commands Keyway sent "
        "(each EVALSHA with every command its script ran), over the requests completed. The "
        "commands a script calls are counted again under their own names; that part is the "
        "next column, not added twice. Redis CPU µs/req: `INFO cpu` (user + system) of "
        "redis-server, which adds reading, parsing and answering the sockets. One-shard "
        "ceiling: 10⁶ / µs per request, what one Redis core would carry for the whole fleet "
        "(the CPU figure is the realistic one; the commands-only one is an upper bound). "
        "Memory KiB/min: `used_memory` growth over the run scaled to a minute; a run shorter "
        "than the 60 s windows mostly shows them filling. Key share: requests of the busiest "
        "and of the idlest key over the mean, from the fake provider's counts (1.00 / 1.00 is "
        "even).",
        "",
    ]
    lines += _table(_REDIS_HEADER, "lrrrrrrrrrrrl", (_redis_row(*r) for r in runs))
    lines.append("")
    summary = _cost_summary(report.costs)
    if summary:
        lines += ["Compared at the same load:", "", *summary, ""]
    columns = [(c.label, c.run) for c in report.costs]
    if not columns:
        busiest = max(
            (p for p in report.chat if p.keyway.redis is not None),
            key=lambda p: (p.upstream_latency_ms == 0, p.connections),
            default=None,
        )
        if busiest is not None:
            columns = [(f"{busiest.scenario} c={busiest.connections}", busiest.keyway)]
    table = _command_table(columns)
    if table:
        lines += [
            "Redis commands by name (INFO commandstats; INFO itself left out; "
            '"in scripts": run by a Lua script, its time already inside EVALSHA\'s):',
            "",
            *table,
            "",
        ]
    return lines


def _scaling_section(report: Report) -> list[str]:
    points = report.scaling
    if not points:
        return []
    rows = []
    for sp in points:
        r, run = sp.run.redis, sp.run
        rows.append(
            [
                str(sp.replicas),
                str(run.connections),
                _num(run.rps),
                _num(run.rps / sp.replicas),
                f"{_ms(run.latency.p50_ms)} / {_ms(run.latency.p99_ms)}",
                _num(run.server_cpu_pct),
                _num(r.cpu_us_per_request if r else None, 1),
                _num(r.command_us_per_request if r else None, 1),
                _num(r.cpu_pct if r else None),
                _num(sp.load_core_busy_pct),
                _num(r.ceiling_rps if r else None),
                sp.verdict,
            ]
        )
    lines = ["## Scaling: replicas against one Redis", ""]
    lines += _table(
        [
            "replicas",
            "conns",
            "fleet req/s",
            "per replica",
            "p50 / p99 ms",
            "Keyway CPU % (all replicas)",
            "Redis CPU µs/req",
            "Redis command µs/req",
            "Redis CPU %",
            "load CPU busy %",
            "one-shard ceiling req/s",
            "bottleneck",
        ],
        "rrrrrrrrrrrl",
        rows,
    )
    lines.append("")
    info = report.info
    first = points[0]
    cores = first.gateway_cores
    if info.cpus <= 2 or cores < max(sp.replicas for sp in points):
        lines += [
            f"**The replicas share {cores:g} CPU(s)** on this {info.cpus}-CPU machine: "
            "adding replicas adds no CPU, so fleet req/s cannot grow with the replica count "
            "here. What carries over to a real fleet is Redis's cost per request and how busy "
            "Redis was: the fleet's ceiling is the one-shard ceiling while the replicas each "
            "have their own cores.",
            "",
        ]
    r1 = first.run.redis
    worker_rps = first.run.cpu_bound_rps
    if r1 is not None and r1.ceiling_rps:
        line = (
            f"Projection: at {r1.cpu_us_per_request:.0f} µs of Redis CPU per request "
            f"({first.replicas} replica(s)), one Redis core carries about "
            f"{r1.ceiling_rps:,.0f} req/s for the whole fleet"
        )
        if worker_rps and first.run.server_cpu_us_per_request:
            cores = r1.ceiling_rps / worker_rps
            line += (
                f"; a Keyway core serves about {worker_rps:,.0f} req/s at the "
                f"{first.run.server_cpu_us_per_request:,.0f} µs of Keyway CPU per request "
                f"measured here, so one Redis shard feeds about {cores:.1f} Keyway cores "
                "before Redis is the bottleneck"
            )
        lines += [line + ".", ""]
    return lines


def _peer_row(name: str, version: str, run: LoadRun, note: str = "") -> list[str]:
    errors = run.non_2xx + run.socket_errors
    return [
        name,
        version or "-",
        str(run.connections),
        _num(run.rps),
        f"{_ms(run.latency.p50_ms)} / {_ms(run.latency.p99_ms)}",
        _num(run.server_cpu_us_per_request),
        _num(run.others_on_core_pct),
        "; ".join(x for x in (f"{errors} errors" if errors else "", note) if x) or "-",
    ]


def _peer_section(report: Report) -> list[str]:
    peers = report.peers
    if not peers:
        return []
    connections = max((p.run.connections for p in peers if p.run), default=None)
    rows = []
    mine = [p for p in report.chat if p.upstream_latency_ms == 0 and p.connections == connections]
    if mine:
        limits = "limited" if "limited:" in report.info.limits else "unlimited"
        rows.append(
            _peer_row(
                f"Keyway ({limits}, {report.info.pool_keys} keys)", "this tree", mine[0].keyway
            )
        )
    for c in report.costs:
        if not c.limited and c.run.connections == connections:
            rows.append(_peer_row(f"Keyway ({c.label})", "this tree", c.run))
    for peer in peers:
        if peer.run is None:
            rows.append([peer.name, peer.version or "-", "-", "-", "-", "-", "-",
                         f"skipped: {peer.skipped}"])  # fmt: skip
        else:
            rows.append(_peer_row(peer.name, peer.version, peer.run, "no limits, no budgets"))
    if mine:
        rows.append(_peer_row("direct (the fake provider)", "-", mine[0].direct, "no gateway"))
    lines = [
        "## Peers on the same fake provider (0 ms upstream, wrk chat scenario)",
        "",
        "Every gateway runs pinned to Keyway's CPU, one process (LiteLLM: 1 worker), against the "
        "same fake provider; CPU µs/req is the gateway's own process tree. Peers run with their "
        "defaults: no rate limits, budgets or spend accounting.",
        "",
    ]
    lines += _table(
        [
            *("gateway", "version", "conns", "req/s", "p50 / p99 ms", "CPU µs/req"),
            *("others on the core %", "notes"),
        ],
        "llrrrrrl",
        rows,
    )
    lines.append("")
    return lines


def _stream_rows(points: Sequence[StreamPoint]) -> list[list[str]]:
    rows = []
    for s in points:
        k, d = s.keyway, s.direct
        rows.append(
            [
                str(s.concurrency),
                _num(k.streams_per_s),
                _num(d.streams_per_s),
                _num(k.chunks_per_s),
                _num(d.chunks_per_s),
                f"{_ms(k.ttft.p50_ms)} / {_ms(k.ttft.p99_ms)}",
                f"{_ms(d.ttft.p50_ms)} / {_ms(d.ttft.p99_ms)}",
                _signed(s.added_ttft_p50_ms),
                _signed(s.added_ttft_p99_ms),
                f"{_ms(k.total.p50_ms)} / {_ms(d.total.p50_ms)}",
                _num(k.server_cpu_us_per_stream),
                _num(k.others_on_core_pct),
                f"{k.errors} / {d.errors}",
            ]
        )
    return rows


def _overload_lines(o: Overload) -> list[str]:
    k = o.keyway
    statuses = ", ".join(f"{n:,} x {s}" for s, n in sorted(k.statuses.items())) or "none"
    retry_values = sorted({r.retry_after or "MISSING" for r in o.sample if r.status == 429})
    lines = [
        f"{len(o.keys)} keys, {o.keys[0].limit if o.keys else 0} rpm each (capacity "
        f"{o.capacity} requests per {o.window_s:g} s window), {k.connections} connections for "
        f"{k.duration_s:.1f} s.",
        "",
        f"- Keyway: {k.rps:,.0f} req/s; responses: {statuses}; p50 {_ms(k.latency.p50_ms)} ms, "
        f"p99 {_ms(k.latency.p99_ms)} ms; 429s without Retry-After: {k.retry_after_missing}.",
        f"- Direct (same load, no limits): {o.direct.rps:,.0f} req/s, p50 "
        f"{_ms(o.direct.latency.p50_ms)} ms, p99 {_ms(o.direct.latency.p99_ms)} ms.",
        f"- Sampled after the run with the asyncio client: {len(o.sample)} responses, statuses "
        f"{sorted({r.status for r in o.sample})}, Retry-After values {retry_values}.",
        "",
    ]
    lines += _table(
        ["upstream key", "limit (rpm)", "requests it received", "within limit"],
        "lrrl",
        (
            [c.key_id, str(c.limit), str(c.requests), "yes" if c.requests <= c.limit else "**NO**"]
            for c in o.keys
        ),
    )
    return lines


def _busiest_neighbour(report: Report) -> float | None:
    """The most CPU other processes took on Keyway's core during any measured Keyway run."""
    runs = [p.keyway for p in report.chat] + [s.keyway for s in report.streams]
    runs += [c.run for c in report.costs] + [sp.run for sp in report.scaling]
    found = [r.others_on_core_pct for r in runs if r.others_on_core_pct is not None]
    return max(found, default=None)


def render_markdown(report: Report) -> str:
    """The whole report as Markdown."""
    info = report.info
    lines = [
        "# Keyway load test"
        + (" (smoke run: checks only, timings meaningless)" if info.smoke else ""),
        "",
        f"- date: {info.date}; command: `{info.command}`",
        f"- machine: {info.cpu}, {info.cpus} CPUs; {info.pinning}",
        (
            f"- Keyway: {', '.join(map(str, info.scaling))} replica(s) in turn (scaling run)"
            if info.scaling
            else f"- Keyway: {info.replicas} replica(s)"
        )
        + f" x {info.workers_per_replica} worker(s)"
        + (", behind haproxy" if info.haproxy else ", no load balancer")
        + (f"; upstream client `{info.upstream_client}`" if info.upstream_client else ""),
        f"- {info.duration_s:g} s per measured run; python {info.python}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(info.versions.items())),
        f"- load average at start / end: {', '.join(f'{x:.2f}' for x in info.load_avg_start)}"
        f" / {', '.join(f'{x:.2f}' for x in info.load_avg_end)}",
    ]
    if info.limits:
        lines.append(f"- throughput pools: {info.pool_keys} keys each; {info.limits}")
    lines.append("")
    shared = _busiest_neighbour(report)
    if shared is not None and shared >= 10:
        lines += [
            f"**The machine was shared**: other processes used up to {shared:.0f} % of Keyway's "
            'core during a measured run (column "others on Keyway\'s core"). Latency and req/s '
            "suffer from it; CPU µs per request and the CPU-bound req/s per core do not.",
            "",
        ]
    figures = report.targets or target_figures(report)
    if figures:
        lines += ["## Against the targets", ""]
        lines += _table(
            ["target", "measured", "met"],
            "lrl",
            ([f.target, f.measured, "yes" if f.met else "no"] for f in figures),
        )
        lines.append("")
    if report.chat:
        lines += ["## Non-streaming chat completions (wrk)", ""]
        lines += _table(
            [
                "upstream",
                "conns",
                "Keyway req/s",
                "per worker",
                "direct req/s",
                "Keyway p50 / p90 / p99 ms",
                "direct p50 / p90 / p99 ms",
                "added p50 ms",
                "added p99 ms",
                "errors K / D",
            ],
            "lrrrrrrrrr",
            _chat_rows(report.chat),
        )
        lines += ["", "Cost per request (Keyway runs; direct CPU is the fake provider's):", ""]
        lines += _table(
            [
                "upstream",
                "conns",
                "Keyway CPU µs/req",
                "Keyway CPU use %",
                "others on Keyway's core %",
                "CPU-bound req/s per core",
                "direct CPU µs/req",
                "EVALSHA/req",
                "Redis reads/req",
                "Redis commands/req",
                "Redis CPU µs/req",
            ],
            "lrrrrrrrrrr",
            _cost_rows(report.chat),
        )
        lines += ["", *_command_lines(report.chat), ""]
    lines += _redis_section(report)
    lines += _scaling_section(report)
    lines += _peer_section(report)
    if report.streams:
        lines += ["## Streaming chat completions (asyncio client)", ""]
        lines += _table(
            [
                "streams at once",
                "Keyway streams/s",
                "direct streams/s",
                "Keyway chunks/s",
                "direct chunks/s",
                "Keyway TTFT p50 / p99 ms",
                "direct TTFT p50 / p99 ms",
                "added TTFT p50 ms",
                "added TTFT p99 ms",
                "stream p50 ms K / D",
                "Keyway CPU µs/stream",
                "others on Keyway's core %",
                "errors K / D",
            ],
            "rrrrrrrrrrrrr",
            _stream_rows(report.streams),
        )
        lines.append("")
    if report.overload is not None:
        lines += ["## Overload: a pool of tight keys", "", *_overload_lines(report.overload), ""]
    if report.memory:
        lines += ["## Memory", ""]
        lines += _table(
            ["replica", "RSS after start-up MiB", "RSS after the runs MiB", "workers MiB"],
            "rrrl",
            (
                [
                    str(m.replica),
                    f"{m.rss_start_mib:.1f}",
                    f"{m.rss_end_mib:.1f}",
                    ", ".join(f"{w:.1f}" for w in m.worker_rss_end_mib),
                ]
                for m in report.memory
            ),
        )
        lines.append("")
    if report.profile:
        lines += ["## Profile of a Keyway worker (py-spy, separate pass)", ""]
        lines += _table(
            ["function", "self %", "total %"],
            "lrr",
            (
                [h.function.replace("|", "\\|"), f"{h.self_pct:.1f}", f"{h.total_pct:.1f}"]
                for h in report.profile
            ),
        )
        lines.append("")
    lines += ["## Checks", ""]
    lines += [f"- FAILED: {f}" for f in report.failures]
    lines += [f"- {'ok' if c.ok else 'FAILED'}: {c.name} ({c.detail})" for c in report.checks]
    return "\n".join(lines) + "\n"


def plot_latency(report: Report, path: Path) -> None:
    """Latency percentiles against concurrency, Keyway and direct, one panel per scenario."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable("matplotlib is not installed (pip install matplotlib)") from exc
    panels: list[tuple[str, list[tuple[int, float, float, float, float]]]] = []
    for scenario in dict.fromkeys(p.scenario for p in report.chat):
        points = [p for p in report.chat if p.scenario == scenario]
        panels.append(
            (
                f"{scenario} (wrk)",
                [
                    (
                        p.connections,
                        p.keyway.latency.p50_ms,
                        p.keyway.latency.p99_ms,
                        p.direct.latency.p50_ms,
                        p.direct.latency.p99_ms,
                    )
                    for p in points
                ],
            )
        )
    if report.streams:
        panels.append(
            (
                "streaming: time to first token",
                [
                    (
                        s.concurrency,
                        s.keyway.ttft.p50_ms,
                        s.keyway.ttft.p99_ms,
                        s.direct.ttft.p50_ms,
                        s.direct.ttft.p99_ms,
                    )
                    for s in report.streams
                ],
            )
        )
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 4))
    for ax, (title, rows) in zip([axes] if len(panels) <= 1 else axes, panels, strict=False):
        xs = [r[0] for r in rows]
        for column, label, style in (
            (1, "Keyway p50", "C0-o"),
            (2, "Keyway p99", "C0--o"),
            (3, "direct p50", "C1-s"),
            (4, "direct p99", "C1--s"),
        ):
            ax.plot(xs, [r[column] for r in rows], style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_yscale("log")
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel("latency (ms)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(
        f"Keyway vs direct, {report.info.replicas}x{report.info.workers_per_replica} "
        f"worker(s), {report.info.date}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: Report, out_dir: Path, *, png_required: bool) -> list[Path]:
    """Write the three files; without matplotlib, fail unless `png_required` is False."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")
    md_path = out_dir / "results.md"
    md_path.write_text(render_markdown(report))
    written = [json_path, md_path]
    png_path = out_dir / "latency.png"
    try:
        plot_latency(report, png_path)
        written.append(png_path)
    except PlotUnavailable:
        if png_required:
            raise
    return written


def load_report(path: Path) -> Report:
    """A results.json read back."""
    return _decoder.decode(path.read_bytes())
