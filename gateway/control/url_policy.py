"""The upstream URL policy: no credentials in a base URL, no metadata or link-local addresses.

An admin who can point a provider at `http://169.254.169.254/` could make Keyway send its
upstream keys to the cloud's metadata service (SSRF), so such addresses are refused unless
private upstreams are allowed (`server.allow_private_upstreams` in the config file or
KEYWAY_ALLOW_PRIVATE_UPSTREAMS=1; never through the admin API). Loopback and RFC 1918 addresses
stay allowed: self-hosted models live there.

The policy is applied twice:

- `check_base_url`, when a config file is loaded and when the admin API sets a base URL: the
  host is read as the resolver reads it, so `0251.0376.0251.0376`, `169.254.43518` and
  `0xa9.0xfe.0xa9.0xfe` (inet_aton spellings, all 169.254.169.254) are caught;
- `address_refusal`, by the transport, on every address a host resolved to, before it
  connects (`gateway.providers.transport.AddressPolicy`): a DNS name that resolves to such an
  address, or is rebound to one after the config was checked, never gets a connection.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Final
from urllib.parse import urlsplit

from gateway.providers.transport import AddressPolicy

__all__ = [
    "ALLOW_HINT",
    "UnsafeUpstream",
    "address_policy",
    "address_refusal",
    "check_base_url",
    "host_of",
    "origin_of",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_HINT: Final = (
    "set KEYWAY_ALLOW_PRIVATE_UPSTREAMS=1 or server.allow_private_upstreams in the config file"
)

_METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
     "instance-data.ec2.internal"}
)  # fmt: skip
_METADATA_IPS = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200",
                                      "fd00:ec2::254", "168.63.129.16")
)  # fmt: skip
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_INET_ATON_CHARS = frozenset("0123456789abcdefx.")


class UnsafeUpstream(ValueError):
    """The base URL is refused; the message says why."""


def _as_ip(host: str) -> IPAddress | None:
    """The address `host` names without a DNS query, as getaddrinfo would read it; else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # inet_aton spellings: fewer than four parts (169.254.43518), octal (0251), hex (0xa9),
    # one number (2852039166): the resolver reads them all as an IPv4 address
    if host and set(host) <= _INET_ATON_CHARS:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (mapped or NAT64), else `ip` itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _ip_refusal(ip: IPAddress) -> str | None:
    ip = _embedded_ipv4(ip)
    if ip in _METADATA_IPS:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    return None


def address_refusal(address: str) -> str | None:
    """Why a resolved upstream address is refused ("a link-local address"), or None."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    return _ip_refusal(ip)


def address_policy(*, allow_private: bool) -> AddressPolicy | None:
    """What the transport checks every resolved address with (None: private is allowed)."""
    return None if allow_private else address_refusal


def host_of(url: str) -> str:
    """The URL's host as the policy compares it: lower-cased, no brackets, no trailing dot."""
    return (urlsplit(url).hostname or "").rstrip(".").lower()


def origin_of(url: str) -> str:
    """`host:port` of a checked base URL, the scheme's default port filled in."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = host_of(url)
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}:{port}"


def check_base_url(url: str, *, allow_private: bool = False) -> str:
    """The URL, normalised (no trailing slash); raises `UnsafeUpstream`."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
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
        if host in _METADATA_HOSTS:
            raise UnsafeUpstream(f"base_url: cloud metadata hosts are refused ({ALLOW_HINT})")
        ip = _as_ip(host)
        refusal = _ip_refusal(ip) if ip is not None else None
        if refusal is not None:
            raise UnsafeUpstream(f"base_url: the host is {refusal}, refused ({ALLOW_HINT})")
    return url.rstrip("/")
