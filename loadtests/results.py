"""The results of a load-test run as data: what was measured, what it adds up to, what passed.

Everything here is plain msgspec Structs, written to ``results.json`` as is and read back by
the report. Derived figures (added latency, figures against the issue's targets, pass/fail
checks) are pure functions of the measurements, so they are tested without running anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

__all__ = [
    "Check",
    "CommandUse",
    "CostPoint",
    "HotSpot",
    "KeyCount",
    "KeyShare",
    "Latency",
    "LoadPoint",
    "LoadRun",
    "Overload",
    "PeerRun",
    "RedisUse",
    "ReplicaMemory",
    "Report",
    "RunInfo",
    "SampledResponse",
    "ScalePoint",
    "StreamPoint",
    "StreamRun",
    "TargetFigure",
    "bottleneck",
    "checks",
    "latency_of",
    "percentile",
    "target_figures",
]


class Latency(msgspec.Struct, frozen=True, kw_only=True):
    """Latency percentiles of one run, in milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


class CommandUse(msgspec.Struct, frozen=True, kw_only=True):
    """One command of ``INFO commandstats`` over a measured run."""

    calls_per_request: float
    usec_per_call: float
    usec_per_request: float
    in_scripts: bool = False
    """A command Keyway's Lua scripts call: its time is already inside EVALSHA's."""


class RedisUse(msgspec.Struct, frozen=True, kw_only=True):
    """Redis work per request served, from INFO before and after the run."""

    evalsha_per_request: float
    """Lua scripts run per request (acquire, client admit, settle, ...)."""
    commands_per_request: float
    """Every command, those run inside the scripts included."""
    reads_per_request: float
    """Socket read events per request: about the number of round trips (a pipeline is one)."""
    cpu_us_per_request: float
    """redis-server CPU per request (INFO cpu: user + system of the process)."""
    commands_by_name: dict[str, float] = {}
    """The most frequent commands per request (inside scripts included), most frequent first."""
    command_us_per_request: float | None = None
    """INFO commandstats: microseconds of the commands Keyway sent (each script with everything
    it called), per request. Time inside commands only: reading, parsing and answering the
    sockets is not in it, so it is below `cpu_us_per_request`."""
    calls_per_request: float | None = None
    """Commands Keyway sent per request (an EVALSHA counts once, whatever it calls)."""
    in_scripts_us_per_request: float | None = None
    """Of `command_us_per_request`, the time of the commands the scripts called; the rest is
    the Lua interpreter and script set-up."""
    cpu_pct: float | None = None
    """redis-server CPU over the run's wall time: 100 is one core kept busy."""
    memory_growth_bytes: int | None = None
    """``used_memory`` after the run minus before it."""
    memory_growth_bytes_per_min: float | None = None
    """That growth scaled to a minute of this load."""
    keys_growth: int | None = None
    """Keys in Redis after the run minus before it."""
    ceiling_rps: float | None = None
    """The projected single-shard ceiling: 10⁶ / `cpu_us_per_request`, the requests per second
    one Redis core could carry for the whole fleet at this cost."""
    command_ceiling_rps: float | None = None
    """10⁶ / `command_us_per_request`: the same from the commands' time alone, an upper bound
    (reading and answering the sockets not counted)."""
    commands: dict[str, CommandUse] = {}
    """Every command of the run, by name, most time first (INFO excluded)."""


class KeyShare(msgspec.Struct, frozen=True, kw_only=True):
    """How a pool's requests spread over its keys, from the fake provider's counts per key."""

    pool_keys: int
    keys_used: int
    """Keys that got at least one request."""
    requests: int
    """Requests the fake provider saw on the pool's keys during the run."""
    max_over_mean: float
    """The busiest key's share over the mean share (1.0: perfectly even)."""
    min_over_mean: float
    """The idlest key's share over the mean share (0: a key got nothing)."""


class LoadRun(msgspec.Struct, frozen=True, kw_only=True):
    """One wrk run against one target."""

    target: str
    """"keyway" or "direct" (the fake provider itself)."""
    connections: int
    requests: int
    duration_s: float
    rps: float
    latency: Latency
    socket_errors: int
    """Connect, read, write errors and timeouts."""
    non_2xx: int
    statuses: dict[str, int] = {}
    """Responses by status (the overload scenario counts them; the others do not)."""
    retry_after_missing: int = 0
    """429 responses without a Retry-After header."""
    server_cpu_us_per_request: float | None = None
    """CPU of the serving processes: every Keyway replica for keyway, the fake for direct."""
    server_cpu_pct: float | None = None
    """That CPU time over the run's wall time: 100 is one core kept busy. Well under 100 with
    the load not keeping up means the serving processes waited for a CPU shared with others."""

    others_on_core_pct: float | None = None
    """CPU time other processes used on Keyway's pinned core, over wall time (keyway runs with
    pinning only): what a shared machine took from Keyway; 0 on a quiet one."""

    @property
    def cpu_bound_rps(self) -> float | None:
        """Requests per second one core could serve at this CPU cost per request."""
        cpu = self.server_cpu_us_per_request
        return 1e6 / cpu if cpu else None

    redis: RedisUse | None = None
    keys: KeyShare | None = None
    """The spread over the pool's keys (Keyway runs on a pool the fake provider counts)."""
    load_core_busy_pct: float | None = None
    """How busy the CPU of wrk, the fake providers, Redis and haproxy was (pinned runs only)."""


class LoadPoint(msgspec.Struct, kw_only=True):
    """The same wrk scenario through Keyway and sent directly to the fake provider."""

    scenario: str
    upstream_latency_ms: float
    connections: int
    workers: int
    """Keyway worker processes in total (replicas x workers)."""
    keyway: LoadRun
    direct: LoadRun
    added_p50_ms: float = 0.0
    """Keyway p50 minus direct p50 (computed)."""
    added_p99_ms: float = 0.0
    rps_per_worker: float = 0.0
    """Keyway requests/s divided by its workers (computed)."""

    def __post_init__(self) -> None:
        self.added_p50_ms = self.keyway.latency.p50_ms - self.direct.latency.p50_ms
        self.added_p99_ms = self.keyway.latency.p99_ms - self.direct.latency.p99_ms
        self.rps_per_worker = self.keyway.rps / max(1, self.workers)


class StreamRun(msgspec.Struct, frozen=True, kw_only=True):
    """Streams read by the asyncio client from one target at one concurrency."""

    target: str
    concurrency: int
    streams: int
    errors: int
    duration_s: float
    streams_per_s: float
    chunks_per_s: float
    ttft: Latency
    """Time to the first SSE event (the first token) after the request was sent."""
    total: Latency
    """Time to the end of the stream."""
    server_cpu_us_per_stream: float | None = None
    others_on_core_pct: float | None = None
    """As in LoadRun: other processes' CPU on Keyway's pinned core, over wall time."""


class StreamPoint(msgspec.Struct, kw_only=True):
    concurrency: int
    keyway: StreamRun
    direct: StreamRun
    added_ttft_p50_ms: float = 0.0
    """Keyway TTFT p50 minus direct TTFT p50 (computed)."""
    added_ttft_p99_ms: float = 0.0

    def __post_init__(self) -> None:
        self.added_ttft_p50_ms = self.keyway.ttft.p50_ms - self.direct.ttft.p50_ms
        self.added_ttft_p99_ms = self.keyway.ttft.p99_ms - self.direct.ttft.p99_ms


class KeyCount(msgspec.Struct, frozen=True, kw_only=True):
    """Requests one upstream key received during the overload run, against its limit."""

    key_id: str
    limit: int
    requests: int


class SampledResponse(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    retry_after: str | None


class Overload(msgspec.Struct, frozen=True, kw_only=True):
    """A pool of keys with tight rpm limits, loaded far past them."""

    keys: list[KeyCount]
    window_s: float
    """The limits' window: the run is shorter, so no key may exceed its limit."""
    keyway: LoadRun
    direct: LoadRun
    sample: list[SampledResponse]
    """Responses read by the asyncio client right after the run (the pool is still full)."""

    @property
    def capacity(self) -> int:
        return sum(k.limit for k in self.keys)


class ReplicaMemory(msgspec.Struct, frozen=True, kw_only=True):
    replica: int
    rss_start_mib: float
    """After start-up and warm-up, before the first measured run (all processes of the replica)."""
    rss_end_mib: float
    """After the last run."""
    worker_rss_end_mib: list[float]
    """Each Granian worker process after the last run."""


class HotSpot(msgspec.Struct, frozen=True, kw_only=True):
    """One function of the py-spy profile of a Keyway worker under load."""

    function: str
    self_pct: float
    total_pct: float


class CostPoint(msgspec.Struct, frozen=True, kw_only=True):
    """The Redis-cost comparison: one pool (limited or not, n keys) at the largest load."""

    label: str
    """e.g. "limited, 200 keys"."""
    limited: bool
    pool_keys: int
    run: LoadRun


class ScalePoint(msgspec.Struct, frozen=True, kw_only=True):
    """The scaling run: N replicas behind haproxy, one Redis, the 0 ms pool."""

    replicas: int
    workers: int
    """Granian workers per replica."""
    run: LoadRun
    """Fleet figures: requests of all replicas, CPU of all replica processes."""
    gateway_cores: float
    """CPUs the replicas may use (1 when pinned to one CPU)."""
    load_core_busy_pct: float | None = None
    """How busy the CPU of wrk, haproxy, the fake provider and Redis was (pinned runs)."""
    verdict: str = ""
    """Where the bottleneck is (see `bottleneck`)."""


class PeerRun(msgspec.Struct, frozen=True, kw_only=True):
    """Another gateway (LiteLLM, TensorZero, Portkey) on the same fake provider, or why not."""

    name: str
    version: str = ""
    run: LoadRun | None = None
    skipped: str = ""
    """Why it did not run (not installed, did not start, ...)."""


class Check(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    ok: bool
    detail: str = ""


class RunInfo(msgspec.Struct, frozen=True, kw_only=True):
    date: str
    command: str
    smoke: bool
    cpu: str
    cpus: int
    pinning: str
    python: str
    versions: dict[str, str]
    load_avg_start: list[float]
    load_avg_end: list[float] = []
    replicas: int
    workers_per_replica: int
    haproxy: bool
    duration_s: float
    connections: list[int]
    stream_chunks: int
    upstream_client: str = ""
    """The transport Keyway called the fake provider with (KEYWAY_UPSTREAM_CLIENT or the default)."""
    limits: str = ""
    """What the throughput pools and their client key are limited to (limited or --unlimited)."""
    pool_keys: int = 4
    """Keys in each throughput pool (--pool-keys)."""
    redis_meters: bool = False
    """The run read INFO commandstats per measured run: the checks then require the figure."""
    scaling: list[int] = []
    """--scaling: the replica counts compared (the run did nothing else)."""


class TargetFigure(msgspec.Struct, frozen=True, kw_only=True):
    """One of the issue's targets and what this run measured for it."""

    target: str
    measured: str
    met: bool


class Report(msgspec.Struct, kw_only=True):
    info: RunInfo
    chat: list[LoadPoint] = []
    streams: list[StreamPoint] = []
    overload: Overload | None = None
    costs: list[CostPoint] = []
    """The Redis-cost comparison: limited vs unlimited, small vs large pools."""
    scaling: list[ScalePoint] = []
    """--scaling: 1, 2, 4 ... replicas against one Redis."""
    peers: list[PeerRun] = []
    """--peers: other gateways on the same fake provider."""
    memory: list[ReplicaMemory] = []
    profile: list[HotSpot] = []
    failures: list[str] = []
    """Scenarios that raised instead of producing a result."""
    targets: list[TargetFigure] = []
    checks: list[Check] = []

    @property
    def ok(self) -> bool:
        return not self.failures and all(c.ok for c in self.checks)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_of(seconds: Sequence[float]) -> Latency:
    """Percentiles, in ms, of durations given in seconds."""
    values = sorted(s * 1000 for s in seconds)
    return Latency(
        p50_ms=percentile(values, 50),
        p90_ms=percentile(values, 90),
        p99_ms=percentile(values, 99),
        mean_ms=sum(values) / len(values) if values else 0.0,
        max_ms=values[-1] if values else 0.0,
    )


def target_figures(report: Report) -> list[TargetFigure]:
    """The issue's targets (1 worker, instant upstream), for the points this run measured."""
    figures: list[TargetFigure] = []
    instant = [p for p in report.chat if p.upstream_latency_ms == 0]
    one = next((p for p in instant if p.connections == 1), None)
    if one is not None:
        figures.append(
            TargetFigure(
                target="added p50 latency at 1 connection <= 1 ms",
                measured=f"{one.added_p50_ms:.2f} ms",
                met=one.added_p50_ms <= 1.0,
            )
        )
    busy = next((p for p in instant if p.connections == 32), None)
    if busy is not None:
        figures.append(
            TargetFigure(
                target=">= 1,500 req/s per worker at 32 connections",
                measured=f"{busy.rps_per_worker:,.0f} req/s",
                met=busy.rps_per_worker >= 1500,
            )
        )
    stream = next((s for s in report.streams if s.concurrency == 1), None)
    if stream is not None:
        figures.append(
            TargetFigure(
                target="streaming adds <= 1 ms to time-to-first-token (p50, 1 stream at a time)",
                measured=f"{stream.added_ttft_p50_ms:.2f} ms",
                met=stream.added_ttft_p50_ms <= 1.0,
            )
        )
    return figures


REDIS_BOUND_PCT = 85.0
GATEWAY_BOUND_PCT = 85.0
LOAD_CORE_BOUND_PCT = 90.0


def bottleneck(
    run: LoadRun, gateway_cores: float, load_core_busy_pct: float | None, shared_cpus: bool
) -> str:
    """Where a fleet run's ceiling is, from how busy Redis, the replicas and the load CPU were.

    Redis first (one core for the whole fleet), then the replicas' CPU (counting what other
    processes took of it: on a shared machine that is CPU the replicas did not get), then the
    CPU of the load generator side.
    """
    use = run.redis
    redis_pct = use.cpu_pct if use is not None else None
    redis_note = f"Redis at {redis_pct:.0f}% of a core" if redis_pct is not None else "Redis -"
    gateway_pct = run.server_cpu_pct or 0.0
    others_pct = run.others_on_core_pct or 0.0
    gateway_note = f"the replicas at {gateway_pct:.0f}% of {gateway_cores:g} core(s)" + (
        f" (other processes took {others_pct:.0f}%)" if others_pct >= 5 else ""
    )
    if redis_pct is not None and redis_pct >= REDIS_BOUND_PCT:
        return f"Redis bound: {redis_note}, {gateway_note}"
    if gateway_pct + others_pct >= GATEWAY_BOUND_PCT * gateway_cores:
        where = " (the replicas share it)" if shared_cpus else ""
        return f"gateway CPU bound{where}: {gateway_note}; {redis_note}"
    if load_core_busy_pct is not None and load_core_busy_pct >= LOAD_CORE_BOUND_PCT:
        return (
            f"load CPU bound (wrk, haproxy, the fake provider and Redis share a CPU, "
            f"{load_core_busy_pct:.0f}% busy): {gateway_note}; {redis_note}"
        )
    return f"not CPU bound (more connections would load it further): {gateway_note}; {redis_note}"


def _clean(run: LoadRun, name: str) -> Check:
    bad = run.socket_errors + run.non_2xx
    return Check(
        name=name,
        ok=run.requests > 0 and bad == 0,
        detail=f"{run.requests} requests, {run.non_2xx} non-2xx, {run.socket_errors} socket errors",
    )


def checks(report: Report) -> list[Check]:
    """What must hold for the run to pass; timings are never among them."""
    found: list[Check] = []
    for p in report.chat:
        label = f"{p.scenario} at {p.connections} connections"
        found.append(_clean(p.keyway, f"{label}: Keyway answers every request with 2xx"))
        found.append(_clean(p.direct, f"{label}: the fake provider answers every request with 2xx"))
    for s in report.streams:
        for run in (s.keyway, s.direct):
            found.append(
                Check(
                    name=f"streams at concurrency {s.concurrency}: {run.target} completes every stream",
                    ok=run.streams > 0 and run.errors == 0,
                    detail=f"{run.streams} streams, {run.errors} errors",
                )
            )
    overload = report.overload
    if overload is not None:
        found.extend(_overload_checks(overload))
    for c in report.costs:
        found.append(
            _clean(c.run, f"redis cost ({c.label}): Keyway answers every request with 2xx")
        )
    for sp in report.scaling:
        found.append(
            _clean(
                sp.run, f"scaling, {sp.replicas} replica(s): Keyway answers every request with 2xx"
            )
        )
    for peer in report.peers:
        if peer.run is not None:
            found.append(_clean(peer.run, f"peer {peer.name}: answers every request with 2xx"))
    if report.info.redis_meters:
        found.append(_redis_meter_check(report))
    return found


def _redis_meter_check(report: Report) -> Check:
    """Every Keyway run with Redis behind it got a commandstats figure: the meter works."""
    runs = (
        [(f"{p.scenario} c={p.connections}", p.keyway) for p in report.chat]
        + [(f"cost {c.label}", c.run) for c in report.costs]
        + [(f"scaling x{s.replicas}", s.run) for s in report.scaling]
    )
    missing = [
        name
        for name, run in runs
        if run.redis is None or not (run.redis.command_us_per_request or 0) > 0
    ]
    measured = [
        f"{name} {run.redis.command_us_per_request:.1f}"
        for name, run in runs
        if run.redis is not None and run.redis.command_us_per_request
    ]
    return Check(
        name="redis meters: INFO commandstats gave a command µs/request > 0 for every Keyway run",
        ok=bool(runs) and not missing,
        detail=("missing: " + ", ".join(missing))
        if missing
        else "µs/request: " + ", ".join(measured[:8]) + (" ..." if len(measured) > 8 else ""),
    )


def _overload_checks(o: Overload) -> list[Check]:
    statuses = o.keyway.statuses
    ok_count = sum(n for s, n in statuses.items() if s.startswith("2"))
    limited = statuses.get("429", 0)
    other = sum(n for s, n in statuses.items() if s != "429" and not s.startswith("2"))
    over = [f"{k.key_id}: {k.requests} > {k.limit}" for k in o.keys if k.requests > k.limit]
    upstream = sum(k.requests for k in o.keys)
    sampled_429 = [r for r in o.sample if r.status == 429]
    answered = ok_count + sum(1 for r in o.sample if 200 <= r.status < 300)
    return [
        _clean(o.direct, "overload: the fake provider answers every direct request with 2xx"),
        Check(
            name="overload: Keyway answers 200 while keys have room, then 429",
            ok=ok_count > 0 and limited > 0 and other == 0 and o.keyway.socket_errors == 0,
            detail=f"{ok_count} 2xx, {limited} 429, {other} other, "
            f"{o.keyway.socket_errors} socket errors",
        ),
        Check(
            name="overload: every 429 carries Retry-After",
            ok=o.keyway.retry_after_missing == 0 and all(r.retry_after for r in sampled_429),
            detail=f"{o.keyway.retry_after_missing} of {limited} without it under wrk; "
            f"{len(sampled_429)} sampled 429s",
        ),
        Check(
            name="overload: no upstream key got more than its limit",
            ok=not over,
            detail="; ".join(over)
            or ", ".join(f"{k.key_id} {k.requests}/{k.limit}" for k in o.keys),
        ),
        # wrk stops with up to one request per connection in flight: Keyway may have sent
        # those upstream while wrk never counted their answers
        Check(
            name="overload: each 2xx took one upstream request, each 429 none",
            ok=0 <= upstream - answered <= o.keyway.connections,
            detail=f"{upstream} upstream requests for {answered} 2xx (wrk and the sample; "
            f"up to {o.keyway.connections} more may be cut off when wrk stops)",
        ),
    ]
