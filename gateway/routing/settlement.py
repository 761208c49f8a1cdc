"""Settlements of the router's calls: the settle scripts' arguments, and where they go.

A successful call settles its key and charges its client in one round trip; in degraded mode
the key is settled on the local store, and what Redis must still learn is replayed to it as
idempotent "late" records: the client's spend and usage (client_settle.lua `late`) and the pool's
usage per key and model (settle.lua `late`). The rest of a local lease (window, breaker,
cooldown) stays local by design, and a local refund sends nothing to Redis.
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
    ) -> None:
        self.state = state
        self.settler = settler
        self.degraded = degraded
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
        job: Job,
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
                tokens_in,
                tokens_out,
                max(cost_micros(deployment, tokens_in, tokens_out), 0),
                deployment.model,
            ),
        )

    def late_usage_call(
        self,
        deployment: Deployment,
        job: Job,
        lease: Lease,
        outcome: str,
        *,
        tokens_in: int,
        tokens_out: int,
    ) -> ScriptCall:
        """settle.lua `late`: the usage a settle in Redis would have written for this call.

        The same figures as `pool_call`, resolved as settle.lua resolves them: unknown input
        tokens count as the lease's estimate (the acquire's, `job.est_tokens`), unknown output
        as 0, and the cost is the one `pool_call` sends (0 when the tokens are unknown).
        """
        return self.state.settle_call(
            lease,
            (
                "late",
                lease.key_id,
                outcome,
                tokens_in if tokens_in >= 0 else job.est_tokens,
                max(tokens_out, 0),
                max(cost_micros(deployment, tokens_in, tokens_out), 0),
                deployment.model,
            ),
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
            model=job.alias,
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
            job,
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
        """On Redis; or, for a local lease, on the local store plus a late usage record for Redis.

        A refund writes no usage, so a refunded local lease never reaches Redis (Redis never saw
        the lease). Any other outcome's usage per key and model must reach Redis once it is
        back, exactly once (idempotent by lease id), on its own batch, so that a refused record
        never takes another settlement down with it.
        """
        if not lease.local:
            self.settler.submit([call], provider=lease.provider, outcome=outcome)
            return
        self.settler.submit([call], local=self.degraded.local)
        if outcome != Outcome.REFUND:
            late_usage = self.late_usage_call(
                deployment, job, lease, outcome, tokens_in=tokens_in, tokens_out=tokens_out
            )
            self.settler.submit([late_usage])

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
            job,
            call.lease,
            outcome,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            learned=learned,
            latency_ms=int((call.first_byte - call.started) * 1000),
        )
        client_call = self.client_call(job, "charge", tokens_in, tokens_out, cost)
        if not job.degraded and not call.lease.local:
            # one round trip
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
        self.settler.submit([call], local=self.degraded.local if job.degraded else None)
