"""The owner of one request's shared state: its admission, every lease, its charge.

    async with RequestOwner(router, job) as owner:
        call = await router.open(owner)      # admits, leases; failed attempts settle on the way
        ... relay the answer; owner.observe(outcome, usage) / owner.observe_text(n)
    # leaving the block settles what is still open, once, whatever happened inside it

Entering the owner takes a slot of the client's concurrency cap (routing/client_gate.py, in
process, before anything is asked of Redis): above the cap the request is refused with 429
`client_concurrency` and nothing is held. The exit gives the slot back, once, on every path.

Nothing else settles. The router reports to the owner as it goes (`admitted`, `hold`,
`sending`, `settle_attempt`, `opened`, `rejected`); the exit then settles, each at most once:

- the open call (the 2xx the client is served from): the observed outcome and usage. Without a
  usage report, a stream is charged from its streamed text (`observe_text`: input = the prompt
  estimate, output = ceil(text bytes / 4)); anything else keeps its estimate. An exception
  before an outcome was observed settles it `cancelled` (neutral for the key's breaker);
- every lease still held: an attempt interrupted between acquire and its answer. `refund` when
  nothing was sent upstream, else `cancelled`; either way zero tokens (none were consumed);
- the admission: charged with the open call; `rejected` when the upstream refused the request
  as invalid (the request counts in the client's window, its tokens and cost do not);
  refunded otherwise.

While a call is open, its lease and the admission hold are renewed every third of
`routing.lease_ttl_s` (one renew.lua call per record per period, never per chunk), so a stream
longer than the lease TTL is not swept as if its replica had died. The open calls of a process
share one timer (`Renewals`): a timer of its own per request cost each request more CPU than
its renewals ever do, as almost every call ends long before its first renewal.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import TYPE_CHECKING

from gateway.errors import RateLimited
from gateway.routing.client_gate import CLIENT_GATE, ClientGate, client_cap
from gateway.routing.job import Job, OpenCall
from gateway.routing.outcome import NOTHING_LEARNED, Learned, Outcome
from gateway.routing.table import Deployment
from gateway.state.store import Lease, ScriptCall, SharedState, StateError
from gateway.telemetry.metrics import get_metrics

if TYPE_CHECKING:
    from gateway.routing.router import Router

__all__ = ["Renewals", "RequestOwner"]

log = logging.getLogger("keyway.owner")

_CONCURRENCY_RETRY_S = 1
"""Retry-After of a request above its client's concurrency cap (a slot frees as a call ends)."""


class Renewals:
    """Open calls renewed every `period_s` after they opened, on one timer for all of them.

    Calls are kept in the order they opened, which is the order they are due in (one period
    for all), so the timer is armed for the first one only. A call that ends just leaves the
    table; the timer, when it comes, re-arms for whichever call is first then, and stops when
    none is left.
    """

    __slots__ = ("_due", "_loop", "_timer", "period_s")

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._due: dict[RequestOwner, float] = {}
        """Open calls -> loop time of their next renewal, earliest first."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._due)

    def add(self, owner: RequestOwner) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests run one each): forget the old one
            self._reset(loop)
        due = loop.time() + self.period_s
        self._due[owner] = due
        if self._timer is None:
            self._timer = loop.call_at(due, self._fire)

    def discard(self, owner: RequestOwner) -> None:
        self._due.pop(owner, None)

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due.clear()
        self._loop = loop

    def _fire(self) -> None:
        self._timer = None
        loop = self._loop
        if loop is None:
            return
        due = self._due
        now = loop.time()
        while due:
            owner, at = next(iter(due.items()))
            if at > now + _TIMER_SLACK_S:
                break
            del due[owner]
            if owner.renew_due():  # still open: due again a period from now, last in order
                due[owner] = now + self.period_s
        if due:
            self._timer = loop.call_at(next(iter(due.values())), self._fire)


_TIMER_SLACK_S = 0.001
"""The event loop may run a timer up to one clock tick early; that is on time."""
_RENEWALS: dict[float, Renewals] = {}
"""The process's renewal tables, by period (one per `routing.lease_ttl_s` in use)."""


def _renewals(period_s: float) -> Renewals:
    renewals = _RENEWALS.get(period_s)
    if renewals is None:
        renewals = _RENEWALS[period_s] = Renewals(period_s)
    return renewals


class RequestOwner:
    """Holds everything one request took from shared state; its exit gives it all back."""

    def __init__(self, router: Router, job: Job, gate: ClientGate | None = None) -> None:
        self.router = router
        self.job = job
        self._gate = CLIENT_GATE if gate is None else gate
        """The process's gate, unless one is given (a test's)."""
        self._gated = False
        """A slot of the client's concurrency cap is held (given back by `close`)."""
        self.call: OpenCall | None = None
        self._admitted = False
        self._rejected = False
        self._held: dict[str, tuple[Deployment, Lease, bool]] = {}
        """Leases not settled yet, by lease id: (deployment, lease, sent upstream)."""
        self._outcome: str | None = None
        self._usage: tuple[int, int] | None = None
        self._text_bytes = -1
        self._closed = False
        self._renewals: Renewals | None = None
        """The table this call is renewed by while it is open."""
        self._renewing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RequestOwner:
        """Take a slot of the client's concurrency cap, or refuse the request (429)."""
        client = self.job.client
        cap = client_cap(client.max_concurrency, self.router.cfg.client_max_concurrency)
        if not self._gate.enter(client.id, cap):
            get_metrics().rate_limited("client_concurrency")
            raise RateLimited(
                f"this client key already has {cap} requests in flight on this replica "
                "(its max_concurrency); retry when one of them ends",
                code="client_concurrency",
                retry_after_s=_CONCURRENCY_RETRY_S,
            )
        self._gated = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what the router reports --------------------------------------------------------------

    def admitted(self) -> None:
        self._admitted = True

    def hold(self, deployment: Deployment, lease: Lease) -> None:
        """A lease was taken; nothing has been sent upstream with it yet."""
        self._held[lease.id] = (deployment, lease, False)

    def sending(self, lease: Lease) -> None:
        """The request is about to leave for the upstream on this lease."""
        deployment, _, _ = self._held[lease.id]
        self._held[lease.id] = (deployment, lease, True)

    def settle_attempt(
        self,
        deployment: Deployment,
        lease: Lease,
        outcome: str,
        *,
        cooldown: int = 0,
        learned: Learned = NOTHING_LEARNED,
        latency_ms: int = -1,
        reason: str = "",
    ) -> None:
        """An attempt that opened no call: settle its lease now, with zero tokens."""
        if self._held.pop(lease.id, None) is None:
            return
        try:
            self.router.settlement.settle_pool(
                deployment,
                self.job,
                lease,
                outcome,
                cooldown=cooldown,
                learned=learned,
                latency_ms=latency_ms,
                reason=reason,
            )
        except Exception:
            log.exception("settling lease %s failed; settling it plainly", lease.id)
            self._settle_plainly(deployment, lease, outcome)

    def opened(self, call: OpenCall) -> None:
        """A 2xx: the call owns its lease from here until the exit."""
        self._held.pop(call.lease.id, None)
        self.call = call
        self._schedule_renewal()

    def rejected(self) -> None:
        """The upstream refused the request itself (a 4xx that is not about the key)."""
        self._rejected = True

    # -- what the relay reports ---------------------------------------------------------------

    @property
    def opened_call(self) -> OpenCall:
        """The open call (only asked for once `router.open` has returned it)."""
        if self.call is None:
            raise RuntimeError(f"request {self.job.request_id} has no open call")
        return self.call

    def observe(self, outcome: str, tokens_in: int = -1, tokens_out: int = -1) -> None:
        """How the open call ended; tokens -1 = the upstream did not say."""
        self._outcome = outcome
        if tokens_in >= 0:
            self._usage = (tokens_in, max(tokens_out, 0))

    def observe_text(self, text_bytes: int) -> None:
        """UTF-8 bytes of model text streamed so far (the charge when usage never comes)."""
        self._text_bytes = text_bytes

    @property
    def charged_usage(self) -> tuple[int, int]:
        """The tokens the open call is charged: reported, from streamed text, or (-1, -1)."""
        if self._usage is not None:
            return self._usage
        if self._text_bytes >= 0:
            return self.job.prompt_tokens, -(-self._text_bytes // 4)
        return -1, -1

    # -- the exit -----------------------------------------------------------------------------

    def close(self) -> None:
        """Settle what is still open, once. Never raises: a failure here is logged."""
        if self._closed:
            return
        self._closed = True
        if self._gated:  # first: nothing below may keep the slot from its client
            self._gated = False
            self._gate.leave(self.job.client.id)
        self._stop_renewal()
        settlement = self.router.settlement
        for deployment, lease, sent in list(self._held.values()):
            self._settle_plainly(deployment, lease, Outcome.CANCELLED if sent else Outcome.REFUND)
        self._held.clear()
        call = self.call
        if call is not None:
            tokens_in, tokens_out = self.charged_usage
            outcome = self._outcome or Outcome.CANCELLED
            try:
                settlement.finish(call, outcome, tokens_in=tokens_in, tokens_out=tokens_out)
            except Exception:
                log.exception("settling request %s failed", self.job.request_id)
            return
        if self._admitted:
            mode = "rejected" if self._rejected else "refund"
            try:
                settlement.close_admission(self.job, mode)
            except Exception:
                log.exception("closing the admission of %s failed", self.job.request_id)

    def _settle_plainly(self, deployment: Deployment, lease: Lease, outcome: str) -> None:
        try:
            self.router.settlement.settle_pool(deployment, self.job, lease, outcome)
        except Exception:
            log.exception("settling lease %s failed", lease.id)

    # -- renewal ------------------------------------------------------------------------------

    def _schedule_renewal(self) -> None:
        self._renewals = _renewals(self.router.lease_ttl_s / 3)
        self._renewals.add(self)

    def _stop_renewal(self) -> None:
        if self._renewals is not None:
            self._renewals.discard(self)
            self._renewals = None
        if self._renewing is not None:
            self._renewing.cancel()
            self._renewing = None

    def renew_due(self) -> bool:
        """Renew the open call's lease and hold now (called by `Renewals`); False once closed."""
        if self._closed or self.call is None:
            return False
        self._renewing = asyncio.get_running_loop().create_task(self._renew(self.call))
        return True

    async def _renew(self, call: OpenCall) -> None:
        ttl_ms = int(self.router.lease_ttl_s * 1000)
        router = self.router
        lease_store: SharedState = router.degraded.local if call.lease.local else router.state
        hold_store: SharedState = router.degraded.local if self.job.degraded else router.state
        calls: dict[int, tuple[SharedState, list[ScriptCall]]] = {}
        for store, script_call in (
            (lease_store, lease_store.renew_lease_call(call.lease, ttl_ms)),
            (
                hold_store,
                hold_store.renew_hold_call(self.job.client.id, self.job.request_id, ttl_ms),
            ),
        ):
            calls.setdefault(id(store), (store, []))[1].append(script_call)
        for store, batch in calls.values():
            try:
                await store.run(batch)
            except StateError as exc:  # the next period tries again; the TTL covers two misses
                log.warning("renewing request %s: %s", self.job.request_id, exc)
