"""The fake provider's knobs: latency, stream shape, advertised limits, and the model list.

Read once (from arguments or from ``KEYWAY_FAKE_*`` environment variables), then frozen.
Granian imports the app by string in each worker process, so :func:`serve` hands the settings
to the workers through the environment (:meth:`FakeSettings.to_env`, :meth:`FakeSettings.from_env`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

__all__ = ["DEFAULT_MODELS", "ENV_PREFIX", "FakeSettings"]

ENV_PREFIX = "KEYWAY_FAKE_"

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1-mini",
    "text-embedding-3-small",
    "claude-3-5-haiku-latest",
    "claude-haiku-4-5",
)


class FakeSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the fake upstream behaves; the same for every key unless a fault says otherwise."""

    latency_ms: float = 0.0
    """Delay before the response headers of every API request."""

    chunk_delay_ms: float = 0.0
    """Delay between two consecutive messages of a streamed response."""

    stream_chunks: int = 5
    """Number of content deltas in a streamed answer (the reply has at least that many words)."""

    rpm_limit: int | None = None
    """Requests per key per 60 s window; exceeding it answers 429. None: advertise, never enforce."""

    tpm_limit: int | None = None
    """Tokens per key per 60 s window; exceeding it answers 429. None: advertise, never enforce."""

    models: tuple[str, ...] = DEFAULT_MODELS
    """Model ids listed by ``GET /v1/models``; requests for other models are still answered."""

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.chunk_delay_ms < 0:
            raise ValueError("latency_ms and chunk_delay_ms must be >= 0")
        if self.stream_chunks < 1:
            raise ValueError("stream_chunks must be >= 1")
        for limit in (self.rpm_limit, self.tpm_limit):
            if limit is not None and limit < 1:
                raise ValueError("rpm_limit and tpm_limit must be >= 1 when set")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FakeSettings:
        """Settings from ``KEYWAY_FAKE_*`` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        def optional_int(name: str) -> int | None:
            value = get(name)
            return None if value is None else int(value)

        models = get("MODELS")
        return cls(
            latency_ms=float(get("LATENCY_MS") or 0),
            chunk_delay_ms=float(get("CHUNK_DELAY_MS") or 0),
            stream_chunks=int(get("STREAM_CHUNKS") or 5),
            rpm_limit=optional_int("RPM"),
            tpm_limit=optional_int("TPM"),
            models=DEFAULT_MODELS
            if models is None
            else tuple(m.strip() for m in models.split(",") if m.strip()),
        )

    def to_env(self) -> dict[str, str]:
        """The ``KEYWAY_FAKE_*`` variables that :meth:`from_env` turns back into these settings."""
        env = {
            ENV_PREFIX + "LATENCY_MS": repr(self.latency_ms),
            ENV_PREFIX + "CHUNK_DELAY_MS": repr(self.chunk_delay_ms),
            ENV_PREFIX + "STREAM_CHUNKS": str(self.stream_chunks),
            ENV_PREFIX + "RPM": "" if self.rpm_limit is None else str(self.rpm_limit),
            ENV_PREFIX + "TPM": "" if self.tpm_limit is None else str(self.tpm_limit),
            ENV_PREFIX + "MODELS": ",".join(self.models),
        }
        return env
