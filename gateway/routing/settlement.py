"""Settlements of the router's calls: the settle scripts' arguments, and where they go.

A successful call settles its key and charges its client in one round trip; in degraded mode
the key is settled on the local store, and what Redis must still learn is replayed to it as an
idempotent "late" record: the client's spend (client_settle.lua `late`). The rest of a local
lease (window, breaker, cooldown) stays local by design, and a local refund sends nothing to
Redis. Usage (requests, tokens, cost per key and model, and per client and alias) is counted
here, once per settlement, into the worker's UsageBuffer, which reaches Redis about once a
second whether the call was settled there or locally.
"""

from __future__ import annotations

import random

from gateway.config import RoutingConfig
from gateway.routing.degraded import DegradedMode
from gateway.routing.job import Job, OpenCall, cost_micros
from gateway.routing.outcome import NOTHING_LEARNED, Learned, Outcome, learn_quota
from gateway.routing.settler import Settler
from gateway.routing.table import Deployment
from gateway.state.store import Lease, ScriptCall, SharedState
from gateway.state.usage_buffer import UsageBuffer
from gateway.telemetry.metrics import get_metrics

__all__ = ["Settlement"]


class Settlement:
    """Builds settle calls and submits them to Redis, or to the degraded-mode store."""

    def __init__(
        self,
        state: SharedState,
        settler: Settler,
        degraded: DegradedMode,
        routing: RoutingConfig,
        usage: UsageBuffer,
    ) -> None:
        self.state = state
        self.settler = settler
        self.degraded = degraded
        self.usage = usage
        b = routing.breaker
        self._breaker_args: tuple[int, ...] = (
            b.consecutive_failures,
            b.failure_rate_pct,
            b.min_requests,
            int(b.window_s * 1000),
            int(b.open_s * 1000),
            int(b.max_open_s * 1000),
        )

    def pool_call(
        self,
        deployment: Deployment,
        lease: Lease,
        outcome: str,
        *,
        tokens_in: int = -1,
        tokens_out: int = -1,
        cooldown: int = 0,
        learned: Learned = NOTHING_LEARNED,
        latency_ms: int = -1,
        reason: str = "",
    ) -> ScriptCall:
        total = tokens_in + max(tokens_out, 0) if tokens_in >= 0 else -1
        return self.state.settle_call(
            lease,
            (
                outcome,
                total,
                cooldown,
                learned.remaining_requests,
                learned.remaining_tokens,
                learned.reset_ms,
                latency_ms,
                *self._breaker_args,
                random.randrange(1000),
                reason,
                deployment.model,
            ),
        )

    def _count_pool(
        self, deployment: Deployment, job: Job, lease: Lease, outcome: str, tin: int, tout: int
    ) -> None:
        """The attempt's usage per key and model: unknown input tokens count as the estimate,
        unknown output as 0; a refund (never sent upstream) counts nothing."""
        if outcome == Outcome.REFUND:
            return
        self.usage.pool(
            deployment.pool.provider,
            lease.key_id,
            deployment.model,
            tin if tin >= 0 else job.est_tokens,
            max(tout, 0),
            max(cost_micros(deployment, tin, tout), 0),
            outcome != Outcome.OK,
        )

    def client_call(
        self, job: Job, mode: str, tokens_in: int, tokens_out: int, cost: int
    ) -> ScriptCall:
        return self.state.client_settle_call(
            job.client.id,
            job.request_id,
            mode=mode,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_micros=cost,
        )

    def settle_pool(
        self,
        deployment: Deployment,
        job: Job,
        lease: Lease,
        outcome: str,
        *,
        cooldown: int = 0,
        learned: Learned = NOTHING_LEARNED,
        latency_ms: int = -1,
        reason: str = "",
    ) -> None:
        """Settle an attempt that opened no call (refund, 429, 5xx, 4xx, transport error).

        Zero tokens: the upstream consumed none, so the key's TPM window keeps only the request.
        """
        call = self.pool_call(
            deployment,
            lease,
            outcome,
            tokens_in=0,
            tokens_out=0,
            cooldown=cooldown,
            learned=learned,
            latency_ms=latency_ms,
            reason=reason,
        )
        self._submit_pool(deployment, job, lease, call, outcome, tokens_in=0, tokens_out=0)

    def _submit_pool(
        self,
        deployment: Deployment,
        job: Job,
        lease: Lease,
        call: ScriptCall,
        outcome: str,
        *,
        tokens_in: int,
        tokens_out: int,
    ) -> None:
        """On Redis, or for a local lease on the local store; its usage counted either way."""
        self._count_pool(deployment, job, lease, outcome, tokens_in, tokens_out)
        if not lease.local:
            self.settler.submit([call], provider=lease.provider, outcome=outcome)
            return
        self.settler.submit([call], local=self.degraded.local)

    def finish(self, call: OpenCall, outcome: str, *, tokens_in: int, tokens_out: int) -> None:
        """Settle the key and charge the client; -1 tokens = unknown (the estimate is charged).

        The settle calls are submitted first; metrics and the attempt's span after, so that
        nothing observability does can keep a lease from being settled.
        """
        cost = cost_micros(call.deployment, tokens_in, tokens_out)
        try:
            learned = learn_quota(call.response.headers)
        except Exception:  # a header no parser foresaw: learn nothing rather than leak the lease
            learned = NOTHING_LEARNED
        self._settle_call(call, outcome, tokens_in, tokens_out, cost, learned)
        m = get_metrics()
        m.upstream_attempt(call.deployment.pool.provider, call.key.id, outcome)
        m.usage(call.deployment.model, tokens_in, tokens_out, cost)
        call.attempt.usage(tokens_in, tokens_out)
        call.attempt.end(outcome)

    def _settle_call(
        self,
        call: OpenCall,
        outcome: str,
        tokens_in: int,
        tokens_out: int,
        cost: int,
        learned: Learned,
    ) -> None:
        job = call.job
        deployment = call.deployment
        provider = deployment.pool.provider
        pool_call = self.pool_call(
            call.deployment,
            call.lease,
            outcome,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            learned=learned,
            latency_ms=int((call.first_byte - call.started) * 1000),
        )
        client_call = self.client_call(job, "charge", tokens_in, tokens_out, cost)
        self._count_client(job, call.deployment, tokens_in, tokens_out, cost)
        if not job.degraded and not call.lease.local:
            # one round trip
            self._count_pool(deployment, job, call.lease, outcome, tokens_in, tokens_out)
            self.settler.submit([pool_call, client_call], provider=provider, outcome=outcome)
            return
        self._submit_pool(
            deployment,
            job,
            call.lease,
            pool_call,
            outcome,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )
        if not job.degraded:
            self.settler.submit([client_call])
            return
        self.settler.submit([client_call], local=self.degraded.local)
        # the spend must reach Redis once it is back: an idempotent late charge
        known = tokens_in >= 0
        late_in = tokens_in if known else job.est_tokens
        late_out = max(tokens_out, 0) if known else 0
        late_cost = max(cost_micros(call.deployment, late_in, late_out), 0)
        self.settler.submit([self.client_call(job, "late", late_in, late_out, late_cost)])

    def close_admission(self, job: Job, mode: str) -> None:
        """An admission that served no call: `refund` it, or `rejected` (the upstream refused
        the request as invalid: it counts in the client's window, its tokens and cost do not)."""
        call = self.client_call(job, mode, 0, 0, 0)
        self.usage.client(job.client.id, job.alias, 0, 0, 0, True)
        self.settler.submit([call], local=self.degraded.local if job.degraded else None)

    def _count_client(
        self, job: Job, deployment: Deployment, tin: int, tout: int, cost: int
    ) -> None:
        """The request's usage per client and alias, as client_settle.lua charges it: unknown
        tokens are the estimate (input), an unknown cost the estimate's."""
        if tin < 0:
            tin, tout = job.est_tokens, 0
        if cost < 0:
            cost = max(cost_micros(deployment, job.est_tokens, 0), 0)
        self.usage.client(job.client.id, job.alias, tin, max(tout, 0), cost, False)
