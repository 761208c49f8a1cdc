"""One command for the load test: start everything, run the scenarios, write the report.

    python loadtests/run.py [--smoke] [--out DIR] [--replicas N] [--haproxy] [--workers W]
                            [--duration S] [--connections 1,32] [--profile S] [--no-pin]
                            [--unlimited] [--pool-keys N] [--cost-pools 4,200]
                            [--scaling 1,2,4] [--peers]

Starts its own redis-server, two fake providers (0 ms and 50 ms), N Keyway replicas (and
haproxy in front with --haproxy or N > 1), runs every scenario through Keyway and directly
against the fake provider, and writes results.json, results.md and latency.png to --out
(default loadtests/results/<timestamp>/). With --scaling it runs only the scaling comparison
(1, 2, 4 ... replicas against one Redis). Exits 1 if a check failed (non-2xx where none is
expected, a key over its limit, a 429 without Retry-After, no Redis figure, a missing report
file), 2 if the stack did not start, 130 on Ctrl-C; every process it started is stopped in
every case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import signal
import sys
from importlib import metadata
from pathlib import Path
from types import FrameType

import msgspec

if __package__ in (None, ""):
    # run as a script: make the repository importable as it is for `python -m loadtests.run`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from gateway.providers.transport import DEFAULT_KIND
from loadtests.bench import Bench, Options
from loadtests.peers import run_peers
from loadtests.report import PlotUnavailable, load_report, write_report
from loadtests.results import Report, RunInfo, checks, target_figures
from loadtests.scaling import run_scaling
from loadtests.stack import ROOT, Pinning, Stack, StartupError
from loadtests.topology import cost_pools, describe_limits, overload_pool, start_topology

__all__ = ["main", "parse_args"]

_PACKAGES = ("granian", "litestar", "msgspec", "redis", "hiredis", "httptools", "aiohttp", "uvloop")


def _connections(text: str) -> tuple[int, ...]:
    values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def _sizes(text: str) -> tuple[int, ...]:
    """Pool sizes for --cost-pools: positive integers, or 0 / "" for none."""
    try:
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError as exc:
        raise argparse.ArgumentTypeError("a comma-separated list of integers") from exc
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("pool sizes must be >= 1 (0 for none)")
    return tuple(v for v in values if v > 0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python loadtests/run.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="short CI run (2 s points, 1 and 4 connections): checks, not timings",
    )
    parser.add_argument(
        "--out", type=Path, help="report directory (default loadtests/results/<timestamp>)"
    )
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="Granian workers per replica")
    parser.add_argument(
        "--haproxy", action="store_true", help="put haproxy in front of the replicas"
    )
    parser.add_argument(
        "--duration", type=int, help="seconds per measured run (default 10, smoke 2)"
    )
    parser.add_argument(
        "--connections", type=_connections, help="concurrency levels (default 1,32; smoke 1,4)"
    )
    parser.add_argument(
        "--warmup", type=int, help="seconds of warm-up per run (default 1, smoke 0)"
    )
    parser.add_argument("--stream-chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--overload-keys", type=int, default=4)
    parser.add_argument(
        "--overload-rpm", type=int, help="rpm of each overload key (default 60, smoke 5)"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="S",
        help="after the runs, py-spy a worker for S seconds under load",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        metavar="S",
        help="before each measured run, wait up to S s for an idle machine (default 30, smoke 0)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--unlimited",
        action="store_true",
        help="throughput pools and client key without limits, budgets or prices (the old "
        "configuration; default: limited as production configs are, never reached)",
    )
    parser.add_argument(
        "--pool-keys",
        type=int,
        default=4,
        metavar="N",
        help="keys in each throughput pool (default 4)",
    )
    parser.add_argument(
        "--cost-pools",
        type=_sizes,
        default=(4, 200),
        metavar="LIST",
        help="pool sizes of the Redis-cost comparison, each limited and unlimited, at the "
        "largest connection count (default 4,200; 0 skips it)",
    )
    parser.add_argument(
        "--scaling",
        type=_connections,
        metavar="LIST",
        help="run only the scaling comparison: these replica counts behind haproxy, one Redis "
        "(e.g. 1,2,4)",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also load the other gateways found installed (LiteLLM, TensorZero, Portkey) on "
        "the same fake provider; absent ones are listed as skipped",
    )
    args = parser.parse_args(argv)
    if args.replicas < 1 or args.workers < 1:
        parser.error("--replicas and --workers must be >= 1")
    if args.pool_keys < 1:
        parser.error("--pool-keys must be >= 1")
    return args


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _verify(paths: list[Path]) -> list[str]:
    """What is wrong with the written files (they exist, results.json parses, numbers are numbers)."""
    problems = []
    for path in paths:
        if not path.exists() or path.stat().st_size == 0:
            problems.append(f"{path} is missing or empty")
    json_path = next((p for p in paths if p.name == "results.json"), None)
    if json_path is not None and json_path.exists():
        try:
            load_report(json_path)
        except Exception as exc:
            problems.append(f"{json_path} does not parse: {exc}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    smoke = args.smoke
    opts = Options(
        smoke=smoke,
        duration_s=args.duration or (2 if smoke else 10),
        connections=args.connections or ((1, 4) if smoke else (1, 32)),
        warmup_s=args.warmup if args.warmup is not None else (0 if smoke else 1),
        overload_sample=5 if smoke else 20,
        profile_s=args.profile,
        quiet_wait_s=args.quiet_wait if args.quiet_wait is not None else (0 if smoke else 30),
        costs=bool(args.cost_pools),
    )
    limited = not args.unlimited
    now = dt.datetime.now(dt.UTC)
    out: Path = args.out or ROOT / "loadtests" / "results" / now.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    haproxy = args.haproxy or args.replicas > 1
    pinning = Pinning.for_machine(not args.no_pin)
    pinning.pin_self()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # also when started in the background (SIG_IGN)
    report = Report(
        info=RunInfo(
            date=now.strftime("%Y-%m-%d %H:%M UTC"),
            command="python "
            + shlex.join(["loadtests/run.py", *(sys.argv[1:] if argv is None else argv)]),
            smoke=smoke,
            cpu=_cpu_model(),
            cpus=os.cpu_count() or 1,
            pinning=pinning.describe(),
            python=platform.python_version(),
            versions=_versions(),
            load_avg_start=list(os.getloadavg()),
            replicas=max(args.scaling) if args.scaling else args.replicas,
            workers_per_replica=args.workers,
            haproxy=haproxy or bool(args.scaling),
            duration_s=opts.duration_s,
            connections=list(opts.connections),
            stream_chunks=args.stream_chunks,
            upstream_client=os.environ.get("KEYWAY_UPSTREAM_CLIENT") or DEFAULT_KIND,
            limits=describe_limits(limited),
            pool_keys=args.pool_keys,
            redis_meters=True,
            scaling=list(args.scaling or ()),
        )
    )
    overload_keys = overload_pool(args.overload_keys, args.overload_rpm or (5 if smoke else 60))
    _log(f"load test: {out} ({pinning.describe()})")
    try:
        if args.scaling:
            report.scaling = run_scaling(
                args.scaling,
                opts=opts,
                out=out,
                pinning=pinning,
                workers=args.workers,
                stream_chunks=args.stream_chunks,
                overload_keys=overload_keys,
                pool_size=args.pool_keys,
                limited=limited,
                log=_log,
            )
        else:
            with Stack(out / "logs", pinning) as stack:
                topo = start_topology(
                    stack,
                    replicas=args.replicas,
                    workers=args.workers,
                    haproxy=haproxy,
                    stream_chunks=args.stream_chunks,
                    overload_keys=overload_keys,
                    pool_size=args.pool_keys,
                    limited=limited,
                    costs=cost_pools(args.cost_pools),
                )
                bench = Bench(opts, topo, pinning, _log)
                bench.run_into(report, out)
                if args.peers:
                    report.peers = run_peers(bench, out, _log)
                _log("stopping the processes")
    except KeyboardInterrupt:
        _log("interrupted: every process started was stopped; no report written")
        return 130
    except StartupError as exc:
        _log(f"the stack did not start: {exc}\n(logs in {out / 'logs'})")
        return 2
    report.info = msgspec.structs.replace(report.info, load_avg_end=list(os.getloadavg()))
    report.targets = target_figures(report)
    report.checks = checks(report)
    try:
        written = write_report(
            report, out, png_required=not smoke and bool(report.chat or report.streams)
        )
    except PlotUnavailable as exc:
        _log(f"cannot draw latency.png: {exc}")
        return 1
    if len(written) < 3:
        _log("matplotlib is not installed, so no latency.png was drawn")
    problems = _verify(written)
    for problem in problems:
        _log(f"report: {problem}")
    for failure in report.failures:
        _log(f"FAILED: {failure}")
    for check in report.checks:
        if not check.ok:
            _log(f"FAILED: {check.name} ({check.detail})")
    _log(f"report: {out / 'results.md'}")
    return 0 if report.ok and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
