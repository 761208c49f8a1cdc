"""The merge of the config file with runtime records: who wins, what is left out, and why."""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml

from gateway.clients import ClientDirectory
from gateway.config import DeploymentConfig
from gateway.config_load import parse_config
from gateway.control.merge import FileBaseline, Snapshot, key_binding, merge
from gateway.control.records import (
    ClientRecord,
    Deleted,
    KeyRecord,
    ModelRecord,
    ProviderRecord,
    Record,
    StoredConfig,
    encode_record,
)
from gateway.secrets.keyring import Keyring

FILE = """
providers:
  openai:
    kind: openai
    base_url: https://api.openai.com/v1
    keys:
      - {id: oa-1, secret: "env:OA_KEY", rpm: 100}
      - {id: oa-2, secret: sk-literal-file-0002}
models:
  gpt-4o-mini:
    deployments: [{provider: openai, model: gpt-4o-mini}]
    fallbacks: [cheap]
  cheap:
    deployments: [{provider: openai, model: gpt-4o-mini}]
clients:
  - {id: team-a, key: "env:TEAM_A_KEY", rpm: 10}
  - {id: team-b, key: sk-client-b-plaintext}
"""
ENV = {"OA_KEY": "sk-from-env-0001", "TEAM_A_KEY": "sk-client-a-plaintext"}


@pytest.fixture()
def directory() -> ClientDirectory:
    return ClientDirectory(b"server-secret")


@pytest.fixture()
def base(directory: ClientDirectory) -> FileBaseline:
    cfg = parse_config(yaml.safe_load(FILE))
    return FileBaseline.build(cfg, directory.digest, ENV)


@pytest.fixture()
def ring() -> Keyring:
    return Keyring([("m1", os.urandom(32))])


def stored(version: int = 1, **tables: dict[str, Record | str]) -> StoredConfig:
    encoded: dict[str, Any] = {
        kind: {name: rec if isinstance(rec, str) else encode_record(rec) for name, rec in t.items()}
        for kind, t in tables.items()
    }
    return StoredConfig(version=version, **encoded)


def lookup(snapshot: Snapshot, directory: ClientDirectory, key: str) -> str | None:
    directory.replace(snapshot.clients)
    client = directory.lookup(key)
    return None if client is None else client.id


def test_without_records_the_snapshot_is_the_file(
    base: FileBaseline, ring: Keyring, directory: ClientDirectory
) -> None:
    snap = merge(base, stored(version=0), ring, ENV)
    pool = snap.table.pools["openai"]
    assert [k.id for k in pool.keys] == ["oa-1", "oa-2"]
    assert pool.by_id["oa-1"].secret == "sk-from-env-0001"
    assert [d.alias for d in snap.table.chain("gpt-4o-mini") or ()] == ["gpt-4o-mini", "cheap"]
    assert lookup(snap, directory, "sk-client-a-plaintext") == "team-a"
    assert snap.problems == ()
    assert set(snap.origins.values()) == {"file"}


def test_a_runtime_key_joins_the_file_pool_after_its_keys_with_its_sealed_secret(
    base: FileBaseline, ring: Keyring
) -> None:
    sealed = ring.seal("sk-canary-runtime-0003", key_binding("openai", "oa-3"))
    snap = merge(base, stored(keys={"openai/oa-3": KeyRecord(secret=sealed, rpm=7)}), ring, ENV)
    pool = snap.table.pools["openai"]
    assert [k.id for k in pool.keys] == ["oa-1", "oa-2", "oa-3"]
    assert pool.by_id["oa-3"].secret == "sk-canary-runtime-0003"
    assert pool.by_id["oa-3"].candidate == ("oa-3", 7, 0, 0, 1)
    assert snap.origins[("keys", "openai/oa-3")] == "runtime"
    # the merged config keeps only a reference, never the plaintext
    assert "sk-canary-runtime-0003" not in repr(snap.config)


def test_a_runtime_record_overrides_file_limits_and_inherits_the_file_secret(
    base: FileBaseline, ring: Keyring
) -> None:
    snap = merge(base, stored(keys={"openai/oa-1": KeyRecord(rpm=5, weight=3)}), ring, ENV)
    key = snap.table.pools["openai"].by_id["oa-1"]
    assert key.secret == "sk-from-env-0001"
    assert key.candidate == ("oa-1", 5, 0, 0, 3)
    assert snap.origins[("keys", "openai/oa-1")] == "file+runtime"


def test_tombstones_hide_what_the_file_defines(
    base: FileBaseline, ring: Keyring, directory: ClientDirectory
) -> None:
    gone = Deleted(at_ms=1)
    snap = merge(
        base,
        stored(keys={"openai/oa-2": gone}, clients={"team-b": gone}, models={"cheap": gone}),
        ring,
        ENV,
    )
    assert [k.id for k in snap.table.pools["openai"].keys] == ["oa-1"]
    assert lookup(snap, directory, "sk-client-b-plaintext") is None
    assert lookup(snap, directory, "sk-client-a-plaintext") == "team-a"
    assert snap.table.chain("cheap") is None
    # the fallback to the deleted alias is dropped, and said so
    assert [d.alias for d in snap.table.chain("gpt-4o-mini") or ()] == ["gpt-4o-mini"]
    assert any("fallback 'cheap' is missing" in p for p in snap.problems)


def test_a_deleted_provider_takes_its_deployments_with_it(
    base: FileBaseline, ring: Keyring
) -> None:
    snap = merge(base, stored(providers={"openai": Deleted(at_ms=1)}), ring, ENV)
    assert "openai" not in snap.table.pools
    assert snap.table.chain("gpt-4o-mini") == ()
    assert any("provider 'openai' is missing" in p for p in snap.problems)


def test_a_runtime_provider_and_model_route_together(base: FileBaseline, ring: Keyring) -> None:
    sealed = ring.seal("sk-new-provider-key", key_binding("local", "l1"))
    snap = merge(
        base,
        stored(
            providers={"local": ProviderRecord(kind="openai-compatible", base_url="http://10.0.0.5:8000/v1")},
            keys={"local/l1": KeyRecord(secret=sealed)},
            models={"llama": ModelRecord(deployments=[DeploymentConfig(provider="local", model="llama-3")],
                                         fallbacks=["gpt-4o-mini"])},
        ),
        ring,
        ENV,
    )  # fmt: skip
    chain = snap.table.chain("llama") or ()
    assert [(d.pool.provider, d.model) for d in chain][:2] == [
        ("local", "llama-3"),
        ("openai", "gpt-4o-mini"),
    ]
    assert chain[0].pool.adapter.base_url == "http://10.0.0.5:8000/v1"


def test_a_runtime_provider_record_keeps_the_file_keys(base: FileBaseline, ring: Keyring) -> None:
    rec = ProviderRecord(kind="openai", base_url="https://proxy.example/v1", timeout_s=5)
    snap = merge(base, stored(providers={"openai": rec}), ring, ENV)
    pool = snap.table.pools["openai"]
    assert pool.adapter.base_url == "https://proxy.example/v1"
    assert [k.id for k in pool.keys] == ["oa-1", "oa-2"]


def test_a_ciphertext_moved_to_another_record_leaves_that_key_out(
    base: FileBaseline, ring: Keyring
) -> None:
    sealed_for_3 = ring.seal("sk-canary-moved", key_binding("openai", "oa-3"))
    snap = merge(base, stored(keys={"openai/oa-4": KeyRecord(secret=sealed_for_3)}), ring, ENV)
    assert "oa-4" not in snap.table.pools["openai"].by_id
    assert any("openai/oa-4" in p and "moved" in p for p in snap.problems)
    assert all("sk-canary-moved" not in p for p in snap.problems)


def test_sealed_secrets_without_a_master_key_are_reported(
    base: FileBaseline, ring: Keyring
) -> None:
    sealed = ring.seal("sk-x-0000000", key_binding("openai", "oa-3"))
    snap = merge(base, stored(keys={"openai/oa-3": KeyRecord(secret=sealed)}), None, ENV)
    assert "oa-3" not in snap.table.pools["openai"].by_id
    assert any("no master key" in p for p in snap.problems)


def test_an_unreadable_record_falls_back_to_the_file(base: FileBaseline, ring: Keyring) -> None:
    snap = merge(base, stored(keys={"openai/oa-1": "{not json"}), ring, ENV)
    assert snap.table.pools["openai"].by_id["oa-1"].candidate[1] == 100
    assert any("unreadable" in p for p in snap.problems)


def test_runtime_clients_are_known_by_digest_only(
    base: FileBaseline, ring: Keyring, directory: ClientDirectory
) -> None:
    digest = directory.digest("kw-runtime-client-key-000000000000").hex()
    rec = ClientRecord(digest=digest, hint="...0000", rpm=3, models=["cheap"], created_ms=5)
    snap = merge(base, stored(clients={"team-c": rec}), ring, ENV)
    assert lookup(snap, directory, "kw-runtime-client-key-000000000000") == "team-c"
    client = directory.lookup("kw-runtime-client-key-000000000000")
    assert client is not None and client.rpm == 3 and client.may_use("cheap")
    assert not client.may_use("gpt-4o-mini")
    assert snap.client_specs["team-c"].hint == "...0000"


def test_changing_a_file_client_keeps_its_file_key(
    base: FileBaseline, ring: Keyring, directory: ClientDirectory
) -> None:
    snap = merge(base, stored(clients={"team-a": ClientRecord(rpm=99)}), ring, ENV)
    client_id = lookup(snap, directory, "sk-client-a-plaintext")
    assert client_id == "team-a"
    assert snap.client_specs["team-a"].rpm == 99
    assert snap.client_specs["team-a"].origin == "file+runtime"


def test_a_runtime_client_with_the_key_of_another_is_ignored(
    base: FileBaseline, ring: Keyring, directory: ClientDirectory
) -> None:
    digest = directory.digest("sk-client-b-plaintext").hex()
    snap = merge(base, stored(clients={"copycat": ClientRecord(digest=digest)}), ring, ENV)
    assert lookup(snap, directory, "sk-client-b-plaintext") == "team-b"
    assert any("copycat" in p for p in snap.problems)
