"""The codec table and the providers' `supports` say the same thing, and every routed path has
a parser: the router never opens a call that no codec can carry."""

from __future__ import annotations

import pytest

from gateway.api.client_request import PARSERS
from gateway.api.codecs import ANTHROPIC, CODECS, OPENAI
from gateway.api.routes import ROUTED
from gateway.config import ProviderConfig
from gateway.providers.adapters import Endpoint, ProviderAdapter

KINDS = {"openai": OPENAI, "openai-compatible": OPENAI, "azure-openai": OPENAI,
         "anthropic": ANTHROPIC}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_a_provider_supports_exactly_the_endpoints_it_has_a_codec_for(
    kind: str, endpoint: Endpoint
) -> None:
    adapter = ProviderAdapter.from_config(
        "p", ProviderConfig(kind=kind, base_url="http://127.0.0.1:9", keys=[])
    )
    assert adapter.supports(endpoint) == ((endpoint, KINDS[kind]) in CODECS)


def test_every_routed_path_has_a_parser_and_a_codec() -> None:
    for endpoint in ROUTED.values():
        assert endpoint in PARSERS
        assert any((endpoint, dialect) in CODECS for dialect in (OPENAI, ANTHROPIC))
