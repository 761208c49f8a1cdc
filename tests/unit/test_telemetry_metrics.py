"""The metrics facade: each event moves the right series by the right amount, in one process
and summed across several worker processes sharing one multiprocess directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.api.metrics_route import metrics_handler
from gateway.telemetry import metrics as metrics_module
from gateway.telemetry.metrics import (
    KEY_STATES,
    METRIC_NAMES,
    MULTIPROC_ENV,
    RATE_LIMIT_SCOPES,
    Metrics,
    admission_scope,
    get_metrics,
    render,
)

__all__: list[str] = []

ROOT = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by sample name and label set."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


@pytest.fixture()
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture()
def m(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


def scrape(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_requests_count_by_route_and_status_and_alias(
    m: Metrics, registry: CollectorRegistry
) -> None:
    m.request_done(CHAT, 200, 0.04)
    m.request_done(CHAT, 200, 0.3)
    m.request_done(CHAT, 429, 0.002)
    m.request_done("/v1/embeddings", 200, 0.01)
    text = scrape(registry)
    assert value(text, "keyway_requests_total", route=CHAT, status="200") == 2
    assert value(text, "keyway_requests_total", route=CHAT, status="429") == 1
    assert value(text, "keyway_requests_total", route="/v1/embeddings", status="200") == 1
    assert value(text, "proxy_requests_total", method="POST", endpoint=CHAT, status="200") == 2
    assert value(text, "proxy_requests_total", method="POST", endpoint=CHAT, status="429") == 1
    # histogram: count, sum, and cumulative buckets on the right side of each boundary
    assert value(text, "keyway_request_duration_seconds_count", route=CHAT) == 3
    assert value(text, "keyway_request_duration_seconds_sum", route=CHAT) == pytest.approx(0.342)
    bucket = "keyway_request_duration_seconds_bucket"
    assert value(text, bucket, route=CHAT, le="0.005") == 1
    assert value(text, bucket, route=CHAT, le="0.05") == 2
    assert value(text, bucket, route=CHAT, le="0.25") == 2
    assert value(text, bucket, route=CHAT, le="0.5") == 3
    assert value(text, bucket, route=CHAT, le="+Inf") == 3


def test_first_token_histogram(m: Metrics, registry: CollectorRegistry) -> None:
    m.first_token(CHAT, 0.08)
    m.first_token(CHAT, 0.4)
    text = scrape(registry)
    assert value(text, "keyway_time_to_first_token_seconds_count", route=CHAT) == 2
    assert value(text, "keyway_time_to_first_token_seconds_bucket", route=CHAT, le="0.1") == 1


def test_routing_counters(m: Metrics, registry: CollectorRegistry) -> None:
    m.upstream_attempt("openai", "oa-1", "rate_limited")
    m.upstream_attempt("openai", "oa-2", "ok")
    m.upstream_attempt("openai", "oa-2", "ok")
    m.fallback("rate_limited")
    m.rate_limited("client_rpm")
    m.rate_limited("client_rpm")
    m.rate_limited(admission_scope("budget_month"))
    m.upstream_value_ignored("retry-after")
    m.upstream_value_ignored("retry-after")
    text = scrape(registry)
    attempts = "keyway_upstream_attempts_total"
    assert value(text, attempts, provider="openai", key_id="oa-1", outcome="rate_limited") == 1
    assert value(text, attempts, provider="openai", key_id="oa-2", outcome="ok") == 2
    assert value(text, attempts, provider="openai", key_id="oa-1", outcome="ok") is None
    assert value(text, "keyway_fallbacks_total", reason="rate_limited") == 1
    assert value(text, "keyway_rate_limited_total", scope="client_rpm") == 2
    assert value(text, "keyway_rate_limited_total", scope="budget") == 1
    ignored = "keyway_upstream_values_ignored_total"
    assert value(text, ignored, header="retry-after") == 2


@pytest.mark.parametrize(
    ("reason", "scope"),
    [("rpm", "client_rpm"), ("tpm", "client_tpm"), ("tpm_exceeds_limit", "client_tpm"),
     ("budget_day", "budget"), ("budget_month", "budget")],
)  # fmt: skip
def test_admission_reasons_map_to_scopes(reason: str, scope: str) -> None:
    assert admission_scope(reason) == scope


def test_key_states_follow_settle_replies_and_skips(
    m: Metrics, registry: CollectorRegistry
) -> None:
    state = "keyway_key_state"
    m.key_settled("openai", "oa-1", "rate_limited", "closed")
    text = scrape(registry)
    assert value(text, state, provider="openai", key_id="oa-1", state="cooling") == 1
    assert value(text, state, provider="openai", key_id="oa-1", state="breaker_open") == 0

    m.key_settled("openai", "oa-1", "ok", "closed")
    m.key_settled("openai", "oa-2", "server_error", "open")
    m.key_settled("openai", "oa-3", "auth_error", "closed")
    m.key_settled("openai", "", "ok", "")  # an already-settled lease names no key
    text = scrape(registry)
    assert value(text, state, provider="openai", key_id="oa-1", state="cooling") == 0
    assert value(text, state, provider="openai", key_id="oa-2", state="breaker_open") == 1
    assert value(text, state, provider="openai", key_id="oa-3", state="disabled") == 1

    m.keys_skipped("openai", "oa-4=cooldown,oa-5=breaker_probing,oa-6=rpm,oa-7=disabled")
    text = scrape(registry)
    assert value(text, state, provider="openai", key_id="oa-4", state="cooling") == 1
    assert value(text, state, provider="openai", key_id="oa-5", state="breaker_open") == 1
    assert value(text, state, provider="openai", key_id="oa-7", state="disabled") == 1
    # a key that was merely busy is in none of the states
    assert not [k for k in samples(text) if ("key_id", "oa-6") in k[1]]


def test_usage_skips_unknown_counts(m: Metrics, registry: CollectorRegistry) -> None:
    m.usage("gpt-4o-mini", 120, 30, cost_micros=36)
    m.usage("gpt-4o-mini", -1, -1, cost_micros=0)
    m.usage("gpt-4o-mini", 10, 0)
    text = scrape(registry)
    tokens = "keyway_tokens_total"
    assert value(text, tokens, model="gpt-4o-mini", direction="input") == 130
    assert value(text, tokens, model="gpt-4o-mini", direction="output") == 30
    assert value(text, "keyway_cost_microdollars_total", model="gpt-4o-mini") == 36


def test_redis_scripts_and_degraded_mode(m: Metrics, registry: CollectorRegistry) -> None:
    assert value(scrape(registry), "keyway_degraded_mode") == 0
    m.redis_script("admit+acquire", 0.0004)
    m.redis_script("admit+acquire", 0.002)
    m.redis_script("settle", 0.0003)
    m.degraded(True)
    text = scrape(registry)
    seconds = "keyway_redis_script_duration_seconds"
    assert value(text, f"{seconds}_count", script="admit+acquire") == 2
    assert value(text, f"{seconds}_bucket", script="admit+acquire", le="0.0005") == 1
    assert value(text, f"{seconds}_count", script="settle") == 1
    assert value(text, "keyway_degraded_mode") == 1
    m.degraded(False)
    assert value(scrape(registry), "keyway_degraded_mode") == 0


def test_every_documented_family_is_exposed(m: Metrics, registry: CollectorRegistry) -> None:
    m.request_done(CHAT, 200, 0.1)
    m.first_token(CHAT, 0.05)
    m.upstream_attempt("openai", "oa-1", "ok")
    m.upstream_value_ignored("retry-after")
    m.fallback("server_error")
    m.rate_limited("upstream_capacity")
    m.key_state("openai", "oa-1", "cooling", False)
    m.usage("gpt-4o-mini", 1, 1, 1)
    m.redis_script("settle", 0.001)
    m.settlements_dropped("usage", 3)
    text = scrape(registry)
    exposed = {s[0] for s in samples(text)}
    for name in METRIC_NAMES:
        assert {name, f"{name}_count"} & exposed, name
    assert value(text, "keyway_settlements_dropped_total", reason="usage") == 3


def test_every_family_scope_and_key_state_is_in_the_observability_doc() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    for word in (*METRIC_NAMES, *RATE_LIMIT_SCOPES, *KEY_STATES):
        assert f"`{word}`" in doc, word


def test_metrics_route_serves_the_default_registry() -> None:
    assert os.environ.get(MULTIPROC_ENV) is None
    app = Litestar(route_handlers=[metrics_handler()])
    with TestClient(app) as client:
        before = value(
            client.get("/metrics").text, "keyway_requests_total", route="/t", status="201"
        )
        get_metrics().request_done("/t", 201, 0.01)
        get_metrics().request_done("/t", 201, 0.01)
        response = client.get("/metrics")
        assert client.post("/metrics").status_code == 405
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = value(response.text, "keyway_requests_total", route="/t", status="201")
    assert (after or 0) - (before or 0) == 2


# -- several worker processes, one port --------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import os, sys
    from gateway.telemetry.metrics import get_metrics, worker_exit
    m = get_metrics()
    n = int(sys.argv[1])
    cooling, degraded, leave = (flag == "1" for flag in sys.argv[2:5])
    for _ in range(n):
        m.request_done("/v1/chat/completions", 200, 0.2)
        m.upstream_attempt("openai", "oa-1", "ok")
    m.usage("gpt-4o-mini", 100 * n, 10 * n, 5 * n)
    m.key_state("openai", "oa-1", "cooling", cooling)
    m.degraded(degraded)
    if leave:
        worker_exit()
    print(os.getpid())
    """
)


def run_worker(directory: Path, *args: str) -> int:
    env = {**os.environ, MULTIPROC_ENV: str(directory), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, *args],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return int(done.stdout.strip())


@pytest.fixture()
def multiproc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "prom"
    directory.mkdir()
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    yield directory
    metrics_module._collectors.pop(str(directory), None)


def test_workers_sum_into_one_exposition(multiproc_dir: Path) -> None:
    first = run_worker(multiproc_dir, "2", "1", "1", "0")
    second = run_worker(multiproc_dir, "3", "0", "0", "1")
    text = render().decode()
    assert value(text, "keyway_requests_total", route=CHAT, status="200") == 5
    assert value(text, "proxy_requests_total", method="POST", endpoint=CHAT, status="200") == 5
    assert value(text, "keyway_request_duration_seconds_count", route=CHAT) == 5
    assert value(text, "keyway_request_duration_seconds_sum", route=CHAT) == pytest.approx(1.0)
    assert (
        value(
            text, "keyway_upstream_attempts_total", provider="openai", key_id="oa-1", outcome="ok"
        )
        == 5
    )
    assert value(text, "keyway_tokens_total", model="gpt-4o-mini", direction="input") == 500
    assert value(text, "keyway_cost_microdollars_total", model="gpt-4o-mini") == 25
    # the key recovered in the worker that looked last: the latest observation wins
    assert value(text, "keyway_key_state", provider="openai", key_id="oa-1", state="cooling") == 0
    # one worker still running and degraded is enough to show degraded
    assert value(text, "keyway_degraded_mode") == 1
    # the worker that left took its live gauge with it; the other's is still counted
    live = {p.name for p in multiproc_dir.glob("gauge_live*")}
    assert f"gauge_livemax_{first}.db" in live
    assert f"gauge_livemax_{second}.db" not in live


FORKING_SERVER = textwrap.dedent(
    """
    import multiprocessing, os, sys
    import prometheus_client  # imported before the directory exists, like `keyway serve` may
    from gateway.telemetry.metrics import get_metrics, prepare_multiprocess_dir, render

    directory = prepare_multiprocess_dir()
    def worker():
        get_metrics().request_done("/v1/chat/completions", 200, 0.1)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=worker) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    sys.stdout.write(render().decode())
    """
)


def python(script: str, env: dict[str, str]) -> str:
    """Run `script` in a fresh interpreter (it changes process-wide prometheus_client state)."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    return done.stdout


def env_without_dir() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}


def test_prepare_before_fork_makes_forked_workers_share_counts() -> None:
    # prometheus_client is imported (and picks its value class) before the directory exists
    out = python(FORKING_SERVER, env_without_dir())
    assert value(out, "keyway_requests_total", route=CHAT, status="200") == 2


def test_prepare_empties_a_configured_dir(tmp_path: Path) -> None:
    stale = tmp_path / "counter_999999.db"
    stale.write_bytes(b"left over from an earlier run")
    keep = tmp_path / "notes.txt"
    keep.write_text("not ours")
    script = (
        "from gateway.telemetry.metrics import prepare_multiprocess_dir\n"
        "print(prepare_multiprocess_dir())\n"
    )
    out = python(script, {**os.environ, MULTIPROC_ENV: str(tmp_path)})
    assert Path(out.strip()) == tmp_path
    assert not stale.exists()
    assert keep.exists()


def test_prepare_without_a_configured_dir_uses_a_temporary_one() -> None:
    script = (
        "import os\n"
        "from gateway.telemetry.metrics import prepare_multiprocess_dir, MULTIPROC_ENV\n"
        "d = prepare_multiprocess_dir()\n"
        "assert os.environ[MULTIPROC_ENV] == str(d) and d.is_dir()\n"
        "print(d)\n"
    )
    made = Path(python(script, env_without_dir()).strip())
    assert made.name.startswith("keyway-metrics-")
    assert not made.exists()  # removed when the serving process exited
