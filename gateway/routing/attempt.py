"""One upstream call on a leased key: an open 2xx, or why the next key should be tried.

    prepare the body (the codec's translation; a failure is the request's: 400)
    -> send, within what is left of the request's deadline (a failure to get any answer is
       the attempt's: settle the key, try the next; no free connection in the gateway's own
       pool is nobody's: refund the key, answer 503 local_capacity)
    -> 2xx: the owner takes the open call
    -> 429 / 5xx / 3xx / 401 / 403: settle the key with its outcome (cooldown, breaker,
       disable); a 3xx is the key's failure like a 5xx, never followed (502 upstream_redirect
       if no other key answers)
    -> another 4xx: settle the key, the owner marks the request rejected, UpstreamRejection

Each attempt is a client span (open until the owner settles the call), sends the provider a
`traceparent` naming that span, and counts once in `keyway_upstream_attempts_total`.
"""

from __future__ import annotations

import logging
import time

from gateway.config import RoutingConfig
from gateway.errors import (
    BadRequest,
    GatewayError,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
    upstream_redirect,
)
from gateway.providers.transport import (
    PoolExhausted,
    TransportError,
    UpstreamTimeoutError,
    UpstreamTransport,
)
from gateway.routing.job import OpenCall, UpstreamRejection
from gateway.routing.outcome import Outcome, classify, cooldown_ms, learn_quota
from gateway.routing.owner import RequestOwner
from gateway.routing.table import Deployment, UpstreamKey
from gateway.state.store import Lease
from gateway.telemetry import tracing
from gateway.telemetry.metrics import Metrics

__all__ = ["call_upstream"]

log = logging.getLogger("keyway.router")

_LOCAL_RETRY_S = 1
"""Retry-After of a 503 for want of a free upstream connection (it frees as calls end)."""


async def call_upstream(
    owner: RequestOwner,
    deployment: Deployment,
    key: UpstreamKey,
    lease: Lease,
    m: Metrics,
    *,
    transport: UpstreamTransport,
    routing: RoutingConfig,
    deadline: float | None = None,
) -> OpenCall | tuple[str, GatewayError]:
    """One upstream call: an open 2xx, or (outcome, the error the client would get).

    `deadline` (`time.monotonic`): the request's; the exchange up to the headers, and the read
    of a body that is not streamed, must end by then (a stream is bounded by
    `routing.max_stream_s` where it is relayed).
    """
    job = owner.job
    adapter = deployment.pool.adapter
    provider = deployment.pool.provider
    started = time.perf_counter()
    try:
        endpoint, body = job.prepare(deployment)
    except GatewayError:
        raise
    except Exception as exc:  # a body the translation could not handle: the request's fault
        log.warning("request %s: translation failed: %r", job.request_id, exc)
        raise BadRequest(
            f"the request could not be translated for model '{job.alias}'",
            code="untranslatable_request",
        ) from None
    attempt = (
        tracing.upstream_span(
            provider,
            key.id,
            deployment.model,
            job.attempts,
            system=tracing.gen_ai_system(adapter.kind),
            operation=tracing.gen_ai_operation(endpoint.value),
        )
        if tracing.enabled()
        else tracing.NO_ATTEMPT_SPAN
    )
    owner.sending(lease)
    try:
        response = await transport.send(
            "POST",
            adapter.url(endpoint, deployment.model),
            adapter.headers(key.secret, attempt.headers_for_upstream(job.client_headers)),
            body,
            connect_timeout_s=adapter.connect_timeout_s,
            read_timeout_s=adapter.read_timeout_s,
            deadline=deadline,
        )
    except PoolExhausted as exc:
        # the gateway's own pool is full (slow clients holding streams): nothing was sent, so
        # no key failed; feeding the breakers would open them on every replica at once
        attempt.end("local_capacity", error=exc)
        log.warning("upstream %s key %s: no free upstream connection", provider, key.id)
        owner.settle_attempt(deployment, lease, Outcome.REFUND)
        raise ServiceUnavailable(
            "the gateway has no free upstream connection; retry shortly",
            code="local_capacity",
            retry_after_s=_LOCAL_RETRY_S,
        ) from None
    except Exception as exc:
        # any failure to get an answer (a secret the transport refuses included) is the
        # attempt's, not the request's: settle the key, try the next one
        timed_out = isinstance(exc, UpstreamTimeoutError)
        word = "timeout" if timed_out else "connection_error"
        m.upstream_attempt(provider, key.id, word)
        attempt.end(word, error=exc)
        if isinstance(exc, TransportError):
            log.warning("upstream %s key %s: %s", provider, key.id, type(exc).__name__)
        else:
            log.error("upstream %s key %s: %r", provider, key.id, exc)
        owner.settle_attempt(deployment, lease, Outcome.SERVER_ERROR)
        if timed_out:
            return word, UpstreamTimeout(
                f"upstream for model '{job.alias}' timed out", code="upstream_timeout"
            )
        return word, UpstreamError(
            f"could not reach the upstream for model '{job.alias}'", code="upstream_unreachable"
        )
    except BaseException as exc:  # cancelled while waiting: the span must still end
        attempt.end(Outcome.CANCELLED, error=exc)
        raise
    first_byte = time.perf_counter()
    attempt.response(response.status)
    if 200 <= response.status < 300:
        call = OpenCall(job, deployment, key, lease, response, started, first_byte, attempt)
        owner.opened(call)
        return call
    try:
        payload = await response.read()
    except TransportError:
        payload = b""
    finally:
        await response.aclose()
    outcome = classify(response.status)
    m.upstream_attempt(provider, key.id, outcome)
    attempt.end(outcome)
    headers = response.headers
    cooldown = 0
    if outcome == Outcome.RATE_LIMITED:
        cooldown = cooldown_ms(headers, default_s=routing.cooldown_s, max_s=routing.max_cooldown_s)
    owner.settle_attempt(
        deployment,
        lease,
        outcome,
        cooldown=cooldown,
        learned=learn_quota(headers),
        latency_ms=int((first_byte - started) * 1000),
        reason=f"upstream answered {response.status}",
    )
    log.info("upstream %s key %s answered %d (%s)", provider, key.id, response.status, outcome)
    if outcome == Outcome.CLIENT_ERROR:
        owner.rejected()
        raise UpstreamRejection(
            deployment,
            response.status,
            payload,
            headers.get("content-type", "application/json"),
        )
    if outcome == Outcome.RATE_LIMITED:
        return outcome, RateLimited(
            f"upstream rate limit for model '{job.alias}'",
            code="upstream_rate_limited",
            retry_after_s=max(1, cooldown // 1000),
        )
    if outcome == Outcome.AUTH_ERROR:
        return outcome, ServiceUnavailable(
            f"the upstream refused Keyway's key for model '{job.alias}'",
            code="upstream_key_refused",
        )
    if 300 <= response.status < 400:
        return outcome, upstream_redirect(response.status)
    return outcome, UpstreamError(
        f"upstream error {response.status} for model '{job.alias}'", code="upstream_error"
    )
