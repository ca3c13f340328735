"""The native core releases the GIL while it compresses, writes, reads and decompresses.

One exception: a small append that can be done at once (no fdatasync, no segment roll,
the writer free) keeps the GIL; it must never wait for anything while holding it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
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


def test_a_small_append_while_compaction_holds_the_writer_waits_without_the_gil(tmp_path: Path) -> None:
    # Compaction holds the writer while it calls its Python progress callback. A small
    # append from another thread must wait for the writer with the GIL released: held,
    # the callback could never run again and the process would hang (hence a subprocess).
    script = textwrap.dedent(
        """
        import sys, threading
        from pyactors import Kind, SegmentStore

        store = SegmentStore(sys.argv[1], segment_bytes=4096)
        for i in range(300):
            store.append("a", b"x" * 100)
        store.prune("a", Kind.MESSAGE, 0)
        appender = []

        def progress(done, total):
            if not appender:
                t = threading.Thread(target=store.append, args=("b", b"small"))
                t.start()
                t.join(0.5)  # it cannot finish: the writer is busy
                appender.append((t, t.is_alive()))
            return True

        store.compact(0.0, progress)
        t, waited = appender[0]
        t.join(30)
        print(waited, store.last_seq("b"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "s")], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["True", "1"]
