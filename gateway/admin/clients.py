"""Admin routes for client keys: create (plaintext shown once), list, limits, revoke."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.exceptions import NotFoundException

from gateway.admin.context import AdminContext, checked_id
from gateway.admin.providers import given
from gateway.admin.schemas import ClientCreate, ClientCreated, ClientPatch, ClientView, Revoked
from gateway.control.merge import Snapshot

__all__ = ["ClientsController"]


def client_view(snapshot: Snapshot, client_id: str) -> ClientView:
    spec = snapshot.client_specs.get(client_id)
    if spec is None:
        raise NotFoundException(f"client {client_id!r} does not exist")
    return ClientView(
        id=spec.id,
        key_hint=spec.hint,
        rpm=spec.rpm,
        tpm=spec.tpm,
        models=list(spec.models),
        budget_daily_usd=spec.budget_daily_usd,
        budget_monthly_usd=spec.budget_monthly_usd,
        max_concurrency=spec.max_concurrency,
        origin=spec.origin,
        created_ms=spec.created_ms,
    )


class ClientsController(Controller):
    path = "/clients"
    tags = ("client keys",)

    @get("/", summary="List client keys (never the keys themselves)")
    async def list_clients(self, admin: AdminContext) -> list[ClientView]:
        snapshot = admin.snapshot
        return [client_view(snapshot, cid) for cid in snapshot.client_specs]

    @post("/", summary="Create a client key: the response holds its plaintext, this once")
    async def create_client(
        self, request: Request[Any, Any, Any], admin: AdminContext, data: ClientCreate
    ) -> ClientCreated:
        fields = msgspec.structs.asdict(data)
        client_id = fields.pop("id")
        plaintext = await admin.editor.create_client(client_id, fields)
        admin.changed(request, "create client", client_id)
        return ClientCreated(client=client_view(admin.snapshot, client_id), key=plaintext)

    @get("/{client_id:str}", summary="One client key")
    async def get_client(self, admin: AdminContext, client_id: str) -> ClientView:
        return client_view(admin.snapshot, checked_id(client_id, "client"))

    @patch("/{client_id:str}", summary="Change limits, budgets or allowed models")
    async def update_client(
        self,
        request: Request[Any, Any, Any],
        admin: AdminContext,
        client_id: str,
        data: ClientPatch,
    ) -> ClientView:
        await admin.editor.update_client(checked_id(client_id, "client"), given(data))
        admin.changed(request, "update client", client_id)
        return client_view(admin.snapshot, client_id)

    @post(
        "/{client_id:str}/revoke", summary="Revoke a client key on every replica", status_code=200
    )
    async def revoke_client(
        self, request: Request[Any, Any, Any], admin: AdminContext, client_id: str
    ) -> Revoked:
        await admin.editor.revoke_client(checked_id(client_id, "client"))
        admin.changed(request, "revoke client", client_id)
        return Revoked(id=client_id)
