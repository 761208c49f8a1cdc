"""The control plane on the embedded store (fakeredis): sync between replicas, edits, rotation.

Two `Replica`s share one in-process fakeredis server, as two gateway processes share one Redis.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import fakeredis
import pytest
import yaml

from gateway.clients import ClientDirectory
from gateway.config import Config, DeploymentConfig
from gateway.config_load import parse_config
from gateway.control.editor import ConfigEditor, EditError
from gateway.control.records import KeyRecord, ModelRecord, ProviderRecord, decode_record
from gateway.control.store import Change
from gateway.control.sync import ConfigSync
from gateway.routing.table import RouteTable
from gateway.secrets.keyring import sealed_key_id
from gateway.secrets.rotation import census, rotate
from gateway.state.connection import RedisHandle
from gateway.state.store import SharedState

FILE = """
providers:
  fake:
    kind: openai-compatible
    base_url: http://127.0.0.1:9/v1
    keys: [{id: k1, secret: sk-file-key-0001}]
models:
  chat:
    deployments: [{provider: fake, model: gpt-4o-mini}]
clients:
  - {id: team-a, key: sk-client-a-0000}
  - {id: team-b, key: sk-client-b-0000}
"""
OLD, NEW = base64.b64encode(os.urandom(32)).decode(), base64.b64encode(os.urandom(32)).decode()


class Replica:
    """The parts of a Gateway the control plane uses, on a shared fakeredis server."""

    def __init__(self, server: fakeredis.FakeServer, cfg: Config, env: dict[str, str]) -> None:
        client = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
        handle = RedisHandle(client, cluster=False, embedded=True, description="fake")
        self.state = SharedState(handle, prefix="t")
        self.cfg = cfg
        self.clients = ClientDirectory(env["KEYWAY_CLIENT_KEY_SECRET"].encode())
        self.clients.load_config(cfg.clients, env)
        self.table = RouteTable(cfg, env)
        self.changed = asyncio.Event()
        self.control = ConfigSync(self, env)  # type: ignore[arg-type]
        self.editor = ConfigEditor(self.control)

    def use_config(self, table: RouteTable, clients: Any) -> None:
        self.table = table
        self.clients.replace(clients)
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait for a config swap that makes `condition` true (bounded: a hang fails the test)."""
        async with asyncio.timeout(10):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture()
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture()
def cfg() -> Config:
    return parse_config(yaml.safe_load(FILE))


def env(**extra: str) -> dict[str, str]:
    return {"KEYWAY_CLIENT_KEY_SECRET": "shared-hmac-secret", "KEYWAY_MASTER_KEY": f"old:{OLD}",
            "KEYWAY_CONFIG_POLL_S": "60", **extra}  # fmt: skip


@pytest.fixture()
async def pair(server: fakeredis.FakeServer, cfg: Config) -> AsyncIterator[tuple[Replica, Replica]]:
    a, b = Replica(server, cfg, env()), Replica(server, cfg, env())
    await a.state.load_scripts()
    await a.control.start()
    await b.control.start()
    yield a, b
    await a.control.stop()
    await b.control.stop()


async def test_a_client_created_on_one_replica_is_accepted_by_the_other(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    key = await a.editor.create_client("team-c", {"rpm": 5})
    assert a.clients.lookup(key) is not None  # live where it was made, before returning
    await b.until(lambda: b.clients.lookup(key) is not None)
    client = b.clients.lookup(key)
    assert client is not None and client.id == "team-c" and client.rpm == 5


async def test_a_revoked_file_client_is_refused_by_the_other_replica(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    assert b.clients.lookup("sk-client-b-0000") is not None
    await a.editor.revoke_client("team-b")
    assert a.clients.lookup("sk-client-b-0000") is None
    await b.until(lambda: b.clients.lookup("sk-client-b-0000") is None)
    assert b.clients.lookup("sk-client-a-0000") is not None


async def test_the_poll_finds_a_change_when_pubsub_is_unavailable(
    server: fakeredis.FakeServer, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = Replica(server, cfg, env())
    b = Replica(server, cfg, env(KEYWAY_CONFIG_POLL_S="0.05"))
    monkeypatch.setattr(b.control, "_pubsub", lambda: None)
    await a.state.load_scripts()
    await a.control.start()
    await b.control.start()
    try:
        await a.editor.add_key("fake", "k2", "sk-runtime-key-0002", {})
        await b.until(lambda: "k2" in b.table.pools["fake"].by_id)
        assert b.table.pools["fake"].by_id["k2"].secret == "sk-runtime-key-0002"
    finally:
        await a.control.stop()
        await b.control.stop()


async def test_edits_are_refused_with_the_status_and_reason_an_operator_needs(
    pair: tuple[Replica, Replica], server: fakeredis.FakeServer, cfg: Config
) -> None:
    a, _ = pair
    refused: list[tuple[int, str]] = []

    async def expect(status: int, fragment: str, action: Any) -> None:
        with pytest.raises(EditError) as info:
            await action
        refused.append((info.value.status, info.value.message))
        assert info.value.status == status and fragment in info.value.message, info.value.message

    await expect(409, "already exists", a.editor.add_key("fake", "k1", "sk-xxxxxxxx", {}))
    await expect(404, "does not exist", a.editor.add_key("nope", "k9", "sk-xxxxxxxx", {}))
    await expect(404, "does not exist", a.editor.update_key("fake", "k9", {"rpm": 1}))
    await expect(409, "used by model aliases ['chat']", a.editor.delete_provider("fake"))
    await expect(400, "metadata", a.editor.create_provider(
        "evil", ProviderRecord(kind="openai", base_url="http://169.254.169.254/v1")))  # fmt: skip
    await expect(400, "api_version", a.editor.create_provider(
        "az", ProviderRecord(kind="azure-openai", base_url="https://x.openai.azure.com")))  # fmt: skip
    dep = [DeploymentConfig(provider="fake", model="m")]
    await expect(
        400,
        "unknown model alias",
        a.editor.put_model("x", ModelRecord(deployments=dep, fallbacks=["nope"])),
    )
    await expect(
        400,
        "fall back to itself",
        a.editor.put_model("x", ModelRecord(deployments=dep, fallbacks=["x"])),
    )
    await expect(400, "unknown provider", a.editor.put_model(
        "x", ModelRecord(deployments=[DeploymentConfig(provider="nope", model="m")])))  # fmt: skip
    await expect(409, "already exists", a.editor.create_client("team-a", {}))
    no_master = Replica(server, cfg, {**env(), "KEYWAY_MASTER_KEY": ""})
    await no_master.control.refresh()
    await expect(
        409, "KEYWAY_MASTER_KEY", no_master.editor.add_key("fake", "k7", "sk-xxxxxxxx", {})
    )
    assert len(refused) == 11


async def test_a_stale_compare_and_set_writes_nothing(pair: tuple[Replica, Replica]) -> None:
    a, _ = pair
    await a.editor.update_key("fake", "k1", {"rpm": 10})
    raw = await a.control.store.get("keys", "fake/k1")
    assert raw is not None
    await a.editor.update_key("fake", "k1", {"rpm": 20})
    assert (
        await a.control.store.write([Change("keys", "fake/k1", raw, raw.replace("10", "30"))])
        is None
    )
    current = decode_record(await a.control.store.get("keys", "fake/k1") or "")
    assert isinstance(current, KeyRecord) and current.rpm == 20


async def test_rotation_reseals_everything_and_keeps_a_concurrent_change(
    server: fakeredis.FakeServer, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = Replica(server, cfg, env())
    await before.state.load_scripts()
    await before.control.start()
    for i in range(3):
        await before.editor.add_key("fake", f"r{i}", f"sk-runtime-{i:04d}-secret", {})
    await before.control.stop()

    after = Replica(server, cfg, env(KEYWAY_MASTER_KEY=f"new:{NEW},old:{OLD}"))
    await after.control.start()
    store = after.control.store
    real_write = store.write
    raced = []

    async def write_after_an_operator(changes: Any, *, bump: bool = True) -> int | None:
        if not raced:  # an admin changes the record between rotation's read and its write
            raced.append(True)
            await after.editor.update_key("fake", "r1", {"rpm": 77})
        return await real_write(changes, bump=bump)

    monkeypatch.setattr(store, "write", write_after_an_operator)
    assert (await census(store)).by_key_id == {"old": 3}
    assert after.control.keyring is not None
    report = await rotate(store, after.control.keyring)
    assert (report.resealed, report.failed) == (3, [])
    assert report.retried_after_concurrent_change >= 1
    assert (await census(store)).by_key_id == {"new": 3}
    r1 = decode_record(await store.get("keys", "fake/r1") or "")
    assert isinstance(r1, KeyRecord) and r1.rpm == 77 and sealed_key_id(r1.secret or "") == "new"

    # a replica that only knows the new master key opens every secret
    only_new = Replica(server, cfg, env(KEYWAY_MASTER_KEY=f"new:{NEW}"))
    snapshot = await only_new.control.refresh()
    assert snapshot.problems == ()
    assert only_new.table.pools["fake"].by_id["r2"].secret == "sk-runtime-0002-secret"
    await after.control.stop()


async def test_the_file_does_not_clobber_runtime_changes_unless_told_to(
    server: fakeredis.FakeServer, cfg: Config
) -> None:
    a = Replica(server, cfg, env())
    await a.state.load_scripts()
    await a.control.start()
    await a.editor.revoke_client("team-b")
    await a.editor.update_key("fake", "k1", {"rpm": 3})
    extra = await a.editor.create_client("team-c", {})
    await a.control.stop()

    restarted = Replica(server, cfg, env())
    await restarted.control.refresh()
    assert restarted.clients.lookup("sk-client-b-0000") is None
    assert restarted.table.pools["fake"].by_id["k1"].candidate[1] == 3

    overwritten = Replica(server, cfg, env(KEYWAY_CONFIG_OVERWRITE="1"))
    assert await overwritten.control.drop_file_overrides() == 2
    await overwritten.control.refresh()
    assert overwritten.clients.lookup("sk-client-b-0000") is not None
    assert overwritten.table.pools["fake"].by_id["k1"].candidate[1] == 0
    assert overwritten.clients.lookup(extra) is not None  # runtime-only objects stay
    assert await overwritten.control.drop_file_overrides() == 0  # idempotent


async def test_a_provider_created_at_runtime_routes_a_new_model(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    await a.editor.create_provider(
        "local", ProviderRecord(kind="openai-compatible", base_url="http://127.0.0.1:8000/v1/")
    )
    await a.editor.add_key("local", "l1", "sk-local-key-0001", {"rpm": 9})
    created = await a.editor.put_model(
        "llama", ModelRecord(deployments=[DeploymentConfig(provider="local", model="llama-3")])
    )
    assert created
    await b.until(lambda: b.table.chain("llama") is not None)
    chain = b.table.chain("llama") or ()
    assert chain[0].pool.adapter.base_url == "http://127.0.0.1:8000/v1"
    assert chain[0].pool.keys[0].candidate == ("l1", 9, 0, 0, 1)
    await a.editor.delete_model("llama")
    await a.editor.delete_provider("local")
    await b.until(lambda: "local" not in b.table.pools)
    assert b.table.chain("llama") is None
