"""ConfigEditor on the embedded store: a provider's keys do not follow a base_url moved elsewhere.

Whoever holds an admin key could otherwise point a provider at their own host and collect its
keys' secrets from the next request. A move to another scheme, host or port needs the secret of
every key in the same change, unless the host is allow-listed by the operator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import yaml

from gateway.config import Config
from gateway.config_load import parse_config
from gateway.control.editor import EditError, ProviderMove
from gateway.control.records import ProviderRecord, decode_record
from tests.unit.test_control_sync import FILE, Replica, env

__all__: list[str] = []

OLD = "http://127.0.0.1:9/v1"


def config(**server: Any) -> Config:
    raw = yaml.safe_load(FILE)
    raw["server"] = server
    return parse_config(raw)


async def started(cfg: Config) -> Replica:
    replica = Replica(fakeredis.FakeServer(), cfg, env())
    await replica.state.load_scripts()
    await replica.control.start()
    return replica


@pytest.fixture()
async def replica() -> AsyncIterator[Replica]:
    r = await started(config())
    yield r
    await r.control.stop()


def secret_of(replica: Replica, key_id: str) -> str:
    return replica.table.pools["fake"].by_id[key_id].secret


def base_url(replica: Replica) -> str:
    return replica.table.pools["fake"].adapter.base_url


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.2:9/v1", "http://127.0.0.1:8080/v1", "https://127.0.0.1:9/v1",
     "https://attacker.example/v1"],
)  # fmt: skip
async def test_a_move_without_the_secrets_is_refused_and_changes_nothing(
    replica: Replica, url: str
) -> None:
    with pytest.raises(EditError) as info:
        await replica.editor.update_provider("fake", {"base_url": url})
    assert info.value.status == 403
    assert (
        "missing: k1" in info.value.message
        and "KEYWAY_UPSTREAM_HOSTS_ALLOWED" in info.value.message
    )
    assert base_url(replica) == OLD
    assert secret_of(replica, "k1") == "sk-file-key-0001"


async def test_a_move_with_every_secret_replaces_them_in_the_same_change(replica: Replica) -> None:
    await replica.editor.add_key("fake", "k2", "sk-runtime-key-0002", {"rpm": 7})
    with pytest.raises(EditError, match="missing: k2"):
        await replica.editor.update_provider(
            "fake", {"base_url": "https://new.example/v1"}, {"k1": "sk-new-secret-0001"}
        )
    move = await replica.editor.update_provider(
        "fake",
        {"base_url": "https://new.example/v1"},
        {"k1": "sk-new-secret-0001", "k2": "sk-new-secret-0002"},
    )
    assert move == ProviderMove(
        "http://127.0.0.1:9", "https://new.example:443", secrets_replaced=("k1", "k2")
    )
    assert base_url(replica) == "https://new.example/v1"
    assert (secret_of(replica, "k1"), secret_of(replica, "k2")) == (
        "sk-new-secret-0001",
        "sk-new-secret-0002",
    )
    assert replica.table.pools["fake"].by_id["k2"].candidate[1] == 7  # limits kept


async def test_a_path_change_on_the_same_origin_needs_no_secret(replica: Replica) -> None:
    assert (
        await replica.editor.update_provider("fake", {"base_url": "http://127.0.0.1:9/v2/"}) is None
    )
    assert base_url(replica) == "http://127.0.0.1:9/v2"
    assert secret_of(replica, "k1") == "sk-file-key-0001"


async def test_an_allow_listed_host_needs_no_secret() -> None:
    replica = await started(config(upstream_hosts_allowed=["API.Example.com."]))
    try:
        move = await replica.editor.update_provider(
            "fake", {"base_url": "https://api.example.com/v1"}
        )
        assert move == ProviderMove("http://127.0.0.1:9", "https://api.example.com:443", ())
        assert secret_of(replica, "k1") == "sk-file-key-0001"
        with pytest.raises(EditError, match="missing: k1"):
            await replica.editor.update_provider("fake", {"base_url": "https://other.example/v1"})
    finally:
        await replica.control.stop()


async def test_secrets_for_keys_the_provider_lacks_are_refused(replica: Replica) -> None:
    with pytest.raises(EditError) as info:
        await replica.editor.update_provider(
            "fake", {"base_url": "https://new.example/v1"}, {"k1": "sk-a-secret-1", "k9": "sk-b"}
        )
    assert info.value.status == 400 and "no key 'k9'" in info.value.message


async def test_a_stored_allow_private_flag_no_longer_lifts_the_policy(replica: Replica) -> None:
    legacy = (
        '{"type":"provider","kind":"openai","base_url":"http://127.0.0.1:1/v1",'
        '"allow_private_upstreams":true}'
    )
    record = decode_record(legacy)
    assert isinstance(record, ProviderRecord) and not hasattr(record, "allow_private_upstreams")
    with pytest.raises(EditError, match="metadata"):
        await replica.editor.create_provider(
            "evil", ProviderRecord(kind="openai", base_url="http://0251.0376.0251.0376/v1")
        )


async def test_private_upstreams_allowed_by_the_config_file() -> None:
    replica = await started(config(allow_private_upstreams=True))
    try:
        await replica.editor.create_provider(
            "metadata", ProviderRecord(kind="openai", base_url="http://169.254.169.254/v1")
        )
    finally:
        await replica.control.stop()
    assert "metadata" in replica.table.pools
