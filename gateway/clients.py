"""The client keys Keyway accepts, held as HMAC-SHA-256 digests in a local cache.

A lookup hashes the presented key with the server secret and reads a dict: no Redis call, and
the plaintext is never kept. Digests are compared with `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gateway.config import ClientConfig
from gateway.config_load import resolve_secret

__all__ = ["Client", "ClientDirectory", "client_key_secret", "make_client"]


def client_key_secret(env: Mapping[str, str] | None = None) -> bytes:
    """The HMAC secret: KEYWAY_CLIENT_KEY_SECRET, or a random one for this process."""
    value = (os.environ if env is None else env).get("KEYWAY_CLIENT_KEY_SECRET")
    return value.encode() if value else secrets.token_bytes(32)


@dataclass(frozen=True, slots=True)
class Client:
    """A client key's identity and what it may do (never its plaintext)."""

    id: str
    rpm: int
    tpm: int
    models: frozenset[str]
    budget_day_micros: int
    budget_month_micros: int
    digest: bytes = field(repr=False)
    max_concurrency: int | None = None
    """Its requests in flight at once on this replica (routing/client_gate.py); 0 = no cap,
    None = `routing.client_max_concurrency`."""

    def may_use(self, alias: str) -> bool:
        return "*" in self.models or alias in self.models


def _micros(usd: float | None) -> int:
    return 0 if usd is None else max(1, round(usd * 1_000_000))


def make_client(
    client_id: str,
    digest: bytes,
    *,
    rpm: int | None,
    tpm: int | None,
    models: tuple[str, ...] | list[str],
    budget_daily_usd: float | None,
    budget_monthly_usd: float | None,
    max_concurrency: int | None = None,
) -> Client:
    """A client known only by its key's digest (a runtime record of the control plane)."""
    return Client(
        id=client_id,
        rpm=rpm or 0,
        tpm=tpm or 0,
        models=frozenset(models),
        budget_day_micros=_micros(budget_daily_usd),
        budget_month_micros=_micros(budget_monthly_usd),
        digest=digest,
        max_concurrency=max_concurrency,
    )


class ClientDirectory:
    """Digest -> Client, replaced wholesale when the set of keys changes."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._by_digest: dict[bytes, Client] = {}

    def digest(self, presented: str) -> bytes:
        return hmac.new(self._secret, presented.encode(), hashlib.sha256).digest()

    def load_config(
        self, clients: list[ClientConfig], env: Mapping[str, str] | None = None
    ) -> None:
        table: dict[bytes, Client] = {}
        for i, c in enumerate(clients):
            digest = self.digest(resolve_secret(c.key, f"clients[{i}].key", env))
            table[digest] = Client(
                id=c.id,
                rpm=c.rpm or 0,
                tpm=c.tpm or 0,
                models=frozenset(c.models),
                budget_day_micros=_micros(c.budget_daily_usd),
                budget_month_micros=_micros(c.budget_monthly_usd),
                digest=digest,
                max_concurrency=c.max_concurrency,
            )
        self._by_digest = table

    def replace(self, clients: Iterable[Client]) -> None:
        """Swap in a whole new set of clients, e.g. merged from digest-only runtime records."""
        self._by_digest = {c.digest: c for c in clients}

    def lookup(self, presented: str) -> Client | None:
        digest = self.digest(presented)
        client = self._by_digest.get(digest)
        if client is None or not hmac.compare_digest(client.digest, digest):
            return None
        return client

    def __len__(self) -> int:
        return len(self._by_digest)
