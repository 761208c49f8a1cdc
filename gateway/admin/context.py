"""What every admin handler is given: the gateway, its control plane, and the audit trail."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.exceptions import NotFoundException

from gateway.admin.auth import AdminAuth, audit
from gateway.control.editor import ConfigEditor, EditError
from gateway.control.merge import Snapshot
from gateway.control.sync import ConfigSync
from gateway.telemetry.log_safety import text_field

if TYPE_CHECKING:
    from gateway.runtime import Gateway

__all__ = ["ADMIN_ACTOR", "ADMIN_REMOTE", "AdminContext", "checked_id"]

ADMIN_ACTOR = "admin_actor"
"""Key of `scope["state"]` (`request.state`) naming the admin key that passed ('admin#2')."""
ADMIN_REMOTE = "admin_remote"
"""Key of `scope["state"]` holding the client's address (see `gateway.admin.auth`)."""

_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ALIAS = re.compile(r"^[A-Za-z0-9._:@/+-]{1,256}$")


def checked_id(value: str, what: str, *, alias: bool = False) -> str:
    """A path parameter that cannot name anything gets 404 before it reaches Redis."""
    if not (_ALIAS if alias else _ID).match(value):
        raise NotFoundException(f"{what} {value[:80]!r} does not exist")
    return value


class AdminContext:
    """A plain class, not a dataclass: Litestar passes it through its DI without inspecting it."""

    __slots__ = ("auth", "editor", "gw", "sync")

    def __init__(
        self, gw: Gateway, sync: ConfigSync, editor: ConfigEditor, auth: AdminAuth
    ) -> None:
        self.gw = gw
        self.sync = sync
        self.editor = editor
        self.auth = auth

    @property
    def snapshot(self) -> Snapshot:
        snapshot = self.sync.snapshot
        if snapshot is None:
            raise EditError(503, "the runtime config is not loaded yet; retry shortly")
        return snapshot

    def changed(
        self, request: Request[Any, Any, Any], action: str, target: str, note: str = ""
    ) -> None:
        """Audit one change: who (admin key number), what, from where, and `note`. Never a secret.

        The actor and the client's address are what the admin gate found (`gateway.admin.router`).
        """
        state = request.scope.get("state") or {}
        actor = state.get(ADMIN_ACTOR, "admin#?")
        remote = state.get(ADMIN_REMOTE, "-")
        target = text_field(target)
        detail = f"; {note}" if note else ""
        audit.info(
            "admin change: %s %s by %s from %s%s",
            action,
            target,
            actor,
            remote,
            detail,
            extra={"event": "admin_change", "action": action, "target": target,
                   "actor": actor, "remote": remote, "note": note},
        )  # fmt: skip
