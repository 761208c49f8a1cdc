"""The load test's Redis meters (issue 16): commandstats split, key fairness, bottleneck, report."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.meters import (
    RedisCounters,
    key_counts,
    key_fairness,
    redis_spent,
    script_command_names,
)
from loadtests.report import load_report, render_markdown, write_report
from loadtests.results import (
    CommandUse,
    CostPoint,
    KeyShare,
    Latency,
    LoadRun,
    PeerRun,
    RedisUse,
    Report,
    RunInfo,
    ScalePoint,
    bottleneck,
    checks,
)
from loadtests.topology import cost_pools, overload_pool, render_config


def info(**extra: object) -> RunInfo:
    fields: dict[str, object] = dict(
        date="2026-01-01 00:00 UTC", command="python loadtests/run.py", smoke=False, cpu="test",
        cpus=2, pinning="pinned", python="3.11", versions={}, load_avg_start=[0.0, 0.0, 0.0],
        replicas=1, workers_per_replica=1, haproxy=False, duration_s=10, connections=[1, 32],
        stream_chunks=20,
    )  # fmt: skip
    fields.update(extra)
    return RunInfo(**fields)  # type: ignore[arg-type]


def redis_use(command_us: float | None, cpu_us: float = 100.0, cpu_pct: float = 20.0) -> RedisUse:
    return RedisUse(
        evalsha_per_request=1.0, commands_per_request=20.0, reads_per_request=1.0,
        cpu_us_per_request=cpu_us, command_us_per_request=command_us, calls_per_request=1.0,
        in_scripts_us_per_request=10.0, cpu_pct=cpu_pct, memory_growth_bytes=1024,
        memory_growth_bytes_per_min=6144.0, keys_growth=3,
        ceiling_rps=1e6 / cpu_us, command_ceiling_rps=1e6 / command_us if command_us else None,
        commands={"evalsha": CommandUse(calls_per_request=1.0, usec_per_call=50.0,
                                        usec_per_request=50.0),
                  "hget": CommandUse(calls_per_request=3.0, usec_per_call=1.0,
                                     usec_per_request=3.0, in_scripts=True)},
    )  # fmt: skip


def run(
    redis: RedisUse | None, *, cpu_pct: float = 50.0, requests: int = 1000, **extra: object
) -> LoadRun:
    lat = Latency(p50_ms=1.0, p90_ms=2.0, p99_ms=3.0, mean_ms=1.0, max_ms=4.0)
    fields: dict[str, object] = dict(
        target="keyway", connections=32, requests=requests, duration_s=10.0, rps=requests / 10,
        latency=lat, socket_errors=0, non_2xx=0, server_cpu_us_per_request=500.0,
        server_cpu_pct=cpu_pct, others_on_core_pct=0.0, redis=redis,
    )  # fmt: skip
    fields.update(extra)
    return LoadRun(**fields)  # type: ignore[arg-type]


def test_commandstats_split_does_not_count_script_calls_twice() -> None:
    before = RedisCounters(evalsha_calls=0, commands=0, reads=0, cpu_s=0.0,
                           calls_by_name={"evalsha": 0, "hget": 0, "info": 1, "ping": 0},
                           usec_by_name={"evalsha": 0, "hget": 0, "info": 10, "ping": 0})  # fmt: skip
    after = RedisCounters(evalsha_calls=10, commands=52, reads=11, cpu_s=0.002,
                          calls_by_name={"evalsha": 10, "hget": 40, "info": 2, "ping": 1},
                          usec_by_name={"evalsha": 900, "hget": 80, "info": 25, "ping": 2},
                          used_memory=5000, keys=7, at_s=2.0)  # fmt: skip
    spent = redis_spent((after - before).without_probe(), frozenset({"hget", "hset"}))
    assert spent.top_level_usec == 902  # evalsha (with its hgets inside) + ping; no INFO
    assert spent.top_level_calls == 11
    assert spent.in_scripts_usec == 80
    assert spent.by_command["hget"] == (40, 80, True)
    assert "info" not in spent.by_command


def test_script_command_names_are_read_from_the_lua_sources(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "a.lua").write_text("redis.call('HGET', k)\nredis.pcall(\"zadd\", k, 1, m)\n")
    (tmp_path / "lib" / "b.lua").write_text("local t = redis.call( 'TIME' )\n")
    assert script_command_names(tmp_path) == frozenset({"hget", "zadd", "time"})
    assert "hmget" in script_command_names()  # the real scripts


def test_key_fairness_is_max_and_min_over_the_mean() -> None:
    assert key_fairness([10, 10, 10, 10]) == (1.0, 1.0)
    assert key_fairness([30, 10, 0, 0]) == (3.0, 0.0)
    assert key_fairness([]) == (0.0, 0.0)
    assert key_counts({"requests_by_key": {"00000001": 3, "x": "bad"}}) == {"00000001": 3}


def test_bottleneck_names_redis_the_gateway_or_the_load_cpu() -> None:
    assert bottleneck(run(redis_use(100.0, cpu_pct=92.0)), 1.0, 50.0, False).startswith(
        "Redis bound"
    )
    verdict = bottleneck(run(redis_use(100.0, cpu_pct=12.0), cpu_pct=97.0), 1.0, 50.0, True)
    assert verdict.startswith("gateway CPU bound (the replicas share it)")
    assert "Redis at 12% of a core" in verdict
    assert bottleneck(run(redis_use(100.0), cpu_pct=40.0), 1.0, 95.0, False).startswith(
        "load CPU bound"
    )
    assert bottleneck(run(redis_use(100.0), cpu_pct=40.0), 1.0, 30.0, False).startswith(
        "not CPU bound"
    )


def test_the_redis_meter_check_requires_a_figure_for_every_keyway_run() -> None:
    costs = [CostPoint(label="limited, 4 keys", limited=True, pool_keys=4, run=run(redis_use(80.0))),
             CostPoint(label="unlimited, 4 keys", limited=False, pool_keys=4,
                       run=run(redis_use(None)))]  # fmt: skip
    report = Report(info=info(redis_meters=True), costs=costs)
    failed = {c.name: c.detail for c in checks(report) if not c.ok}
    assert list(failed) == [
        "redis meters: INFO commandstats gave a command µs/request > 0 for every Keyway run"
    ]
    assert "cost unlimited, 4 keys" in next(iter(failed.values()))
    report.costs = costs[:1]
    assert all(c.ok for c in checks(report))
    # an old report (no redis_meters) has no such check
    assert not [c for c in checks(Report(info=info())) if "redis meters" in c.name]


def test_report_renders_costs_scaling_and_peers(tmp_path: Path) -> None:
    share = KeyShare(pool_keys=200, keys_used=150, requests=1000, max_over_mean=2.5,
                     min_over_mean=0.0)  # fmt: skip
    costs = [
        CostPoint(label="limited, 4 keys", limited=True, pool_keys=4, run=run(redis_use(100.0))),
        CostPoint(label="limited, 200 keys", limited=True, pool_keys=200,
                  run=run(redis_use(400.0), keys=share)),
        CostPoint(label="unlimited, 4 keys", limited=False, pool_keys=4, run=run(redis_use(50.0))),
    ]  # fmt: skip
    scaling = [
        ScalePoint(replicas=n, workers=1, run=run(redis_use(100.0, cpu_us=200.0)),
                   gateway_cores=1.0, load_core_busy_pct=40.0, verdict="gateway CPU bound")
        for n in (1, 2)
    ]  # fmt: skip
    peers = [PeerRun(name="TensorZero", skipped="not installed"),
             PeerRun(name="LiteLLM", version="1.0", run=run(None, target="LiteLLM"))]  # fmt: skip
    report = Report(info=info(redis_meters=True, limits="limited: ...", scaling=[1, 2]),
                    costs=costs, scaling=scaling, peers=peers)  # fmt: skip
    report.checks = checks(report)
    text = render_markdown(report)
    assert "## Redis per request (shared state)" in text
    assert "- 4 keys: limited 100.0 µs/req in Redis commands vs unlimited 50.0 (x2.00)" in text
    assert "- limited: 4 keys 100.0 µs/req vs 200 keys 400.0 (x4.00)" in text
    assert "2.50 / 0.00 (150/200 keys, 1,000 req)" in text
    assert "| hget (in scripts) |" in text
    assert "## Scaling: replicas against one Redis" in text
    assert "**The replicas share 1 CPU(s)**" in text
    assert "one Redis core carries about 5,000 req/s" in text
    assert "| TensorZero | - | - | - | - | - | - | skipped: not installed |" in text
    write_report(report, tmp_path, png_required=False)
    back = load_report(tmp_path / "results.json")
    assert back.costs[1].run.keys == share
    assert back.scaling[0].run.redis is not None
    assert back.scaling[0].run.redis.ceiling_rps == pytest.approx(5000.0)
    assert (tmp_path / "results.md").read_text() == render_markdown(back)


def test_limited_config_sets_key_client_and_price_limits() -> None:
    text = render_config("http://a", "http://b", overload_keys=overload_pool(2, 5), pool_size=3,
                         limited=True, costs=cost_pools((2, 5)))  # fmt: skip
    assert "{id: i1, secret: sk-loadtest-01000001, rpm: 10000000, tpm: 10000000000}" in text
    assert "budget_daily_usd: 1000000.0, budget_monthly_usd: 30000000.0" in text
    assert "  bench-0ms: {input: 0.15, output: 0.6}" in text
    assert "  cost-limited-5: {input: 0.15, output: 0.6}" in text
    assert "cost-unlimited-5: {" not in text.split("prices:")[1]
    free = render_config("http://a", "http://b", overload_keys=overload_pool(2, 5), limited=False)
    assert "{id: i1, secret: sk-loadtest-01000001}" in free and "prices:" not in free
