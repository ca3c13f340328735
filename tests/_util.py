"""Helpers shared by the test modules (not collected)."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyactors import SegmentStore

DURABILITIES = ("process", "group", "sync")

#: A segment size small enough that a few hundred records of ~1 KiB roll several segments.
SMALL_SEGMENT = 64 * 1024


def random_payload(rng: random.Random, size: int) -> bytes:
    """`size` incompressible bytes from `rng` (reproducible)."""
    return rng.randbytes(size)


def fill_rolled(store: SegmentStore, *, records: int = 240, size: int = 1024, seed: int = 7) -> dict[str, list[bytes]]:
    """Append `records` incompressible payloads of `size` bytes over three streams.

    With `SMALL_SEGMENT` this rolls several segments. Returns the payloads per
    stream, in seq order (payload i of a stream has seq i + 1).
    """
    rng = random.Random(seed)
    written: dict[str, list[bytes]] = {}
    for i in range(records):
        stream = ("alpha", "beta", "gamma")[i % 3]
        payload = random_payload(rng, size)
        seq = store.append(stream, payload)
        written.setdefault(stream, []).append(payload)
        assert seq == len(written[stream])
    return written


def assert_contents(store: SegmentStore, written: dict[str, list[bytes]]) -> None:
    """Every stream of `written`, and only those, reads back exactly (seqs 1..n)."""
    assert store.streams() == sorted(written)
    for stream, payloads in written.items():
        records = list(store.read(stream))
        assert [r.seq for r in records] == list(range(1, len(payloads) + 1)), stream
        assert [r.payload for r in records] == payloads, stream
        assert all(r.stream == stream for r in records)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds (a bound, not a speed claim)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"{what} not reached within {timeout} s"
            raise AssertionError(msg)
        time.sleep(0.005)
