"""Command line of the fake provider: ``python -m gateway.fake_provider --port 9100``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gateway.fake_provider.server import serve
from gateway.fake_provider.settings import DEFAULT_MODELS, FakeSettings

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.fake_provider",
        description="A fake OpenAI / Azure OpenAI / Anthropic upstream with fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before the headers")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between chunks")
    parser.add_argument("--stream-chunks", type=int, default=5, help="content deltas per stream")
    parser.add_argument("--rpm", type=int, default=None, help="enforced requests/min per key")
    parser.add_argument("--tpm", type=int, default=None, help="enforced tokens/min per key")
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS), help="comma-separated ids for /v1/models"
    )
    parser.add_argument("--workers", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = FakeSettings(
        latency_ms=args.latency_ms,
        chunk_delay_ms=args.chunk_delay_ms,
        stream_chunks=args.stream_chunks,
        rpm_limit=args.rpm,
        tpm_limit=args.tpm,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
    )
    serve(args.host, args.port, settings, workers=args.workers)


if __name__ == "__main__":
    main()
