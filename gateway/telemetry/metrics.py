"""Prometheus metrics of the gateway: one cheap typed call per event, summed across workers.

Granian serves one port from several worker *processes*, so each worker's counters alone would
make every scrape answer for one worker only. `keyway serve` therefore runs prometheus_client's
multiprocess mode: `prepare_multiprocess_dir()` (in the serving process, before Granian forks)
points `PROMETHEUS_MULTIPROC_DIR` at a fresh directory, every worker writes its samples into its
own memory-mapped files there, and `/metrics` (`render()`) sums them with a
`MultiProcessCollector`. Without that variable (tests, one process) the metrics live in the
default registry, next to the process and GC collectors.

Label values must come from the configuration (route paths, provider names, key ids, model
names, outcome words), never from the request as sent: label sets are bounded, so every child
is resolved once and kept in a dict. Key ids are config identifiers; no secret is ever a label.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Final, TypeVar

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "CONTENT_TYPE",
    "KEY_STATES",
    "METRIC_NAMES",
    "MULTIPROC_ENV",
    "RATE_LIMIT_SCOPES",
    "Metrics",
    "admission_scope",
    "get_metrics",
    "multiprocess_dir",
    "prepare_multiprocess_dir",
    "render",
    "worker_exit",
]

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

RATE_LIMIT_SCOPES: Final = (
    "client_rpm", "client_tpm", "budget", "client_concurrency", "upstream_capacity",
)  # fmt: skip
KEY_STATES: Final = ("cooling", "breaker_open", "disabled")

METRIC_NAMES: Final = (
    "keyway_requests_total",
    "proxy_requests_total",
    "keyway_request_duration_seconds",
    "keyway_time_to_first_token_seconds",
    "keyway_upstream_attempts_total",
    "keyway_upstream_values_ignored_total",
    "keyway_fallbacks_total",
    "keyway_rate_limited_total",
    "keyway_key_state",
    "keyway_tokens_total",
    "keyway_cost_microdollars_total",
    "keyway_redis_script_duration_seconds",
    "keyway_degraded_mode",
    "keyway_settlements_dropped_total",
)
"""Every family this module exposes, as it appears in the exposition (the dashboard uses them)."""

# whole requests include the upstream's own time: milliseconds to minutes
REQUEST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TTFT_BUCKETS: Final = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)
# one Redis round trip on a LAN: tens of microseconds to a few milliseconds
REDIS_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
)  # fmt: skip

_MAX_CHILDREN: Final = 10_000
"""Children cached per metric; past it (a label fed from unbounded input) they are not cached."""

_ADMISSION_SCOPES: Final = {
    "rpm": "client_rpm",
    "tpm": "client_tpm",
    "tpm_exceeds_limit": "client_tpm",
    "budget_day": "budget",
    "budget_month": "budget",
}

_SKIP_STATES: Final = {
    "cooldown": "cooling",
    "breaker_open": "breaker_open",
    "breaker_probing": "breaker_open",
    "disabled": "disabled",
}

M = TypeVar("M", bound=MetricWrapperBase)


def admission_scope(reason: str) -> str:
    """The `keyway_rate_limited_total` scope of a client_admit.lua refusal reason."""
    return _ADMISSION_SCOPES.get(reason, "client_rpm")


def _child(cache: dict[tuple[str, ...], M], metric: M, labels: tuple[str, ...]) -> M:
    child = metric.labels(*labels)
    if len(cache) < _MAX_CHILDREN:
        cache[labels] = child
    return child


class Metrics:
    """The gateway's metric families and one method per event the request path reports."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        """`registry=None` registers nowhere: the multiprocess collector reads the files instead."""
        r = registry
        self.requests_total = Counter(
            "keyway_requests", "Requests answered, by route and HTTP status.",
            ("route", "status"), registry=r,
        )  # fmt: skip
        self.proxy_requests_total = Counter(
            "proxy_requests", "Requests answered (keyway_requests_total by its former name).",
            ("method", "endpoint", "status"), registry=r,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "keyway_request_duration_seconds", "Time from request to the last byte sent.",
            ("route",), buckets=REQUEST_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft_seconds = Histogram(
            "keyway_time_to_first_token_seconds",
            "Time from request to the first streamed byte sent to the client.",
            ("route",), buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.attempts_total = Counter(
            "keyway_upstream_attempts", "Upstream attempts, by key and outcome.",
            ("provider", "key_id", "outcome"), registry=r,
        )  # fmt: skip
        self.ignored_total = Counter(
            "keyway_upstream_values_ignored",
            "Upstream header values ignored as unusable (not a number, negative, inf, nan...).",
            ("header",), registry=r,
        )  # fmt: skip
        self.fallbacks_total = Counter(
            "keyway_fallbacks", "Moves to another key, deployment or fallback model, by reason.",
            ("reason",), registry=r,
        )  # fmt: skip
        self.rate_limited_total = Counter(
            "keyway_rate_limited", "Requests refused for lack of room, by scope.",
            ("scope",), registry=r,
        )  # fmt: skip
        # a key's state is one cluster-wide fact (it lives in Redis): the latest observation
        # wins, whichever worker made it, and it stays true after that worker has gone
        self.key_state_gauge = Gauge(
            "keyway_key_state", "1 while an upstream key is in that state, as last observed.",
            ("provider", "key_id", "state"), multiprocess_mode="mostrecent", registry=r,
        )  # fmt: skip
        self.tokens_total = Counter(
            "keyway_tokens", "Tokens reported by the upstream, by model and direction.",
            ("model", "direction"), registry=r,
        )  # fmt: skip
        self.cost_total = Counter(
            "keyway_cost_microdollars", "Cost of the tokens at the configured prices (USD 1e-6).",
            ("model",), registry=r,
        )  # fmt: skip
        self.script_seconds = Histogram(
            "keyway_redis_script_duration_seconds", "Redis round trips of the Lua scripts.",
            ("script",), buckets=REDIS_BUCKETS, registry=r,
        )  # fmt: skip
        # degraded is a property of each live worker: any one of them degraded shows 1
        self.degraded_gauge = Gauge(
            "keyway_degraded_mode", "1 while Redis is unreachable from a worker.",
            multiprocess_mode="livemax", registry=r,
        )  # fmt: skip
        self.degraded_gauge.set(0)
        self.settlements_dropped_total = Counter(
            "keyway_settlements_dropped",
            "Settlements Redis never applied: batches dropped from the queue held while Redis "
            "was unreachable (queue_full) or refused by a script (rejected), and usage records "
            "dropped past routing.usage_max_pending_groups (usage).",
            ("reason",), registry=r,
        )  # fmt: skip
        self._request_children: dict[tuple[str, ...], tuple[Counter, Counter, Histogram]] = {}
        self._ttft_children: dict[tuple[str, ...], Histogram] = {}
        self._attempt_children: dict[tuple[str, ...], Counter] = {}
        self._ignored_children: dict[tuple[str, ...], Counter] = {}
        self._fallback_children: dict[tuple[str, ...], Counter] = {}
        self._limited_children: dict[tuple[str, ...], Counter] = {}
        self._state_children: dict[tuple[str, ...], Gauge] = {}
        self._token_children: dict[tuple[str, ...], tuple[Counter, Counter, Counter]] = {}
        self._script_children: dict[tuple[str, ...], Histogram] = {}

    # -- requests ---------------------------------------------------------------------------

    def request_done(self, route: str, status: int, seconds: float, method: str = "POST") -> None:
        """A request was answered with `status` after `seconds` (to its last byte)."""
        key = (route, str(status), method)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests_total.labels(route, key[1]),
                self.proxy_requests_total.labels(method, route, key[1]),
                self.request_seconds.labels(route),
            )
            if len(self._request_children) < _MAX_CHILDREN:
                self._request_children[key] = children
        children[0].inc()
        children[1].inc()
        children[2].observe(seconds)

    def first_token(self, route: str, seconds: float) -> None:
        """The first byte of a streamed answer reached the client `seconds` after the request."""
        key = (route,)
        child = self._ttft_children.get(key)
        if child is None:
            child = _child(self._ttft_children, self.ttft_seconds, key)
        child.observe(seconds)

    # -- routing ----------------------------------------------------------------------------

    def upstream_attempt(self, provider: str, key_id: str, outcome: str) -> None:
        """One upstream call ended with `outcome` (an `Outcome` word, or `timeout`...)."""
        key = (provider, key_id, outcome)
        child = self._attempt_children.get(key)
        if child is None:
            child = _child(self._attempt_children, self.attempts_total, key)
        child.inc()

    def upstream_value_ignored(self, header: str) -> None:
        """An upstream sent `header` (a name Keyway reads, lowercase) with a value it ignored."""
        key = (header,)
        child = self._ignored_children.get(key)
        if child is None:
            child = _child(self._ignored_children, self.ignored_total, key)
        child.inc()

    def fallback(self, reason: str) -> None:
        """The router moved on to another key or deployment because of `reason`."""
        key = (reason,)
        child = self._fallback_children.get(key)
        if child is None:
            child = _child(self._fallback_children, self.fallbacks_total, key)
        child.inc()

    def rate_limited(self, scope: str) -> None:
        """A request was refused for lack of room; `scope` is one of RATE_LIMIT_SCOPES."""
        key = (scope,)
        child = self._limited_children.get(key)
        if child is None:
            child = _child(self._limited_children, self.rate_limited_total, key)
        child.inc()

    # -- key states -------------------------------------------------------------------------

    def key_state(self, provider: str, key_id: str, state: str, active: bool) -> None:
        """Record that key `key_id` is (or is not) in `state`, one of KEY_STATES."""
        key = (provider, key_id, state)
        child = self._state_children.get(key)
        if child is None:
            child = _child(self._state_children, self.key_state_gauge, key)
        child.set(1 if active else 0)

    def key_settled(self, provider: str, key_id: str, outcome: str, breaker: str) -> None:
        """Read the states off a settle.lua reply: `breaker` is closed | open | half | ''."""
        if not key_id:
            return
        if outcome == "ok":
            self.key_state(provider, key_id, "cooling", False)
            self.key_state(provider, key_id, "disabled", False)
        elif outcome == "rate_limited":
            self.key_state(provider, key_id, "cooling", True)
        elif outcome == "auth_error":
            self.key_state(provider, key_id, "disabled", True)
        if breaker:
            self.key_state(provider, key_id, "breaker_open", breaker != "closed")

    def keys_skipped(self, provider: str, skipped: str) -> None:
        """Read the states off acquire.lua's `id=reason,...` list of keys it passed over."""
        for item in skipped.split(","):
            key_id, _, reason = item.partition("=")
            state = _SKIP_STATES.get(reason)
            if state is not None and key_id:
                self.key_state(provider, key_id, state, True)

    # -- usage ------------------------------------------------------------------------------

    def usage(self, model: str, tokens_in: int, tokens_out: int, cost_micros: int = 0) -> None:
        """Tokens (negative = unknown, skipped) and cost of one answered request."""
        key = (model,)
        children = self._token_children.get(key)
        if children is None:
            children = (
                self.tokens_total.labels(model, "input"),
                self.tokens_total.labels(model, "output"),
                self.cost_total.labels(model),
            )
            if len(self._token_children) < _MAX_CHILDREN:
                self._token_children[key] = children
        if tokens_in > 0:
            children[0].inc(tokens_in)
        if tokens_out > 0:
            children[1].inc(tokens_out)
        if cost_micros > 0:
            children[2].inc(cost_micros)

    # -- shared state -----------------------------------------------------------------------

    def redis_script(self, script: str, seconds: float) -> None:
        """One round trip that ran `script` (e.g. `acquire`, `admit+acquire`, `settle`)."""
        key = (script,)
        child = self._script_children.get(key)
        if child is None:
            child = _child(self._script_children, self.script_seconds, key)
        child.observe(seconds)

    def degraded(self, on: bool) -> None:
        """This worker lost (True) or regained (False) its Redis."""
        self.degraded_gauge.set(1 if on else 0)

    def settlements_dropped(self, reason: str, count: int = 1) -> None:
        """`count` settle batches (`queue_full`, `rejected`) or usage records (`usage`: one per
        upstream attempt and one per client request) will never reach Redis."""
        self.settlements_dropped_total.labels(reason).inc(count)


# -- process-wide wiring ---------------------------------------------------------------------

_metrics: Metrics | None = None
_collectors: dict[str, CollectorRegistry] = {}


def multiprocess_dir() -> str | None:
    """The directory the workers share, or None in single-process mode."""
    return os.environ.get(MULTIPROC_ENV) or None


def _use_multiprocess_values() -> None:
    # prometheus_client picks its value class when first imported; the serving process may
    # have imported it before the directory was chosen, and its forked workers inherit that
    if values.ValueClass is values.MutexValue:
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def get_metrics() -> Metrics:
    """This process's metrics, created on first use (call it in each worker, not before fork)."""
    global _metrics
    if _metrics is None:
        # `*_created` series double the exposition and do not exist in multiprocess mode
        disable_created_metrics()  # type: ignore[no-untyped-call]
        if multiprocess_dir() is not None:
            _use_multiprocess_values()
            _metrics = Metrics(registry=None)
        else:
            _metrics = Metrics()
    return _metrics


def render() -> bytes:
    """The exposition text for a scrape: every worker's samples summed in multiprocess mode."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(REGISTRY)
    registry = _collectors.get(path)
    if registry is None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        _collectors[path] = registry
    return generate_latest(registry)


def _remove_dir(path: Path, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def prepare_multiprocess_dir() -> Path:
    """Give the workers about to be forked an empty metrics directory; returns it.

    Uses `PROMETHEUS_MULTIPROC_DIR` when the operator set it (its stale files from an earlier
    run are deleted: the directory must belong to this one server), else a new temporary
    directory removed when this process exits.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="keyway-metrics-"))
        os.environ[MULTIPROC_ENV] = str(path)
        atexit.register(_remove_dir, path, os.getpid())
    _use_multiprocess_values()
    return path


def worker_exit() -> None:
    """Drop this worker's live gauges (degraded mode) from the sums; call at worker shutdown."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]
