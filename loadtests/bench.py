"""The scenarios of a run, each measured through Keyway and sent directly to the fake provider.

A measured run is: an optional wrk warm-up, counters read (CPU of the serving processes, Redis
INFO, the fake provider's requests per key), the load, a short pause for the background
settles, counters read again. The direct run of a pair goes to the same fake provider with the
same body, so the difference between the two is what Keyway adds on this machine, in this run.
The Redis-cost scenario has no direct pair: it loads pools of different sizes, limited and
unlimited, one after the other, to compare what each costs Redis per request.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import redis

from loadtests.meters import (
    RedisCounters,
    ServerMeter,
    Spent,
    cpu_busy_seconds,
    key_counts,
    key_fairness,
    read_redis_counters,
    redis_spent,
    rss_bytes,
    script_command_names,
    tree,
    wait_for_quiet,
)
from loadtests.profile import hot_spots
from loadtests.results import (
    CommandUse,
    CostPoint,
    HotSpot,
    KeyCount,
    KeyShare,
    LoadPoint,
    LoadRun,
    Overload,
    RedisUse,
    ReplicaMemory,
    Report,
    SampledResponse,
    StreamPoint,
    StreamRun,
    latency_of,
)
from loadtests.stack import Pinning, Proc
from loadtests.streams import run, run_streams, sample_responses
from loadtests.topology import DIRECT_KEY, DIRECT_MODEL, Aliases, Topology, UpstreamKey
from loadtests.wrk import WrkOutput, run_wrk

__all__ = ["Bench", "Options"]

CHAT_PATH = "/v1/chat/completions"
SETTLE_PAUSE_S = 0.3
"""Settles run after the response; wait for them before reading the counters again."""
OVERLOAD_WINDOW_S = 60.0
_MIB = 1024 * 1024
_stats_decoder = msgspec.json.Decoder(dict[str, object])


@dataclass(frozen=True, slots=True)
class Options:
    smoke: bool
    duration_s: int
    connections: tuple[int, ...]
    warmup_s: int
    overload_sample: int = 20
    profile_s: int = 0
    quiet_wait_s: float = 0.0
    """Before each measured run, wait up to this long for the machine to be idle."""
    costs: bool = True
    """Run the Redis-cost comparison over the topology's cost pools."""


class Bench:
    """Runs the scenarios against a started topology and fills a report."""

    def __init__(
        self, opts: Options, topo: Topology, pinning: Pinning, log: Callable[[str], None]
    ) -> None:
        self.opts = opts
        self.topo = topo
        self.pinning = pinning
        self.log = log
        self.redis = redis.Redis.from_url(topo.redis_url)
        self._rss_start = [self._replica_rss(r) for r in topo.replicas]
        self._gateway_core = None if pinning.gateway is None else int(pinning.gateway)
        self._load_core = None if pinning.load is None else int(pinning.load)
        self._script_calls = script_command_names()

    # -- one measured run ------------------------------------------------------------------

    def _endpoint(
        self, target: str, fake: Proc, alias: str, client: str | None = None
    ) -> tuple[str, str, str]:
        if target == "keyway":
            return self.topo.front.url + CHAT_PATH, client or self.topo.client_key, alias
        return fake.url + CHAT_PATH, DIRECT_KEY, DIRECT_MODEL

    def _await_quiet(self) -> None:
        if self.opts.quiet_wait_s <= 0:
            return
        waited, busy = wait_for_quiet(self.opts.quiet_wait_s)
        if busy > 15:
            self.log(f"  (machine still {busy:.0f}% busy after waiting {waited:.0f} s; going on)")
        elif waited >= 1:
            self.log(f"  (waited {waited:.0f} s for the machine to be idle)")

    def _meter(self, target: str, fake: Proc) -> ServerMeter:
        """CPU of the serving processes (and, for Keyway, of its neighbours on its core)."""
        if target == "keyway":
            return ServerMeter(self.topo.gateway_pids(), self._gateway_core)
        return ServerMeter(tree(fake.pid), None)

    def load(
        self,
        target: str,
        fake: Proc,
        alias: str,
        connections: int,
        *,
        scenario: str = "chat",
        warmup: bool = True,
        duration_s: int | None = None,
        client: str | None = None,
    ) -> LoadRun:
        url, auth, model = self._endpoint(target, fake, alias, client)
        env = {"KW_AUTH": auth, "KW_MODEL": model}
        self._await_quiet()
        wrk_args = {
            "scenario": scenario,
            "env": env,
            "connections": connections,
            "cpus": self.pinning.load,
        }
        if warmup and self.opts.warmup_s > 0:
            run_wrk(url, duration_s=self.opts.warmup_s, **wrk_args)  # type: ignore[arg-type]
        pool = self.topo.pools.get(alias, []) if target == "keyway" else []
        counts_before = _fake_counts(fake) if pool else {}
        meter = self._meter(target, fake)
        load_busy = cpu_busy_seconds(self._load_core) if self._load_core is not None else None
        redis_before = read_redis_counters(self.redis) if target == "keyway" else None
        out = run_wrk(url, duration_s=duration_s or self.opts.duration_s, **wrk_args)  # type: ignore[arg-type]
        time.sleep(SETTLE_PAUSE_S)
        spent_cpu = meter.stop()
        load_busy_pct = (
            None
            if load_busy is None or self._load_core is None
            else _pct(cpu_busy_seconds(self._load_core) - load_busy, spent_cpu.wall_s)
        )
        served = max(1, out.requests)
        use = None
        if redis_before is not None:
            spent = (read_redis_counters(self.redis) - redis_before).without_probe()
            # no request completed: there is nothing to divide by (the run's 2xx check fails)
            use = self._redis_use(spent, served) if out.requests > 0 else None
        result = _load_run(
            target,
            connections,
            out,
            spent_cpu,
            statuses=out.statuses,
            retry_after_missing=out.retry_after_missing,
            redis=use,
            keys=_key_share(pool, counts_before, _fake_counts(fake)) if pool else None,
            load_core_busy_pct=load_busy_pct,
        )
        redis_note = (
            f"  Redis {use.command_us_per_request:.0f} µs/req in commands, "
            f"{use.cpu_us_per_request:.0f} µs/req CPU"
            if use is not None and use.command_us_per_request is not None
            else ""
        )
        self.log(
            _run_line(f"{target:6}", result) + redis_note + _others_note(result.others_on_core_pct)
        )
        return result

    def load_url(
        self,
        url: str,
        auth: str,
        model: str,
        connections: int,
        *,
        pids: list[int],
        headers: str = "",
        label: str = "peer",
    ) -> LoadRun:
        """The chat scenario against any OpenAI-compatible URL (a peer gateway), measured like
        a Keyway run: CPU of `pids` and their descendants, and of others on Keyway's core."""
        env = {"KW_AUTH": auth, "KW_MODEL": model, "KW_HEADERS": headers}
        self._await_quiet()
        wrk_args = {"scenario": "chat", "env": env, "connections": connections,
                    "cpus": self.pinning.load}  # fmt: skip
        if self.opts.warmup_s > 0:
            run_wrk(url, duration_s=self.opts.warmup_s, **wrk_args)  # type: ignore[arg-type]
        meter = ServerMeter([p for pid in pids for p in tree(pid)], self._gateway_core)
        out = run_wrk(url, duration_s=self.opts.duration_s, **wrk_args)  # type: ignore[arg-type]
        time.sleep(SETTLE_PAUSE_S)
        spent_cpu = meter.stop()
        result = _load_run(label, connections, out, spent_cpu)
        self.log(_run_line(f"{label:10}", result))
        return result

    def _redis_use(self, spent: RedisCounters, served: int) -> RedisUse:
        """Per-request Redis figures of one run's counter difference."""
        split = redis_spent(spent, self._script_calls)
        wall = max(spent.at_s, 1e-9)
        cpu_us_total = spent.cpu_s * 1e6
        ranked = sorted(split.by_command.items(), key=lambda item: item[1][1], reverse=True)
        return RedisUse(
            evalsha_per_request=spent.evalsha_calls / served,
            commands_per_request=spent.commands / served,
            reads_per_request=spent.reads / served,
            cpu_us_per_request=spent.cpu_s * 1e6 / served,
            commands_by_name=spent.top_commands(served),
            command_us_per_request=split.top_level_usec / served,
            calls_per_request=split.top_level_calls / served,
            in_scripts_us_per_request=split.in_scripts_usec / served,
            cpu_pct=100 * spent.cpu_s / wall,
            memory_growth_bytes=spent.used_memory,
            memory_growth_bytes_per_min=spent.used_memory * 60 / wall,
            keys_growth=spent.keys,
            ceiling_rps=1e6 * served / cpu_us_total if cpu_us_total > 0 else None,
            command_ceiling_rps=1e6 * served / split.top_level_usec
            if split.top_level_usec
            else None,
            commands={
                name: CommandUse(
                    calls_per_request=calls / served,
                    usec_per_call=usec / calls,
                    usec_per_request=usec / served,
                    in_scripts=inner,
                )
                for name, (calls, usec, inner) in ranked
            },
        )

    def streams(self, target: str, concurrency: int) -> StreamRun:
        fake = self.topo.instant
        url, auth, model = self._endpoint(target, fake, Aliases.INSTANT)
        self._await_quiet()
        if self.opts.warmup_s > 0:
            run(run_streams(url, auth, model, concurrency=concurrency, duration_s=1.0))
        meter = self._meter(target, fake)
        samples, elapsed = run(
            run_streams(url, auth, model, concurrency=concurrency, duration_s=self.opts.duration_s)
        )
        time.sleep(SETTLE_PAUSE_S)
        spent_cpu = meter.stop()
        good = [s for s in samples if s.ok]
        result = StreamRun(
            target=target,
            concurrency=concurrency,
            streams=len(good),
            errors=len(samples) - len(good),
            duration_s=elapsed,
            streams_per_s=len(good) / elapsed,
            chunks_per_s=sum(s.chunks for s in good) / elapsed,
            ttft=latency_of([s.ttft_s for s in good]),
            total=latency_of([s.total_s for s in good]),
            server_cpu_us_per_stream=spent_cpu.cpu_s * 1e6 / max(1, len(samples)),
            others_on_core_pct=_pct(spent_cpu.others_s, spent_cpu.wall_s),
        )
        self.log(
            f"  {target:6} c={concurrency:<3} {result.streams_per_s:8.0f} streams/s  TTFT p50 "
            f"{result.ttft.p50_ms:7.2f} ms  p99 {result.ttft.p99_ms:7.2f} ms  errors {result.errors}"
            + _others_note(result.others_on_core_pct)
        )
        return result

    # -- scenarios --------------------------------------------------------------------------

    def chat(self, scenario: str, fake: Proc, alias: str, upstream_ms: float) -> list[LoadPoint]:
        points = []
        for c in self.opts.connections:
            self.log(f"{scenario}, {c} connection(s)")
            direct = self.load("direct", fake, alias, c)
            keyway = self.load("keyway", fake, alias, c)
            points.append(
                LoadPoint(
                    scenario=scenario,
                    upstream_latency_ms=upstream_ms,
                    connections=c,
                    workers=len(self.topo.replicas) * self.topo.workers,
                    keyway=keyway,
                    direct=direct,
                )
            )
        return points

    def cost_points(self) -> list[CostPoint]:
        """Each cost pool (limited / unlimited, small / large) at the largest connection count."""
        points = []
        connections = max(self.opts.connections)
        for pool in self.topo.costs:
            self.log(f"redis cost: {pool.label}, {connections} connection(s)")
            run_ = self.load(
                "keyway", self.topo.instant, pool.alias, connections, client=pool.client_key
            )
            points.append(
                CostPoint(
                    label=pool.label, limited=pool.limited, pool_keys=len(pool.keys), run=run_
                )
            )
        return points

    def stream_points(self) -> list[StreamPoint]:
        points = []
        for c in self.opts.connections:
            self.log(f"streaming, {c} concurrent stream(s)")
            direct = self.streams("direct", c)
            keyway = self.streams("keyway", c)
            points.append(StreamPoint(concurrency=c, keyway=keyway, direct=direct))
        return points

    def overload(self) -> Overload:
        """The tight pool under the largest connection count, for less than its window."""
        fake = self.topo.instant
        connections = max(self.opts.connections)
        duration = min(self.opts.duration_s, int(OVERLOAD_WINDOW_S) - 10)
        self.log(f"overload, {connections} connection(s)")
        _post(fake.url + "/_fake/reset")
        keyway = self.load(
            "keyway",
            fake,
            Aliases.OVERLOAD,
            connections,
            scenario="overload",
            warmup=False,
            duration_s=duration,
        )
        url, auth, model = self._endpoint("keyway", fake, Aliases.OVERLOAD)
        sample = run(sample_responses(url, auth, model, self.opts.overload_sample))
        counts = _fake_counts(fake)
        keys = [
            KeyCount(key_id=k.id, limit=k.rpm or 0, requests=counts.get(k.masked, 0))
            for k in self.topo.overload_keys
        ]
        direct = self.load(
            "direct",
            fake,
            Aliases.OVERLOAD,
            connections,
            scenario="overload",
            warmup=False,
            duration_s=duration,
        )
        return Overload(
            keys=keys,
            window_s=OVERLOAD_WINDOW_S,
            keyway=keyway,
            direct=direct,
            sample=[SampledResponse(status=s, retry_after=r) for s, r in sample],
        )

    def memory(self) -> list[ReplicaMemory]:
        found = []
        for i, replica in enumerate(self.topo.replicas):
            workers = tree(replica.pid)[1:]
            found.append(
                ReplicaMemory(
                    replica=i,
                    rss_start_mib=self._rss_start[i] / _MIB,
                    rss_end_mib=self._replica_rss(replica) / _MIB,
                    worker_rss_end_mib=[rss_bytes(w) / _MIB for w in workers],
                )
            )
        return found

    def profile(self, out_dir: Path) -> list[HotSpot]:
        """py-spy on replica 0 under the instant scenario at the largest connection count.

        A separate pass: sampling slows the worker, so none of the measured figures comes from it.
        """
        binary = shutil.which("py-spy")
        if binary is None:
            self.log("py-spy is not installed (pip install py-spy): no profile")
            return []
        seconds = self.opts.profile_s
        raw = out_dir / "profile.txt"
        argv = [
            *self.pinning.prefix(self.pinning.load),
            binary,
            "record",
            "--pid",
            str(self.topo.replicas[0].pid),
            "--subprocesses",
            "--nonblocking",
            "--format",
            "raw",
            "--rate",
            "100",
            "--duration",
            str(seconds),
            "-o",
            str(raw),
        ]
        self.log(f"profiling replica 0 for {seconds} s (py-spy)")
        with open(out_dir / "py-spy.log", "wb") as log:
            spy = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            try:
                time.sleep(1.0)
                self.load(
                    "keyway",
                    self.topo.instant,
                    Aliases.INSTANT,
                    max(self.opts.connections),
                    warmup=False,
                    duration_s=seconds,
                )
                spy.wait(timeout=seconds + 30)
            finally:
                if spy.poll() is None:
                    spy.kill()
                    spy.wait()
        if not raw.exists():
            self.log(f"py-spy wrote no profile (see {out_dir / 'py-spy.log'})")
            return []
        return hot_spots(raw.read_text())

    def run_into(self, report: Report, out_dir: Path) -> None:
        """Every scenario, in order; one that raises is recorded and the others still run."""
        topo = self.topo
        steps: list[tuple[str, Callable[[], None]]] = [
            (
                "chat-0ms",
                lambda: report.chat.extend(
                    self.chat("chat-0ms", topo.instant, Aliases.INSTANT, 0.0)
                ),
            ),
            (
                "chat-50ms",
                lambda: report.chat.extend(self.chat("chat-50ms", topo.slow, Aliases.SLOW, 50.0)),
            ),
            ("streaming", lambda: report.streams.extend(self.stream_points())),
            ("overload", lambda: setattr(report, "overload", self.overload())),
        ]
        if self.opts.costs and topo.costs:
            steps.append(("redis cost", lambda: report.costs.extend(self.cost_points())))
        for name, step in steps:
            try:
                step()
            except Exception as exc:
                report.failures.append(f"{name}: {type(exc).__name__}: {exc}")
                self.log(f"{name} FAILED: {exc}")
            for proc in [topo.redis, topo.instant, topo.slow, *topo.replicas]:
                if proc.popen.poll() is not None:
                    report.failures.append(f"{proc.name} exited during {name}:\n{proc.log_tail()}")
                    return
        report.memory = self.memory()
        if self.opts.profile_s > 0:
            try:
                report.profile = self.profile(out_dir)
            except Exception as exc:
                self.log(f"profile failed: {exc}")

    @staticmethod
    def _replica_rss(replica: Proc) -> int:
        return sum(rss_bytes(pid) for pid in tree(replica.pid))


def _load_run(
    target: str, connections: int, out: WrkOutput, spent_cpu: Spent, **extra: Any
) -> LoadRun:
    """A wrk run's figures with the CPU its serving processes spent (`extra`: the rest)."""
    return LoadRun(
        target=target,
        connections=connections,
        requests=out.requests,
        duration_s=out.duration_s,
        rps=out.rps,
        latency=out.latency,
        socket_errors=out.socket_errors,
        non_2xx=out.non_2xx,
        server_cpu_us_per_request=spent_cpu.cpu_s * 1e6 / max(1, out.requests),
        server_cpu_pct=100 * spent_cpu.cpu_s / spent_cpu.wall_s,
        others_on_core_pct=_pct(spent_cpu.others_s, spent_cpu.wall_s),
        **extra,
    )


def _run_line(label: str, result: LoadRun) -> str:
    return (
        f"  {label} c={result.connections:<3} {result.rps:8.0f} req/s  p50 "
        f"{result.latency.p50_ms:7.2f} ms  p99 {result.latency.p99_ms:7.2f} ms  "
        f"non-2xx {result.non_2xx}  errors {result.socket_errors}"
    )


def _pct(seconds: float | None, wall_s: float) -> float | None:
    return None if seconds is None else 100 * seconds / max(wall_s, 1e-9)


def _others_note(pct: float | None) -> str:
    return f"  (others used {pct:.0f}% of Keyway's core)" if pct is not None and pct >= 5 else ""


def _fake_counts(fake: Proc) -> dict[str, int]:
    """Requests by masked key the fake provider has seen so far."""
    return key_counts(_stats_decoder.decode(_get(fake.url + "/_fake/stats")))


def _key_share(pool: list[UpstreamKey], before: dict[str, int], after: dict[str, int]) -> KeyShare:
    counts = [after.get(k.masked, 0) - before.get(k.masked, 0) for k in pool]
    high, low = key_fairness(counts)
    return KeyShare(
        pool_keys=len(pool),
        keys_used=sum(1 for c in counts if c > 0),
        requests=sum(counts),
        max_over_mean=high,
        min_over_mean=low,
    )


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        body: bytes = r.read()
    return body


def _post(url: str) -> None:
    req = urllib.request.Request(
        url, data=b"{}", method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        r.read()
