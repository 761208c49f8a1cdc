"""What every API request ends with: its metrics, its server span's status, its access line.

The endpoints fill one `AccessRecord` as the request goes (client, alias, attempts, status,
tokens); `report_request` turns it into the `keyway_requests_total` and duration samples, the
server span's attributes, and, when the access log is on, one log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from gateway.routing.router import Job
from gateway.telemetry import tracing
from gateway.telemetry.access_log import ACCESS_LOGGER, AccessRecord, log_request
from gateway.telemetry.metrics import get_metrics

__all__ = ["CLIENT_GONE", "method_label", "note_job", "report_request"]

CLIENT_GONE = 499
"""The status recorded (never sent) when the client left before its request was read."""

_access = logging.getLogger(ACCESS_LOGGER)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The request method as a metric label and span name: a client cannot invent new series."""
    return method if method in _METHODS else "OTHER"


def note_job(record: AccessRecord, job: Job) -> None:
    """The routing facts of a request: attempts, and the deployment and key tried last."""
    record.attempts = job.attempts
    record.key_id = job.key_id
    deployment = job.deployment
    if deployment is not None:
        record.deployment = deployment.pool.provider + "/" + deployment.model


def report_request(
    record: AccessRecord,
    span: tracing.RequestSpan,
    started: float,
    headers: Iterable[tuple[bytes, bytes]],
) -> None:
    """Count the request, label its span and write its access line; `started`: perf_counter."""
    seconds = time.perf_counter() - started
    get_metrics().request_done(record.route, record.status, seconds, record.method)
    span.set_request(request_id=record.request_id, client_id=record.client_id, model=record.model)
    span.set_status(record.status)
    if _access.isEnabledFor(logging.INFO):
        record.latency_ms = round(seconds * 1000, 3)
        record.trace_id = span.trace_id or tracing.incoming_trace_id(headers)
        log_request(record)
