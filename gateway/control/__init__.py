"""The control plane: runtime config records in Redis, merged over the config file, kept in sync."""

from __future__ import annotations

__all__: list[str] = []
