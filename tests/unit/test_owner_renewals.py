"""The renewal table of open calls (routing/owner.py `Renewals`): one timer for every open call.

Each call is renewed a period after it opened and every period after that while it stays open;
a call that ends leaves at once and is never renewed again; the timer stops when no call is left.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gateway.routing.owner import Renewals, RequestOwner

__all__: list[str] = []

PERIOD_S = 0.05


class FakeOwner:
    """Counts its renewals; `open` False: renew_due says the call has ended."""

    def __init__(self) -> None:
        self.renewed: list[float] = []
        self.open = True

    def renew_due(self) -> bool:
        if not self.open:
            return False
        self.renewed.append(asyncio.get_running_loop().time())
        return True


def owner(fake: FakeOwner) -> RequestOwner:
    return cast(RequestOwner, fake)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_an_open_call_is_renewed_every_period_until_it_leaves() -> None:
    async def scenario() -> tuple[float, list[float], int]:
        renewals = Renewals(PERIOD_S)
        fake = FakeOwner()
        opened = asyncio.get_running_loop().time()
        renewals.add(owner(fake))
        await asyncio.sleep(PERIOD_S * 3.5)
        renewals.discard(owner(fake))
        count = len(fake.renewed)
        await asyncio.sleep(PERIOD_S * 2)
        return opened, fake.renewed, count

    opened, renewed, count_at_discard = run(scenario())
    assert count_at_discard == 3
    assert len(renewed) == 3, "no renewal after the call left"
    for n, at in enumerate(renewed, start=1):
        assert at >= opened + n * PERIOD_S - 0.002, (n, at - opened)


def test_calls_that_end_before_their_period_are_never_renewed_and_the_timer_stops() -> None:
    async def scenario() -> tuple[list[FakeOwner], Renewals]:
        renewals = Renewals(PERIOD_S)
        fakes = [FakeOwner() for _ in range(200)]
        for fake in fakes:
            renewals.add(owner(fake))
        for fake in fakes:
            renewals.discard(owner(fake))
        await asyncio.sleep(PERIOD_S * 2)
        return fakes, renewals

    fakes, renewals = run(scenario())
    assert all(not fake.renewed for fake in fakes)
    assert len(renewals) == 0 and renewals._timer is None


def test_many_open_calls_share_one_timer_and_each_is_renewed_on_its_own_schedule() -> None:
    async def scenario() -> tuple[list[FakeOwner], list[float]]:
        renewals = Renewals(PERIOD_S)
        loop = asyncio.get_running_loop()
        fakes, opened = [], []
        for _ in range(5):  # opened a fifth of a period apart
            fake = FakeOwner()
            fakes.append(fake)
            opened.append(loop.time())
            renewals.add(owner(fake))
            await asyncio.sleep(PERIOD_S / 5)
        fakes[2].open = False  # ended without telling the table: renew_due says so
        await asyncio.sleep(PERIOD_S * 1.9)
        for fake in fakes:
            renewals.discard(owner(fake))
        return fakes, opened

    fakes, opened = run(scenario())
    assert not fakes[2].renewed
    for fake, at in zip(fakes, opened, strict=True):
        if fake is fakes[2]:
            continue
        assert fake.renewed, "each open call was renewed"
        assert fake.renewed[0] >= at + PERIOD_S - 0.002
        gaps = [b - a for a, b in zip(fake.renewed, fake.renewed[1:], strict=False)]
        assert all(gap >= PERIOD_S - 0.002 for gap in gaps), gaps


def test_a_new_event_loop_starts_a_fresh_table() -> None:
    renewals = Renewals(PERIOD_S)
    left = FakeOwner()

    async def first() -> None:
        renewals.add(owner(left))  # its loop ends with the call still in the table

    async def second() -> FakeOwner:
        fake = FakeOwner()
        renewals.add(owner(fake))
        await asyncio.sleep(PERIOD_S * 1.5)
        renewals.discard(owner(fake))
        return fake

    run(first())
    fresh = run(second())
    assert len(fresh.renewed) == 1
    assert not left.renewed
