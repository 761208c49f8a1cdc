"""Which keys of a pool one acquire call examines: a few, never the whole pool.

acquire.lua reads the live state of every candidate it is given, and Redis runs scripts on one
thread, so a call that carried all 200 keys of a pool would cost the whole fleet 200 key reads.
A request therefore sends a sample of at most `SAMPLE` candidates, in the order the strategy
wants them examined, and acquire.lua stops as soon as it has what it needs:

priority        the keys in configured order: the first with room wins
weighted        a draw by weight (without replacement): the first with room wins, which is a
                draw by weight among the keys with room
least-utilised  a uniformly random sample: the less utilised of the first two with room wins
                (the "power of two choices": as even as scanning them all, at a fixed cost)
lowest-latency  a uniformly random sample: the fastest with room wins

Only when none of the sample has room is the rest of the pool sent, in a second call (the
sampled keys' refusals are kept), so a request is never refused while some key has room.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence

__all__ = ["SAMPLE", "split"]

SAMPLE = 8
"""Candidates in the first acquire call of a request (the whole pool when it is this small)."""

Candidate = tuple[str | int, ...]
_RNG = random.Random()


def split(
    strategy: str, candidates: Sequence[Candidate], rng: random.Random | None = None
) -> tuple[list[Candidate], list[Candidate]]:
    """(the sample to send first, the rest to send only if none of the sample has room)."""
    r = rng or _RNG
    n = len(candidates)
    if strategy == "priority":
        return list(candidates[:SAMPLE]), list(candidates[SAMPLE:])
    if strategy == "weighted":
        order = _weighted_order(candidates, r)
        return order[:SAMPLE], order[SAMPLE:]
    if n <= SAMPLE:
        order = list(candidates)
        r.shuffle(order)
        return order, []
    picked = r.sample(range(n), SAMPLE)
    chosen = set(picked)
    rest = [c for i, c in enumerate(candidates) if i not in chosen]
    r.shuffle(rest)
    return [candidates[i] for i in picked], rest


def _weighted_order(candidates: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    """Draw by weight without replacement: the first SAMPLE by bisecting the running totals
    (redrawing a key already drawn), the rest in a weighted shuffle; weight 0 comes last."""
    weights = [max(float(c[4]), 0.0) for c in candidates]
    totals = list(itertools.accumulate(weights))
    total = totals[-1] if totals else 0.0
    want = min(SAMPLE, sum(1 for w in weights if w > 0))
    drawn: list[int] = []
    seen: set[int] = set()
    tries = 0
    while len(drawn) < want and tries < 8 * SAMPLE:
        tries += 1
        i = bisect.bisect_right(totals, rng.random() * total)
        if i < len(candidates) and i not in seen and weights[i] > 0:
            seen.add(i)
            drawn.append(i)
    rest = [i for i in range(len(candidates)) if i not in seen]
    # Efraimidis-Spirakis: sorting by u ** (1 / w) is a draw by weight without replacement
    rest.sort(
        key=lambda i: rng.random() ** (1.0 / weights[i]) if weights[i] > 0 else -1.0,
        reverse=True,
    )
    return [candidates[i] for i in drawn + rest]
