"""The native core releases the GIL while it compresses, writes, reads and decompresses."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from pyactors import SegmentStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def _python_progress_during(call: Callable[[], object]) -> int:
    """Count loop iterations this thread makes while `call` runs in another thread."""
    started = threading.Event()

    def worker() -> None:
        started.set()
        call()

    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    spins = 0
    while t.is_alive():
        spins += 1
    t.join()
    return spins


def _payload(size: int) -> bytes:
    # Compressible but not trivial, so zstd has real work to do.
    block = os.urandom(256)
    return b"".join(block[i % 200 :] + b"%d" % i for i in range(size // 300))[:size]


def test_append_releases_the_gil_while_it_compresses_and_writes(tmp_path: Path) -> None:
    with SegmentStore(tmp_path / "s", compression_level=15) as store:
        big = _payload(16 << 20)
        spins = _python_progress_during(lambda: store.append("big", big))
        assert spins > 10_000
        assert store.latest("big", kind=2) is not None


def test_latest_many_releases_the_gil_while_it_reads_and_decompresses(tmp_path: Path) -> None:
    with SegmentStore(tmp_path / "s") as store:
        streams = [f"actor-{i}" for i in range(64)]
        store.append_many([(s, _payload(512 << 10), 1) for s in streams])
        result: dict[str, object] = {}
        spins = _python_progress_during(lambda: result.update(store.latest_many(streams)))
        assert spins > 1_000
        assert len(result) == len(streams)
