"""Upstream base URLs an admin may set: metadata and link-local hosts are refused unless allowed,
in every spelling the resolver reads, and so is every such address a host resolves to."""

from __future__ import annotations

import socket

import pytest

from gateway.control.url_policy import (
    UnsafeUpstream,
    address_policy,
    address_refusal,
    check_base_url,
    host_of,
    origin_of,
)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://169.254.170.2/v2/credentials",
        "http://metadata.google.internal/computeMetadata/v1",
        "http://METADATA.google.internal./v1",
        "http://100.100.100.200/latest",
        "http://[fd00:ec2::254]/latest",
        "http://[::ffff:169.254.169.254]/latest",
        "http://2852039166/latest",
        "http://0xa9fea9fe/latest",
        "http://169.254.1.1:8080/v1",
        "http://[fe80::1]/v1",
        "http://0.0.0.0:8000/v1",
        # inet_aton spellings: the resolver reads each as 169.254.169.254
        "http://0251.0376.0251.0376/latest",
        "http://169.254.43518/latest",
        "http://0xa9.0xfe.0xa9.0xfe/latest",
        "http://0xA9.254.0251.254/latest",
        "http://169.16689662/latest",
        "http://0/v1",
        "http://[64:ff9b::a9fe:a9fe]/latest",
        "http://169.254.169.254./latest",
    ],
)
def test_metadata_and_link_local_hosts_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUpstream, match="allow_private_upstreams"):
        check_base_url(url)
    assert check_base_url(url, allow_private=True) == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/v1", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("https://user:pass@api.example.com/v1", "credentials"),
        ("https://api.example.com/v1?token=x", "query"),
        ("https:///v1", "no host"),
        ("https://api.example.com:99999/v1", "not a valid URL"),
        ("https://api.example.com/v1\r\nX-Injected: 1", "whitespace"),
    ],
)
def test_malformed_urls_are_refused_even_when_private_is_allowed(url: str, reason: str) -> None:
    with pytest.raises(UnsafeUpstream, match=reason):
        check_base_url(url, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1/",
        "http://127.0.0.1:9100/v1",
        "http://10.1.2.3:8000",
        "https://[2001:db8::1]/v1",
    ],
)
def test_ordinary_upstreams_pass_normalised(url: str) -> None:
    assert check_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "host", ["0251.0376.0251.0376", "169.254.43518", "0xa9.0xfe.0xa9.0xfe", "169.16689662"]
)
def test_the_refused_spellings_are_what_the_resolver_reads_as_the_metadata_address(
    host: str,
) -> None:
    infos = socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)
    assert {info[4][0] for info in infos} == {"169.254.169.254"}


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("64:ff9b::a9fe:a9fe", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("not-an-address", "not an IP address"),
    ],
)
def test_a_resolved_address_is_refused_with_its_reason(address: str, reason: str) -> None:
    refusal = address_refusal(address)
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "8.8.8.8", "2001:db8::1", "::1"])
def test_ordinary_resolved_addresses_pass(address: str) -> None:
    assert address_refusal(address) is None


def test_allowing_private_upstreams_means_no_address_policy() -> None:
    assert address_policy(allow_private=True) is None
    assert address_policy(allow_private=False) is address_refusal


@pytest.mark.parametrize(
    ("url", "host", "origin"),
    [
        ("https://API.example.com./v1", "api.example.com", "https://api.example.com:443"),
        ("http://127.0.0.1:9100/v1", "127.0.0.1", "http://127.0.0.1:9100"),
        ("http://[2001:db8::1]/v1", "2001:db8::1", "http://[2001:db8::1]:80"),
    ],
)
def test_host_and_origin_are_what_a_move_is_judged_by(url: str, host: str, origin: str) -> None:
    assert (host_of(url), origin_of(url)) == (host, origin)
