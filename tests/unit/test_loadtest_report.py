"""The load test's report: wrk output parsing, derived figures, pass/fail checks, rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import report as report_module
from loadtests.meters import RedisCounters
from loadtests.profile import function_of, hot_spots
from loadtests.report import PlotUnavailable, load_report, render_markdown, write_report
from loadtests.results import (
    KeyCount,
    Latency,
    LoadPoint,
    LoadRun,
    Overload,
    RedisUse,
    Report,
    RunInfo,
    SampledResponse,
    StreamPoint,
    StreamRun,
    checks,
    latency_of,
    percentile,
    target_figures,
)
from loadtests.wrk import WrkError, parse_wrk_output

WRK_STDOUT = """Running 2s test @ http://127.0.0.1:19101/v1/chat/completions
  1 threads and 4 connections
  5676 requests in 2.10s, 4.31MB read
Requests/sec:   2703.53
WRK_RESULT {"requests":5676,"duration_us":2000000,"bytes":4522482,"errors":{"connect":0,"read":1,"write":0,"status":3,"timeout":2},"latency_us":{"p50":1414,"p90":2625,"p99":12229,"p999":25512,"mean":1719.4,"max":28498}}
"""

OVERLOAD_LINE = (
    'WRK_RESULT {"requests":100,"duration_us":1000000,"bytes":1,"errors":{"connect":0,"read":0,'
    '"write":0,"status":80,"timeout":0},"latency_us":{"p50":1,"p90":2,"p99":3,"p999":4,'
    '"mean":1.5,"max":5},"statuses":{"200":20,"429":80},"retry_after_missing":2}'
)


REDIS_USE = RedisUse(
    evalsha_per_request=2.0,
    commands_per_request=12.5,
    reads_per_request=2.0,
    cpu_us_per_request=30.0,
    commands_by_name={"hget": 8.0, "evalsha": 2.0},
)


def lat(p50: float, p99: float) -> Latency:
    return Latency(p50_ms=p50, p90_ms=(p50 + p99) / 2, p99_ms=p99, mean_ms=p50, max_ms=p99)


def load_run(target: str, p50: float, p99: float, rps: float, **extra: object) -> LoadRun:
    fields: dict[str, object] = {
        "target": target, "connections": 1, "requests": int(rps * 10), "duration_s": 10.0,
        "rps": rps, "latency": lat(p50, p99), "socket_errors": 0, "non_2xx": 0,
    }  # fmt: skip
    fields.update(extra)
    return LoadRun(**fields)  # type: ignore[arg-type]


def stream_run(target: str, ttft_p50: float) -> StreamRun:
    return StreamRun(
        target=target, concurrency=1, streams=100, errors=0, duration_s=10.0,
        streams_per_s=10.0, chunks_per_s=220.0, ttft=lat(ttft_p50, ttft_p50 * 3),
        total=lat(ttft_p50 * 2, ttft_p50 * 5),
    )  # fmt: skip


def info() -> RunInfo:
    return RunInfo(
        date="2026-01-01 00:00 UTC", command="python loadtests/run.py", smoke=False, cpu="test",
        cpus=2, pinning="not pinned", python="3.11", versions={}, load_avg_start=[0.0, 0.0, 0.0],
        replicas=1, workers_per_replica=1, haproxy=False, duration_s=10, connections=[1, 32],
        stream_chunks=20,
    )  # fmt: skip


def overload(*, key_requests: tuple[int, ...] = (60, 60), missing: int = 0) -> Overload:
    ok = sum(key_requests)
    keyway = load_run("keyway", 1.0, 2.0, 500.0, connections=32,
                      statuses={"200": ok, "429": 1000}, non_2xx=1000, retry_after_missing=missing)  # fmt: skip
    return Overload(
        keys=[KeyCount(key_id=f"t{i}", limit=60, requests=n) for i, n in enumerate(key_requests)],
        window_s=60.0, keyway=keyway, direct=load_run("direct", 0.5, 1.0, 5000.0),
        sample=[SampledResponse(status=429, retry_after="12")],
    )  # fmt: skip


def full_report() -> Report:
    return Report(
        info=info(),
        chat=[
            LoadPoint(scenario="chat-0ms", upstream_latency_ms=0.0, connections=1, workers=1,
                      keyway=load_run("keyway", 1.25, 4.0, 700.0),
                      direct=load_run("direct", 0.5, 2.0, 3000.0)),
            LoadPoint(scenario="chat-0ms", upstream_latency_ms=0.0, connections=32, workers=2,
                      keyway=load_run(
                    "keyway", 18.0, 40.0, 3200.0, server_cpu_us_per_request=625.0,
                    server_cpu_pct=200.0, redis=REDIS_USE,
                ),
                      direct=load_run("direct", 3.0, 9.0, 10000.0)),
        ],
        streams=[StreamPoint(concurrency=1, keyway=stream_run("keyway", 1.5),
                             direct=stream_run("direct", 1.0))],
        overload=overload(),
    )  # fmt: skip


def test_parse_wrk_output_reads_the_result_line() -> None:
    out = parse_wrk_output(WRK_STDOUT)
    assert out.requests == 5676
    assert out.rps == pytest.approx(2838.0)
    assert out.latency.p50_ms == pytest.approx(1.414)
    assert out.latency.p99_ms == pytest.approx(12.229)
    assert out.socket_errors == 3  # read + timeout; "status" errors are responses, counted apart
    assert out.non_2xx == 3
    assert out.statuses == {}


def test_parse_wrk_output_reads_the_overload_counts() -> None:
    out = parse_wrk_output("noise\n" + OVERLOAD_LINE + "\n")
    assert out.statuses == {"200": 20, "429": 80}
    assert out.retry_after_missing == 2


def test_parse_wrk_output_without_a_result_line_fails() -> None:
    with pytest.raises(WrkError, match="no result line"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")
    with pytest.raises(WrkError, match="unreadable"):
        parse_wrk_output('WRK_RESULT {"requests": "many"}')


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) == 0.0
    lat_ms = latency_of([0.001, 0.002, 0.003, 0.004])
    assert lat_ms.p50_ms == pytest.approx(2.0)
    assert lat_ms.max_ms == pytest.approx(4.0)


def test_points_compute_added_latency_and_rate_per_worker() -> None:
    point = full_report().chat[1]
    assert point.added_p50_ms == pytest.approx(15.0)
    assert point.added_p99_ms == pytest.approx(31.0)
    assert point.rps_per_worker == pytest.approx(1600.0)
    stream = full_report().streams[0]
    assert stream.added_ttft_p50_ms == pytest.approx(0.5)


def test_target_figures_say_which_targets_were_met() -> None:
    figures = {f.target: f for f in target_figures(full_report())}
    assert len(figures) == 3
    added = figures["added p50 latency at 1 connection <= 1 ms"]
    assert (added.measured, added.met) == ("0.75 ms", True)
    assert figures[">= 1,500 req/s per worker at 32 connections"].met is True
    assert figures["streaming adds <= 1 ms to time-to-first-token (p50, 1 stream at a time)"].met


def test_a_clean_run_passes_every_check() -> None:
    report = full_report()
    report.checks = checks(report)
    assert report.checks and all(c.ok for c in report.checks), report.checks
    assert report.ok


def test_non_2xx_in_a_throughput_run_fails_its_check() -> None:
    report = full_report()
    bad = load_run("keyway", 1.0, 2.0, 100.0, non_2xx=5)
    report.chat[0] = LoadPoint(scenario="chat-0ms", upstream_latency_ms=0.0, connections=1,
                               workers=1, keyway=bad, direct=report.chat[0].direct)  # fmt: skip
    report.checks = checks(report)
    failed = [c.name for c in report.checks if not c.ok]
    assert failed == ["chat-0ms at 1 connections: Keyway answers every request with 2xx"]
    assert not report.ok


def test_a_key_over_its_limit_fails_the_overload() -> None:
    report = full_report()
    report.overload = overload(key_requests=(60, 61))
    report.checks = checks(report)
    failed = {c.name: c.detail for c in report.checks if not c.ok}
    assert failed == {"overload: no upstream key got more than its limit": "t1: 61 > 60"}


def test_a_429_without_retry_after_fails_the_overload() -> None:
    report = full_report()
    report.overload = overload(missing=1)
    report.checks = checks(report)
    assert [c.name for c in report.checks if not c.ok] == [
        "overload: every 429 carries Retry-After"
    ]


def test_an_overload_that_never_limits_fails() -> None:
    report = full_report()
    o = overload()
    no_429 = load_run("keyway", 1.0, 2.0, 50.0, connections=32, statuses={"200": 120})
    report.overload = Overload(keys=o.keys, window_s=60.0, keyway=no_429, direct=o.direct,
                               sample=[])  # fmt: skip
    report.checks = checks(report)
    assert "overload: Keyway answers 200 while keys have room, then 429" in {
        c.name for c in report.checks if not c.ok
    }


def test_a_scenario_that_raised_fails_the_run() -> None:
    report = full_report()
    report.checks = checks(report)
    report.failures.append("streaming: WrkError: boom")
    assert not report.ok
    assert "- FAILED: streaming: WrkError: boom" in render_markdown(report)


def test_markdown_shows_both_targets_and_the_overhead() -> None:
    report = full_report()
    report.checks = checks(report)
    text = render_markdown(report)
    assert (
        "| 0 ms | 1 | 700 | 700 | 3,000 | 1.25 / 2.62 / 4.00 | 0.50 / 1.25 / 2.00 | +0.75 | +2.00 | 0 / 0 |"
        in text
    )
    assert "| 0 ms | 32 | 3,200 | 1,600 | 10,000 |" in text
    assert "| 0 ms | 32 | 625 | 200 | - | 1,600 | - | 2.00 | 2.00 | 12.5 | 30 |" in text
    assert (
        "(chat-0ms, 32 connections; those run inside scripts included): hget 8.0, evalsha 2.0."
        in text
    )
    assert "| t1 | 60 | 60 | yes |" in text
    assert "Retry-After values ['12']" in text
    assert "FAILED" not in text


def test_the_report_files_round_trip(tmp_path: Path) -> None:
    report = full_report()
    report.checks = checks(report)
    report.targets = target_figures(report)
    written = write_report(report, tmp_path, png_required=False)
    names = {p.name for p in written}
    assert {"results.json", "results.md"} <= names
    back = load_report(tmp_path / "results.json")
    assert back.chat[1].added_p50_ms == pytest.approx(15.0)
    assert back.overload is not None and back.overload.capacity == 120
    assert back.targets == report.targets
    assert (tmp_path / "results.md").read_text() == render_markdown(back)


def test_without_matplotlib_only_a_smoke_run_may_skip_the_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_matplotlib(report: Report, path: Path) -> None:
        raise PlotUnavailable("matplotlib is not installed")

    monkeypatch.setattr(report_module, "plot_latency", no_matplotlib)
    written = write_report(full_report(), tmp_path, png_required=False)
    assert [p.name for p in written] == ["results.json", "results.md"]
    with pytest.raises(PlotUnavailable):
        write_report(full_report(), tmp_path, png_required=True)


def test_hot_spots_rank_functions_by_self_time() -> None:
    collapsed = "\n".join([
        'process 10:"python -m gateway serve";run (asyncio/base_events.py:600);'
        "handle (gateway/api/openai_routes.py:40);encode (msgspec/json.py:3) 30",
        'process 10:"python -m gateway serve";run (asyncio/base_events.py:600);'
        "handle (gateway/api/openai_routes.py:41);execute (redis/client.py:9) 50",
        'process 10:"python -m gateway serve";run (asyncio/base_events.py:601) 20',
    ])  # fmt: skip
    spots = hot_spots(collapsed, top=2)
    assert [s.function for s in spots] == ["execute (redis/client.py)", "encode (msgspec/json.py)"]
    assert spots[0].self_pct == pytest.approx(50.0)
    assert spots[0].total_pct == pytest.approx(50.0)
    everything = {s.function: s for s in hot_spots(collapsed)}
    handle = everything.get("handle (api/openai_routes.py)")
    assert handle is None  # never innermost, so not a self-time hot spot
    assert everything["run (asyncio/base_events.py)"].total_pct == pytest.approx(100.0)


def test_function_of_merges_lines_and_shortens_paths() -> None:
    frame = "acquire (/usr/lib/python3.11/site-packages/gateway/state/store.py:123)"
    assert function_of(frame) == "acquire (state/store.py)"
    assert function_of("<module> (<string>:6)") == "<module> (<string>)"


def test_redis_counters_subtract_and_rank_commands() -> None:
    before = RedisCounters(evalsha_calls=10, commands=100, reads=50, cpu_s=1.0,
                           calls_by_name={"evalsha": 10, "hget": 40, "info": 3})  # fmt: skip
    after = RedisCounters(evalsha_calls=30, commands=201, reads=71, cpu_s=1.5,
                          calls_by_name={"evalsha": 30, "hget": 120, "info": 4, "zadd": 20})  # fmt: skip
    spent = (after - before).without_probe()
    assert (spent.evalsha_calls, spent.commands, spent.reads) == (20, 100, 20)
    assert spent.top_commands(per=10) == {"hget": 8.0, "evalsha": 2.0, "zadd": 2.0}


def test_markdown_warns_when_the_gateway_core_was_shared() -> None:
    report = full_report()
    assert "The machine was shared" not in render_markdown(report)
    busy = load_run("keyway", 1.0, 2.0, 700.0, others_on_core_pct=35.0)
    report.chat[0] = LoadPoint(scenario="chat-0ms", upstream_latency_ms=0.0, connections=1,
                               workers=1, keyway=busy, direct=report.chat[0].direct)  # fmt: skip
    assert "other processes used up to 35 % of Keyway's core" in render_markdown(report)
