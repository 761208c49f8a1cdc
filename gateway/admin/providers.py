"""Admin routes for providers and their upstream keys (masked secrets, live state, enable/disable)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post, put
from litestar.exceptions import NotFoundException

from gateway.admin.context import AdminContext, checked_id
from gateway.admin.schemas import (
    KeyCreate,
    KeyDetail,
    KeyDisable,
    KeyPatch,
    KeyStateView,
    KeyView,
    ProviderCreate,
    ProviderPatch,
    ProviderView,
    SecretReplace,
    UsageRowView,
)
from gateway.control.editor import EditError
from gateway.control.merge import Snapshot
from gateway.control.records import ProviderRecord, key_field
from gateway.control.usage import UsageRow, key_live_state, key_usage

__all__ = ["KeysController", "ProvidersController", "given", "usage_row_view"]

_PRIVATE_REFUSED = (
    "allow_private_upstreams cannot be set through the admin API: private upstreams are allowed "
    "only by the config file (server.allow_private_upstreams) or KEYWAY_ALLOW_PRIVATE_UPSTREAMS=1"
)


def given(struct: msgspec.Struct) -> dict[str, Any]:
    """The fields a PATCH body actually set."""
    return {k: v for k, v in msgspec.structs.asdict(struct).items() if v is not msgspec.UNSET}


def usage_row_view(row: UsageRow) -> UsageRowView:
    start = dt.datetime.fromtimestamp(row.start_ms / 1000, tz=dt.UTC)
    return UsageRowView(
        start=start.isoformat().replace("+00:00", "Z"),
        requests=row.requests,
        tokens_in=row.tokens_in,
        tokens_out=row.tokens_out,
        cost_usd=round(row.cost_usd, 6),
        errors=row.errors,
    )


def provider_view(snapshot: Snapshot, name: str) -> ProviderView:
    p = snapshot.config.providers.get(name)
    if p is None:
        raise NotFoundException(f"provider {name!r} does not exist")
    return ProviderView(
        name=name,
        kind=p.kind,
        base_url=p.base_url,
        timeout_s=p.timeout_s,
        connect_timeout_s=p.connect_timeout_s,
        api_version=p.api_version,
        anthropic_version=p.anthropic_version,
        keys=len(p.keys),
        origin=snapshot.origins.get(("providers", name), "file"),
    )


def key_views(snapshot: Snapshot, provider: str, disabled: dict[str, str]) -> list[KeyView]:
    pool = snapshot.table.pools.get(provider)
    p = snapshot.config.providers.get(provider)
    if pool is None or p is None:
        raise NotFoundException(f"provider {provider!r} does not exist")
    configs = {k.id: k for k in p.keys}
    return [
        KeyView(
            provider=provider,
            id=k.id,
            secret=k.masked,
            rpm=configs[k.id].rpm,
            tpm=configs[k.id].tpm,
            max_concurrency=configs[k.id].max_concurrency,
            weight=configs[k.id].weight,
            origin=snapshot.origins.get(("keys", key_field(provider, k.id)), "file"),
            disabled=disabled.get(k.id),
        )
        for k in pool.keys
    ]


class ProvidersController(Controller):
    path = "/providers"
    tags = ("providers",)

    @get("/", summary="List providers")
    async def list_providers(self, admin: AdminContext) -> list[ProviderView]:
        snapshot = admin.snapshot
        return [provider_view(snapshot, name) for name in snapshot.config.providers]

    @post("/", summary="Create a provider (no keys yet)")
    async def create_provider(
        self, request: Request[Any, Any, Any], admin: AdminContext, data: ProviderCreate
    ) -> ProviderView:
        fields = given(data)
        if fields.pop("allow_private_upstreams", msgspec.UNSET) is not msgspec.UNSET:
            raise EditError(403, _PRIVATE_REFUSED)
        name = fields.pop("name")
        await admin.editor.create_provider(name, ProviderRecord(**fields))
        admin.changed(request, "create provider", name)
        return provider_view(admin.snapshot, name)

    @get("/{name:str}", summary="One provider")
    async def get_provider(self, admin: AdminContext, name: str) -> ProviderView:
        return provider_view(admin.snapshot, checked_id(name, "provider"))

    @patch("/{name:str}", summary="Change a provider's settings")
    async def update_provider(
        self, request: Request[Any, Any, Any], admin: AdminContext, name: str, data: ProviderPatch
    ) -> ProviderView:
        fields = given(data)
        if "allow_private_upstreams" in fields:
            raise EditError(403, _PRIVATE_REFUSED)
        key_secrets = fields.pop("key_secrets", None)
        move = await admin.editor.update_provider(checked_id(name, "provider"), fields, key_secrets)
        note = ""
        if move is not None:
            replaced = ", ".join(move.secrets_replaced) or "none (allow-listed host)"
            note = f"base_url {move.old} -> {move.new}, secrets replaced: {replaced}"
        elif key_secrets:
            note = f"secrets replaced: {', '.join(sorted(key_secrets))}"
        admin.changed(request, "update provider", name, note)
        return provider_view(admin.snapshot, name)

    @delete("/{name:str}", summary="Delete a provider and its keys", status_code=204)
    async def delete_provider(
        self, request: Request[Any, Any, Any], admin: AdminContext, name: str
    ) -> None:
        await admin.editor.delete_provider(checked_id(name, "provider"))
        admin.changed(request, "delete provider", name)


class KeysController(Controller):
    path = "/providers/{provider:str}/keys"
    tags = ("upstream keys",)

    async def _view(self, admin: AdminContext, provider: str, key_id: str) -> KeyView:
        disabled = await admin.editor.store.disabled_keys(provider)
        for view in key_views(admin.snapshot, provider, disabled):
            if view.id == key_id:
                return view
        raise NotFoundException(f"key {provider}/{key_id} does not exist")

    @get("/", summary="List a provider's keys, secrets masked")
    async def list_keys(self, admin: AdminContext, provider: str) -> list[KeyView]:
        checked_id(provider, "provider")
        disabled = await admin.editor.store.disabled_keys(provider)
        return key_views(admin.snapshot, provider, disabled)

    @post("/", summary="Add an upstream key (its secret is sealed before it is stored)")
    async def add_key(
        self, request: Request[Any, Any, Any], admin: AdminContext, provider: str, data: KeyCreate
    ) -> KeyView:
        fields = msgspec.structs.asdict(data)
        key_id, secret = fields.pop("id"), fields.pop("secret")
        await admin.editor.add_key(checked_id(provider, "provider"), key_id, secret, fields)
        admin.changed(request, "add key", f"{provider}/{key_id}")
        return await self._view(admin, provider, key_id)

    @get("/{key_id:str}", summary="One key with its live state and today's usage")
    async def get_key(self, admin: AdminContext, provider: str, key_id: str) -> KeyDetail:
        view = await self._view(admin, checked_id(provider, "provider"), checked_id(key_id, "key"))
        store = admin.editor.store
        live = await key_live_state(store, provider, key_id)
        today = (await key_usage(store, provider, key_id, "day", 1))[0]
        state = KeyStateView(
            status=live.status,
            in_flight=live.in_flight,
            requests_last_minute=live.requests_last_minute,
            cooldown_until_ms=live.cooldown_until_ms,
            breaker=live.breaker,
            breaker_until_ms=live.breaker_until_ms,
            remaining_requests=live.remaining_requests,
            remaining_tokens=live.remaining_tokens,
            remaining_reset_ms=live.remaining_reset_ms,
            latency_ms=live.latency_ms,
        )
        return KeyDetail(key=view, state=state, usage_today=usage_row_view(today))

    @patch("/{key_id:str}", summary="Change a key's limits or weight")
    async def update_key(
        self,
        request: Request[Any, Any, Any],
        admin: AdminContext,
        provider: str,
        key_id: str,
        data: KeyPatch,
    ) -> KeyView:
        await admin.editor.update_key(
            checked_id(provider, "provider"), checked_id(key_id, "key"), given(data)
        )
        admin.changed(request, "update key", f"{provider}/{key_id}")
        return await self._view(admin, provider, key_id)

    @put("/{key_id:str}/secret", summary="Replace a key's secret")
    async def replace_secret(
        self,
        request: Request[Any, Any, Any],
        admin: AdminContext,
        provider: str,
        key_id: str,
        data: SecretReplace,
    ) -> KeyView:
        await admin.editor.replace_secret(
            checked_id(provider, "provider"), checked_id(key_id, "key"), data.secret
        )
        admin.changed(request, "replace secret of key", f"{provider}/{key_id}")
        return await self._view(admin, provider, key_id)

    @post("/{key_id:str}/disable", summary="Take a key out of rotation", status_code=200)
    async def disable_key(
        self,
        request: Request[Any, Any, Any],
        admin: AdminContext,
        provider: str,
        key_id: str,
        data: KeyDisable | None = None,
    ) -> KeyView:
        reason = data.reason if data else ""
        checked_id(provider, "provider")
        await admin.editor.set_key_disabled(provider, checked_id(key_id, "key"), True, reason)
        admin.changed(request, "disable key", f"{provider}/{key_id}")
        return await self._view(admin, provider, key_id)

    @post(
        "/{key_id:str}/enable",
        summary="Put a key back (clears an operator's or the upstream's 401/403 disable)",
        status_code=200,
    )
    async def enable_key(
        self, request: Request[Any, Any, Any], admin: AdminContext, provider: str, key_id: str
    ) -> KeyView:
        checked_id(provider, "provider")
        await admin.editor.set_key_disabled(provider, checked_id(key_id, "key"), False, "")
        admin.changed(request, "enable key", f"{provider}/{key_id}")
        return await self._view(admin, provider, key_id)

    @delete("/{key_id:str}", summary="Delete a key", status_code=204)
    async def delete_key(
        self, request: Request[Any, Any, Any], admin: AdminContext, provider: str, key_id: str
    ) -> None:
        await admin.editor.delete_key(checked_id(provider, "provider"), checked_id(key_id, "key"))
        admin.changed(request, "delete key", f"{provider}/{key_id}")
