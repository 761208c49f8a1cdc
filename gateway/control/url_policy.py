"""Which upstream base URLs the admin API accepts: no credentials, no metadata or link-local hosts.

An admin who can point a provider at `http://169.254.169.254/` could make Keyway send its
upstream keys to the cloud's metadata service (SSRF), so such hosts are refused unless the
provider says `allow_private_upstreams` (or KEYWAY_ALLOW_PRIVATE_UPSTREAMS=1 is set). Only the
literal host is checked: a DNS name that resolves to such an address is not caught here.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["UnsafeUpstream", "check_base_url"]

_METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
     "instance-data.ec2.internal"}
)  # fmt: skip
_METADATA_IPS = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200",
                                      "fd00:ec2::254", "168.63.129.16")
)  # fmt: skip


class UnsafeUpstream(ValueError):
    """The base URL is refused; the message says why."""


def _as_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # inet_aton-style spellings (0xa9fea9fe, 2852039166) reach the same address
        if host.isdigit():
            return ipaddress.IPv4Address(int(host))
        if host.lower().startswith("0x"):
            return ipaddress.IPv4Address(int(host, 16))
    except ValueError:
        return None
    return None


def check_base_url(url: str, *, allow_private: bool = False) -> str:
    """The URL, normalised (no trailing slash); raises `UnsafeUpstream`."""
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise UnsafeUpstream("base_url: must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUpstream("base_url: not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUpstream("base_url: must start with http:// or https://")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeUpstream("base_url: has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUpstream("base_url: must not carry credentials (user:password@)")
    if parts.query or parts.fragment:
        raise UnsafeUpstream("base_url: must not have a query or fragment")
    if port == 0:
        raise UnsafeUpstream("base_url: port 0 is not valid")
    if not allow_private:
        ip = _as_ip(host.strip("[]"))
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if host in _METADATA_HOSTS or (ip is not None and ip in _METADATA_IPS):
            raise UnsafeUpstream(
                "base_url: cloud metadata addresses are refused (set allow_private_upstreams)"
            )
        if ip is not None and (ip.is_link_local or ip.is_unspecified or ip.is_multicast):
            raise UnsafeUpstream(
                "base_url: link-local, unspecified and multicast addresses are refused "
                "(set allow_private_upstreams)"
            )
    return url.rstrip("/")
