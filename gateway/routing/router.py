"""The attempt loop: admit the client, acquire a key, call upstream, fall back, settle.

    for each deployment of the alias, then of its fallbacks:
        acquire a key of the deployment's pool (the first acquire also admits the client,
        in the same round trip) -> send -> a 2xx: hand the open response to the caller
        429 / 5xx / 401 / connect error / timeout: settle that key, exclude it, try the next
        another 4xx: the request's own fault, returned to the client as the upstream sent it
    nothing left, or the attempt budget or deadline spent: raise (the owner refunds the client)

Everything taken from shared state is reported to the request's owner (routing/owner.py),
whose exit settles it; one upstream call is routing/attempt.py. Each Redis round trip is a span
with the routing decision and a `keyway_redis_script_duration` sample.
"""

from __future__ import annotations

import logging
import random
import time

from opentelemetry.util.types import AttributeValue

from gateway.config import RoutingConfig
from gateway.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    RateLimited,
    ServiceUnavailable,
)
from gateway.providers.adapters import Endpoint
from gateway.providers.transport import (
    UpstreamTransport,
)
from gateway.routing import sampling
from gateway.routing.attempt import call_upstream
from gateway.routing.decisions import DecisionLog
from gateway.routing.degraded import DegradedMode
from gateway.routing.job import Job, OpenCall, UpstreamRejection, cost_micros
from gateway.routing.outcome import (
    Outcome,
)
from gateway.routing.owner import RequestOwner
from gateway.routing.settlement import Settlement
from gateway.routing.settler import Settler
from gateway.routing.table import Deployment, UpstreamKey
from gateway.state.store import (
    Lease,
    NoKey,
    SharedState,
    StateError,
    StateUnavailable,
)
from gateway.state.usage_buffer import UsageBuffer
from gateway.telemetry import tracing
from gateway.telemetry.metrics import Metrics, admission_scope, get_metrics

__all__ = ["Job", "OpenCall", "RequestOwner", "Router", "UpstreamRejection"]

log = logging.getLogger("keyway.router")

_BUSY_REASONS = ("cooldown", "rpm", "tpm", "concurrency", "upstream_quota")
_API_NAMES = {
    Endpoint.CHAT: "chat completions",
    Endpoint.COMPLETIONS: "legacy completions",
    Endpoint.EMBEDDINGS: "embeddings",
    Endpoint.RESPONSES: "the Responses API",
    Endpoint.MESSAGES: "the Messages API",
    Endpoint.COUNT_TOKENS: "count_tokens",
}


class Router:
    """Routes jobs over the route table's deployments through shared state."""

    def __init__(
        self,
        state: SharedState,
        transport: UpstreamTransport,
        settler: Settler,
        routing: RoutingConfig,
        degraded: DegradedMode,
        usage: UsageBuffer,
    ) -> None:
        self.state = state
        self.degraded = degraded
        self.transport = transport
        self.settler = settler
        self.cfg = routing
        self.decisions = DecisionLog()
        self.lease_ttl_s = routing.lease_ttl_s
        self._lease_ttl_ms = int(routing.lease_ttl_s * 1000)
        self.settlement = Settlement(state, settler, degraded, routing, usage)

    def owner(self, job: Job) -> RequestOwner:
        """The owner of `job`'s shared state: `async with router.owner(job) as owner:`."""
        return RequestOwner(self, job)

    # -- the attempt loop ---------------------------------------------------------------------

    async def open(self, owner: RequestOwner) -> OpenCall:
        """Return an open 2xx response, or raise the GatewayError the client should see.

        Everything taken from shared state is reported to `owner`, whose exit settles it.
        """
        job = owner.job
        try:
            call = await self._open(owner)
        except GatewayError as err:
            self._record(job, None, err.code or err.openai_type)
            raise
        except UpstreamRejection as rejection:
            self._record(job, None, f"upstream_{rejection.status}")
            raise
        self._record(job, f"{call.deployment.pool.provider}/{call.key.id}", None)
        return call

    def _record(self, job: Job, chosen: str | None, error: str | None) -> None:
        self.decisions.record(
            request_id=job.request_id,
            client_id=job.client.id,
            alias=job.alias,
            attempts=job.attempts,
            chosen=chosen,
            skipped=job.skipped,
            failed=job.failed,
            error=error,
        )

    async def _open(self, owner: RequestOwner) -> OpenCall:
        job = owner.job
        if not any(d.pool.adapter.supports(job.endpoint) for d in job.chain):
            raise BadRequest(
                f"the model '{job.alias}' cannot serve {_API_NAMES[job.endpoint]}: none of its "
                "deployments' providers speaks it; use /v1/chat/completions or /v1/messages",
                param="model",
                code="unsupported_endpoint",
            )
        m = get_metrics()
        chain = job.chain
        client = job.client
        if client.budget_day_micros > 0 or client.budget_month_micros > 0:
            # a budget is only as good as the prices it is counted in: never serve it for free
            chain = tuple(d for d in chain if d.price is not None)
            if not chain:
                raise Forbidden(
                    f"this key has a budget and the model '{job.alias}' has no price; "
                    "the operator must set prices for it (or a default price, prices['*'])",
                    param="model",
                    code="model_unpriced",
                )
        deadline = time.monotonic() + self.cfg.deadline_s
        admitted = False
        last: GatewayError | None = None
        busy_wait = -1
        excluded: set[tuple[str, str]] = set()
        moving_on = ""
        """Why the previous key or deployment was left: counted once the next one is tried."""
        for deployment in chain:
            pool = deployment.pool
            if not pool.adapter.supports(job.endpoint):
                continue
            while job.attempts < self.cfg.max_attempts and time.monotonic() < deadline:
                candidates = [
                    k.candidate for k in pool.keys if (pool.provider, k.id) not in excluded
                ]
                if not candidates:
                    break
                if moving_on:
                    m.fallback(moving_on)
                    moving_on = ""
                # a sample first; the rest of the pool only if none of the sample has room
                first, rest = sampling.split(deployment.strategy, candidates)
                lease_or_none = await self._acquire(owner, deployment, first, admitted, m)
                admitted = True
                if isinstance(lease_or_none, NoKey) and rest and not lease_or_none.model_closed:
                    more = await self._acquire(owner, deployment, rest, admitted, m)
                    lease_or_none = more if isinstance(more, Lease) else lease_or_none.merge(more)
                if isinstance(lease_or_none, NoKey):
                    job.skipped.append(lease_or_none.skipped)
                    if lease_or_none.wait_ms >= 0 and any(
                        r in lease_or_none.skipped for r in _BUSY_REASONS
                    ):
                        busy_wait = (
                            lease_or_none.wait_ms
                            if busy_wait < 0
                            else min(busy_wait, lease_or_none.wait_ms)
                        )
                    moving_on = "no_key"
                    break
                lease = lease_or_none
                key = pool.by_id[lease.key_id]
                job.attempts += 1
                job.deployment = deployment
                job.key_id = key.id
                result = await self._attempt(owner, deployment, key, lease, m, deadline)
                if isinstance(result, OpenCall):
                    return result
                excluded.add((pool.provider, key.id))
                moving_on, last = result
                job.failed.append(f"{pool.provider}/{key.id}={moving_on}")
        if busy_wait >= 0 and (last is None or isinstance(last, RateLimited)):
            m.rate_limited("upstream_capacity")
            raise RateLimited(
                f"every upstream key for model '{job.alias}' is at its limit; retry later",
                code="upstream_capacity",
                retry_after_s=max(1, -(-busy_wait // 1000)),
            )
        if last is not None:
            if isinstance(last, RateLimited):
                m.rate_limited("upstream_capacity")
            raise last
        raise ServiceUnavailable(
            f"no upstream key is available for model '{job.alias}'", code="no_available_key"
        )

    async def _acquire(
        self,
        owner: RequestOwner,
        deployment: Deployment,
        candidates: list[tuple[str | int, ...]],
        admitted: bool,
        m: Metrics,
    ) -> Lease | NoKey:
        """One round trip: acquire a key (and, on the first attempt, admit the client)."""
        job = owner.job
        try:
            return await self._acquire_on(self.state, owner, deployment, candidates, admitted, m)
        except StateUnavailable:
            pass
        except StateError as exc:
            log.error("routing state error: %s", exc)
            raise ServiceUnavailable(
                "routing state is unavailable; retry shortly",
                code="state_unavailable",
                retry_after_s=1,
            ) from None
        # degraded mode: the same scripts in-process, on this replica's share of every limit,
        # without the keys disabled in Redis or too small to share (reported as skipped)
        await self.degraded.ensure_ready()
        if not admitted:
            job.degraded = True
        usable, left_out = self.degraded.candidates(deployment.pool.provider, candidates)
        got = await self._acquire_on(self.degraded.local, owner, deployment, usable, admitted, m)
        if isinstance(got, NoKey) and left_out:
            return NoKey(got.wait_ms, ",".join(s for s in (got.skipped, *left_out) if s))
        return got

    async def _acquire_on(
        self,
        state: SharedState,
        owner: RequestOwner,
        deployment: Deployment,
        candidates: list[tuple[str | int, ...]],
        admitted: bool,
        m: Metrics,
    ) -> Lease | NoKey:
        """Acquire (after admitting, on the first attempt); every lease taken goes to `owner`."""
        job = owner.job
        local = state is not self.state
        provider = deployment.pool.provider
        lease_id = f"{job.request_id}.{job.attempts}"
        acquire = state.acquire_call(
            provider,
            lease_id,
            tokens=job.est_tokens,
            lease_ttl_ms=self._lease_ttl_ms,
            strategy=deployment.strategy,
            random=random.randrange(1_000_000),
            candidates=candidates,
            model=deployment.model,
        )
        traced = tracing.enabled()
        if admitted:
            with tracing.redis_span(
                "acquire", _decision_attributes(provider, candidates, local) if traced else None
            ) as span:
                sent = time.perf_counter()
                reply = (await state.run([acquire]))[0]
                if not local:
                    m.redis_script("acquire", time.perf_counter() - sent)
                got = state.parse_acquire(provider, lease_id, reply, local=local)
                if isinstance(got, Lease):
                    owner.hold(deployment, got)
                _note_decision(m, span, provider, got, traced)
            return got
        client = job.client
        if local:
            limits = self.degraded.client_limits(client)
            if limits.refused:
                # a limit of which this replica has no share: nothing to ask the local store
                m.rate_limited(admission_scope(limits.refused))
                raise RateLimited(
                    f"client key limit reached ({limits.refused}): this replica has no share "
                    "of it while the shared state is unreachable",
                    code=f"client_{limits.refused}",
                    retry_after_s=1,
                )
            rpm, tpm = limits.rpm, limits.tpm
            day, month = limits.budget_day_micros, limits.budget_month_micros
        else:
            rpm, tpm = client.rpm, client.tpm
            day, month = client.budget_day_micros, client.budget_month_micros
        admit = state.client_admit_call(
            client.id,
            job.request_id,
            rpm=rpm,
            tpm=tpm,
            tokens=job.est_tokens,
            cost_micros=max(cost_micros(deployment, job.est_tokens, 0), 0),
            budget_day_micros=day,
            budget_month_micros=month,
            hold_ttl_ms=self._lease_ttl_ms,
        )
        with tracing.redis_span(
            "admit+acquire", _decision_attributes(provider, candidates, local) if traced else None
        ) as span:
            sent = time.perf_counter()
            replies = await state.run([admit, acquire])
            if not local:
                m.redis_script("admit+acquire", time.perf_counter() - sent)
            admission = state.parse_admit(replies[0])
            got = state.parse_acquire(provider, lease_id, replies[1], local=local)
            if isinstance(got, Lease):
                owner.hold(deployment, got)
            if admission.admitted:
                owner.admitted()
                _note_decision(m, span, provider, got, traced)
                return got
            if traced:
                span.set_attributes({"keyway.admitted": False, "keyway.refused": admission.reason})
        m.rate_limited(admission_scope(admission.reason))
        if isinstance(got, Lease):
            owner.settle_attempt(deployment, got, Outcome.REFUND)
        # locally, the share of the limit may be what the request exceeds, not the limit itself
        if admission.reason == "tpm_exceeds_limit" and not (local and job.est_tokens <= client.tpm):
            raise BadRequest(
                "this request needs more tokens than your tokens-per-minute limit allows",
                code="tokens_exceed_limit",
            )
        raise RateLimited(
            f"client key limit reached ({admission.reason})",
            code=f"client_{admission.reason}",
            retry_after_s=max(1, -(-admission.wait_ms // 1000)),
        )

    async def _attempt(
        self,
        owner: RequestOwner,
        deployment: Deployment,
        key: UpstreamKey,
        lease: Lease,
        m: Metrics,
        deadline: float,
    ) -> OpenCall | tuple[str, GatewayError]:
        return await call_upstream(
            owner,
            deployment,
            key,
            lease,
            m,
            transport=self.transport,
            routing=self.cfg,
            deadline=deadline,
        )


def _decision_attributes(
    provider: str, candidates: list[tuple[str | int, ...]], local: bool
) -> dict[str, AttributeValue]:
    """What a routing span knows before the reply (only built when tracing is on)."""
    return {
        "keyway.provider": provider,
        "keyway.candidates": len(candidates),
        "keyway.store": "local" if local else "redis",
    }


def _note_decision(
    m: Metrics, span: tracing.ScriptSpan, provider: str, got: Lease | NoKey, traced: bool
) -> None:
    """Put the decision on the span; the key states acquire.lua saw on the metrics."""
    if isinstance(got, NoKey):
        m.keys_skipped(provider, got.skipped)
        if traced:
            span.set_attributes({"keyway.skipped": got.skipped, "keyway.wait_ms": got.wait_ms})
    elif traced:
        span.set_attributes({"keyway.key_id": got.key_id, "keyway.probe": got.probe})
