"""Probe a Keyway HTTP endpoint on loopback for container health checks (no curl needed).

Usage: python healthcheck.py [PATH] [PORT]
PATH defaults to /livez; PORT to $KEYWAY_PORT, else 8080. Exit 0 on HTTP 2xx, 1 otherwise.
A PATH of "tcp" only checks that the port accepts connections (for the fake provider).
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request

__all__ = ["probe"]

TIMEOUT_S = 3.0


def probe(path: str, port: int) -> bool:
    """Return True when the endpoint answers 2xx (or, for "tcp", accepts a connection)."""
    if path == "tcp":
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S):
                return True
        except OSError:
            return False
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


if __name__ == "__main__":
    probe_path = sys.argv[1] if len(sys.argv) > 1 else "/livez"
    probe_port = (
        int(sys.argv[2]) if len(sys.argv) > 2 else int(os.environ.get("KEYWAY_PORT", "8080"))
    )
    sys.exit(0 if probe(probe_path, probe_port) else 1)
