"""The admin API (/admin): providers, upstream keys, model aliases, client keys, usage, status."""

from __future__ import annotations

__all__: list[str] = []
