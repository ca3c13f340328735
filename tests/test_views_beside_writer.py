"""Read-only views and `pyactors verify` beside a writer that compacts all the time (issue 14).

Before the fix, `pyactors verify` beside such a writer exited 1 in 16-28 of ~100 runs
(ENOENT on a segment compaction had just removed, or a "damaged range" for an index file
it removed), and read-only opens raised `CorruptSegmentError` for a listed segment that
was gone. A view now sees one consistent set of files (docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from pyactors import SegmentStore

if TYPE_CHECKING:
    from pathlib import Path

# Appends to 5 streams in 64 KiB segments; every 2,000 appends prunes each stream to its
# last 20 records and compacts. Runs until the file `stop` exists; prints the compactions.
_WRITER = """
import pathlib, sys
from pyactors import Kind, SegmentStore
path, stop = sys.argv[1], pathlib.Path(sys.argv[2])
compactions = i = 0
with SegmentStore(path, segment_bytes=64 * 1024) as store:
    print("ready", flush=True)
    while not stop.exists():
        for _ in range(2000):
            store.append(f"s{i % 5}", b"payload %d " % i * 8)
            i += 1
        for s in range(5):
            store.prune(f"s{s}", Kind.MESSAGE, keep_last=20)
        store.compact(0.1)
        compactions += 1
print(compactions, flush=True)
"""


def test_views_and_verify_beside_a_compacting_writer_see_no_false_damage(tmp_path: Path) -> None:
    path, stop = tmp_path / "store", tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # a few compactions first
        failures = []
        for _ in range(8):
            out = subprocess.run(
                [sys.executable, "-m", "pyactors", "verify", str(path), "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if out.returncode != 0:
                failures.append(out.stdout[-500:] + out.stderr[-500:])
        views = 0
        deadline = time.monotonic() + 3
        while views < 50 or time.monotonic() < deadline:
            with SegmentStore(path, read_only=True) as view:
                report = view.verify()
                assert report.ok, report.damaged
                for stream in view.streams():
                    seqs = [r.seq for r in view.read(stream)]
                    assert seqs == sorted(seqs), stream
            views += 1
        assert failures == []
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
    assert writer.returncode == 0
    assert int(out.split()[-1]) >= 10, "the writer compacted too rarely to test anything"
    assert json.loads(
        subprocess.run(
            [sys.executable, "-m", "pyactors", "verify", str(path), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )["ok"]
