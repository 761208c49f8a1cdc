"""The Lua scripts of `lua/`, loaded once and called by SHA, reloaded when Redis forgot them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

__all__ = [
    "ACQUIRE",
    "ALL_SCRIPTS",
    "CLIENT_ADMIT",
    "CLIENT_SETTLE",
    "CONFIG_KEY_STATE",
    "CONFIG_READ",
    "CONFIG_WRITE",
    "HEARTBEAT",
    "SETTLE",
    "LuaScript",
]


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One script file: its source and the SHA1 that EVALSHA names it by."""

    name: str
    source: str
    sha: str

    @classmethod
    def from_package(cls, name: str) -> LuaScript:
        source = resources.files("gateway").joinpath("lua", f"{name}.lua").read_text("utf-8")
        return cls(name=name, source=source, sha=hashlib.sha1(source.encode()).hexdigest())


ACQUIRE = LuaScript.from_package("acquire")
SETTLE = LuaScript.from_package("settle")
CLIENT_ADMIT = LuaScript.from_package("client_admit")
CLIENT_SETTLE = LuaScript.from_package("client_settle")
HEARTBEAT = LuaScript.from_package("heartbeat")
# the control plane's: runtime config records, operator key state (gateway/control)
CONFIG_WRITE = LuaScript.from_package("config_write")
CONFIG_READ = LuaScript.from_package("config_read")
CONFIG_KEY_STATE = LuaScript.from_package("config_key_state")
ALL_SCRIPTS = (ACQUIRE, SETTLE, CLIENT_ADMIT, CLIENT_SETTLE, HEARTBEAT,
               CONFIG_WRITE, CONFIG_READ, CONFIG_KEY_STATE)  # fmt: skip
