"""Admin routes for model aliases: their deployments (provider + upstream model) and fallbacks."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, put
from litestar.exceptions import NotFoundException

from gateway.admin.context import AdminContext, checked_id
from gateway.admin.schemas import DeploymentInput, ModelPut, ModelView
from gateway.config import DeploymentConfig
from gateway.control.merge import Snapshot
from gateway.control.records import ModelRecord

__all__ = ["ModelsController"]


def model_view(snapshot: Snapshot, alias: str) -> ModelView:
    m = snapshot.config.models.get(alias)
    if m is None:
        raise NotFoundException(f"model alias {alias!r} does not exist")
    return ModelView(
        alias=alias,
        deployments=[DeploymentInput(provider=d.provider, model=d.model) for d in m.deployments],
        strategy=m.strategy,
        fallbacks=list(m.fallbacks),
        spread=m.spread,
        origin=snapshot.origins.get(("models", alias), "file"),
    )


class ModelsController(Controller):
    path = "/models"
    tags = ("model aliases",)

    @get("/", summary="List model aliases")
    async def list_models(self, admin: AdminContext) -> list[ModelView]:
        snapshot = admin.snapshot
        return [model_view(snapshot, alias) for alias in snapshot.config.models]

    @get("/{alias:str}", summary="One model alias")
    async def get_model(self, admin: AdminContext, alias: str) -> ModelView:
        return model_view(admin.snapshot, checked_id(alias, "model alias", alias=True))

    @put(
        "/{alias:str}",
        summary="Create or replace a model alias (201 when created)",
        responses={},
    )
    async def put_model(
        self, request: Request[Any, Any, Any], admin: AdminContext, alias: str, data: ModelPut
    ) -> Response[ModelView]:
        checked_id(alias, "model alias", alias=True)
        if "*" in alias:
            raise NotFoundException("'*' is not a model alias")
        record = ModelRecord(
            deployments=[
                DeploymentConfig(provider=d.provider, model=d.model) for d in data.deployments
            ],
            strategy=data.strategy,
            fallbacks=list(data.fallbacks),
            spread=data.spread,
        )
        created = await admin.editor.put_model(alias, record)
        admin.changed(request, "create model" if created else "replace model", alias)
        return Response(model_view(admin.snapshot, alias), status_code=201 if created else 200)

    @delete("/{alias:str}", summary="Delete a model alias", status_code=204)
    async def delete_model(
        self, request: Request[Any, Any, Any], admin: AdminContext, alias: str
    ) -> None:
        await admin.editor.delete_model(checked_id(alias, "model alias", alias=True))
        admin.changed(request, "delete model", alias)
