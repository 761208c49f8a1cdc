"""What the router works on: a client request (Job), an open upstream answer (OpenCall), and
an upstream's refusal of the request itself (UpstreamRejection)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.clients import Client
from gateway.providers.adapters import Endpoint
from gateway.providers.transport import UpstreamResponse
from gateway.routing.table import Deployment, UpstreamKey
from gateway.state.store import Lease
from gateway.telemetry import tracing

__all__ = ["Job", "OpenCall", "UpstreamRejection", "cost_micros"]


@dataclass(slots=True)
class Job:
    """One client request, as the router needs it."""

    request_id: str
    client: Client
    alias: str
    endpoint: Endpoint
    chain: tuple[Deployment, ...]
    prepare: Callable[[Deployment], tuple[Endpoint, bytes]]
    """The upstream operation and body for a deployment (the client's bytes when nothing
    needs to change, a translation when the deployment speaks the other dialect)."""
    est_tokens: int
    """Held by admission and acquire until settled: the prompt estimate plus the answer cap."""
    prompt_tokens: int
    """The prompt's estimate (~4 bytes a token): a stream's input charge when usage never comes."""
    client_headers: list[tuple[str, str]]
    attempts: int = 0
    deployment: Deployment | None = None
    """The deployment of the latest attempt (for the access log)."""
    key_id: str = ""
    """The upstream key id of the latest attempt."""
    degraded: bool = False
    """Admitted by the in-process store because Redis was unreachable."""
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Keys tried and left, as "provider/key=why"."""


@dataclass(slots=True)
class OpenCall:
    """A 2xx upstream response whose body has not been consumed yet."""

    job: Job
    deployment: Deployment
    key: UpstreamKey
    lease: Lease
    response: UpstreamResponse
    started: float
    first_byte: float
    attempt: tracing.AttemptSpan
    """The attempt's span: `finish` ends it, after the last byte."""


class UpstreamRejection(Exception):
    """The upstream refused the request itself (a 4xx that is not about the key)."""

    def __init__(self, deployment: Deployment, status: int, body: bytes, content_type: str) -> None:
        super().__init__(f"upstream answered {status}")
        self.deployment = deployment
        self.status = status
        self.body = body
        self.content_type = content_type


def cost_micros(deployment: Deployment, tokens_in: int, tokens_out: int) -> int:
    price = deployment.price
    if price is None or tokens_in < 0:
        return 0 if price is None else -1
    return round(tokens_in * price.input + max(tokens_out, 0) * price.output)
