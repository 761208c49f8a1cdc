"""The scaling run: 1, 2, 4 ... replicas behind haproxy against one Redis.

For each replica count, a fresh stack (Redis, the fake providers, N replicas, haproxy) takes the
0 ms pool at the largest connection count. The point is where the fleet's ceiling is: fleet
req/s, Keyway's CPU over all replicas, Redis's CPU per request and how busy Redis was (``INFO
cpu`` over wall time), and how busy the CPU of the load generator side was. On a machine with
few CPUs the replicas share them, so fleet req/s cannot grow; the Redis figures still say how
many replicas one Redis core would carry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from loadtests.bench import Bench, Options
from loadtests.results import ScalePoint, bottleneck
from loadtests.stack import Pinning, Stack
from loadtests.topology import Aliases, UpstreamKey, start_topology

__all__ = ["run_scaling"]


def run_scaling(
    counts: tuple[int, ...],
    *,
    opts: Options,
    out: Path,
    pinning: Pinning,
    workers: int,
    stream_chunks: int,
    overload_keys: list[UpstreamKey],
    pool_size: int,
    limited: bool,
    log: Callable[[str], None],
) -> list[ScalePoint]:
    """One stack per replica count, each loaded once; StartupError propagates."""
    points = []
    connections = max(opts.connections)
    gateway_cores = 1.0 if pinning.gateway is not None else float(os.cpu_count() or 1)
    for n in counts:
        log(
            f"scaling: {n} replica(s) x {workers} worker(s) behind haproxy, {connections} connections"
        )
        with Stack(out / "logs" / f"scaling-{n}", pinning) as stack:
            topo = start_topology(
                stack,
                replicas=n,
                workers=workers,
                haproxy=True,
                stream_chunks=stream_chunks,
                overload_keys=overload_keys,
                pool_size=pool_size,
                limited=limited,
            )
            bench = Bench(opts, topo, pinning, log)
            run = bench.load("keyway", topo.instant, Aliases.INSTANT, connections)
            shared = n * workers > gateway_cores
            points.append(
                ScalePoint(
                    replicas=n,
                    workers=workers,
                    run=run,
                    gateway_cores=gateway_cores,
                    load_core_busy_pct=run.load_core_busy_pct,
                    verdict=bottleneck(run, gateway_cores, run.load_core_busy_pct, shared),
                )
            )
            log(f"  -> {points[-1].verdict}")
    return points
