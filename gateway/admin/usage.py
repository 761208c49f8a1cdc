"""Admin routes that read: usage by hour and day, the replica's config status, secrets status."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import Parameter

from gateway.admin.context import AdminContext, checked_id
from gateway.admin.providers import usage_row_view
from gateway.admin.schemas import (
    ConfigStatus,
    ModelUsageView,
    SecretsStatus,
    UsageRowView,
    UsageView,
)
from gateway.control.usage import (
    MAX_BUCKETS,
    Period,
    UsageRow,
    client_usage,
    key_usage,
    model_usage,
)
from gateway.secrets.keyring import Keyring
from gateway.secrets.rotation import SealedCensus, census

__all__ = ["DecisionView", "StatusController", "UsageController", "secrets_status"]


class DecisionView(msgspec.Struct, kw_only=True):
    """One routing decision: the key chosen (provider/key id), or the error, and why others not."""

    at: float
    request_id: str
    client_id: str
    model: str
    attempts: int
    chosen: str | None
    skipped: list[str]
    """Keys acquire passed over, as "key=reason" (rpm, tpm, cooldown, breaker_open, ...)."""
    failed: list[str]
    """Keys tried and left, as "provider/key=why"."""
    error: str | None


_DEFAULT_LAST = {"hour": 24, "day": 7}
PeriodParam = Annotated[Period, Parameter(description="bucket size: hour or day")]
LastParam = Annotated[
    int | None,
    Parameter(ge=1, le=400, description="how many buckets, newest last (hours: at most 192)"),
]


def _span(period: Period, last: int | None) -> int:
    return min(last or _DEFAULT_LAST[period], MAX_BUCKETS[period])


def _total(rows: list[UsageRow]) -> UsageRowView:
    first = usage_row_view(rows[0])
    return UsageRowView(
        start=first.start,
        requests=sum(r.requests for r in rows),
        tokens_in=sum(r.tokens_in for r in rows),
        tokens_out=sum(r.tokens_out for r in rows),
        cost_usd=round(sum(r.cost_usd for r in rows), 6),
        errors=sum(r.errors for r in rows),
    )


def _view(subject: str, period: Period, rows: list[UsageRow]) -> UsageView:
    return UsageView(
        subject=subject, period=period, rows=[usage_row_view(r) for r in rows], total=_total(rows)
    )


class UsageController(Controller):
    path = "/usage"
    tags = ("usage",)

    @get("/clients/{client_id:str}", summary="A client key's usage by hour or day")
    async def client(
        self,
        admin: AdminContext,
        client_id: str,
        period: PeriodParam = "day",
        last: LastParam = None,
    ) -> UsageView:
        checked_id(client_id, "client")
        await admin.gw.usage.flush()  # this worker's counts now; the others' each second
        rows = await client_usage(admin.editor.store, client_id, period, _span(period, last))
        return _view(f"client {client_id}", period, rows)

    @get("/keys/{provider:str}/{key_id:str}", summary="An upstream key's usage by hour or day")
    async def key(
        self,
        admin: AdminContext,
        provider: str,
        key_id: str,
        period: PeriodParam = "day",
        last: LastParam = None,
    ) -> UsageView:
        checked_id(provider, "provider")
        checked_id(key_id, "key")
        await admin.gw.usage.flush()  # this worker's counts now; the others' each second
        rows = await key_usage(admin.editor.store, provider, key_id, period, _span(period, last))
        return _view(f"key {provider}/{key_id}", period, rows)

    @get("/models", summary="Usage per upstream model (and provider) by hour or day")
    async def models(
        self, admin: AdminContext, period: PeriodParam = "day", last: LastParam = None
    ) -> list[ModelUsageView]:
        providers = list(admin.snapshot.config.providers)
        await admin.gw.usage.flush()  # this worker's counts now; the others' each second
        found = await model_usage(admin.editor.store, providers, period, _span(period, last))
        return [
            ModelUsageView(
                provider=provider,
                model=model,
                period=period,
                rows=[usage_row_view(r) for r in rows],
                total=_total(rows),
            )
            for (provider, model), rows in sorted(found.items())
        ]


class StatusController(Controller):
    path = "/"
    tags = ("status",)

    @get("/config", summary="The runtime config version this replica serves, and its problems")
    async def config(self, admin: AdminContext) -> ConfigStatus:
        snapshot = admin.snapshot
        stored = await admin.editor.store.version()
        return ConfigStatus(
            version=snapshot.version,
            stored_version=stored,
            providers=len(snapshot.table.pools),
            keys=sum(len(p.keys) for p in snapshot.table.pools.values()),
            models=len(snapshot.table.aliases),
            clients=len(snapshot.clients),
            problems=list(snapshot.problems),
        )

    @get("/decisions", summary="This replica's recent routing decisions, newest first")
    async def decisions(
        self,
        admin: AdminContext,
        limit: Annotated[int, Parameter(ge=1, le=256, description="how many, newest first")] = 50,
    ) -> list[DecisionView]:
        return [DecisionView(**d) for d in admin.gw.router.decisions.recent(limit)]

    @get("/secrets", summary="Sealed upstream secrets per master key id")
    async def secrets(self, admin: AdminContext) -> SecretsStatus:
        return secrets_status(admin.sync.keyring, await census(admin.editor.store))


def secrets_status(ring: Keyring | None, counted: SealedCensus) -> SecretsStatus:
    """Counts per master key id, and which configured keys no record needs any more."""
    configured = list(ring.key_ids) if ring else []
    return SecretsStatus(
        current_key_id=ring.current if ring else None,
        configured_key_ids=configured,
        sealed_by_key_id=dict(counted.by_key_id),
        file_secrets=counted.file_secrets,
        removable_key_ids=[k for k in configured[1:] if not counted.by_key_id.get(k)],
        missing_key_ids=sorted(k for k in counted.by_key_id if k not in configured),
    )
