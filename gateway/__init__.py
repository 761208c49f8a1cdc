"""Keyway: an LLM API gateway over a Redis-coordinated pool of upstream keys."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
