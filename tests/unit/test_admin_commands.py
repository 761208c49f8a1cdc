"""`keyway clients ...`: what each command line asks of the admin API (the API itself is faked).

The commands against a real admin API: tests/integration/test_admin_replicas.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admin import commands
from gateway.cli import main

__all__: list[str] = []


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    sent: list[tuple[str, str, Any]] = []

    def api(method: str, path: str, body: Any = None, params: Any = None) -> Any:
        sent.append((method, path, body))
        return {"id": "team-c", "key": "kw-new-key", **(body or {})}

    monkeypatch.setattr(commands, "_api", api)
    return sent


@pytest.mark.parametrize(
    ("flag", "sent"),
    [("3", 3), ("0", 0), ("default", None)],  # 0: no cap; default: routing.client_max_concurrency
)
def test_max_concurrency_reaches_the_api_on_create_and_set(
    calls: list[tuple[str, str, Any]], flag: str, sent: int | None
) -> None:
    assert main(["clients", "create", "team-c", "--max-concurrency", flag]) == 0
    assert main(["clients", "set", "team-c", "--max-concurrency", flag, "--json"]) == 0
    assert calls == [
        ("POST", "/admin/clients", {"id": "team-c", "max_concurrency": sent}),
        ("PATCH", "/admin/clients/team-c", {"max_concurrency": sent}),
    ]


def test_set_without_max_concurrency_leaves_it_alone(calls: list[tuple[str, str, Any]]) -> None:
    assert main(["clients", "set", "team-c", "--rpm", "60"]) == 0
    assert calls == [("PATCH", "/admin/clients/team-c", {"rpm": 60})]


def test_a_max_concurrency_that_is_no_number_is_refused_before_any_call(
    calls: list[tuple[str, str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["clients", "set", "team-c", "--max-concurrency", "lots"])
    assert exited.value.code == 2
    assert "--max-concurrency" in capsys.readouterr().err
    assert calls == []
