"""Upstream base URLs an admin may set: metadata and link-local hosts are refused unless allowed."""

from __future__ import annotations

import pytest

from gateway.control.url_policy import UnsafeUpstream, check_base_url


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
