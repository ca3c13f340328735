"""Child process of the crash and lock tests (run as a script, not collected).

Usage:
    python _crash_child.py append PATH DURABILITY SEED
        Open the store and append forever: random streams, single appends and
        batches. After each call returns, write one line ``"<stream> <seq>\\n"``
        per acknowledged record to stdout (one write(2), unbuffered). The first
        line is ``ready``. Payload and kind are functions of (stream, seq), so
        the parent can check any record it finds.
    python _crash_child.py hold PATH
        Open the store, append one record to stream ``holder``, print ``locked``,
        then block until stdin is closed.
    python _crash_child.py try PATH
        Try to open the store; print ``opened`` or the name of the exception.
"""

from __future__ import annotations

import os
import random
import sys

from pyactors import Kind, SegmentStore

STREAMS = ("s0", "s1", "s2", "wf/thread-7")
SEGMENT_BYTES = 64 * 1024


def kind_for(seq: int) -> int:
    """The kind of record `seq` of any stream."""
    return Kind.SNAPSHOT if seq % 5 == 0 else Kind.MESSAGE


def expected_payload(stream: str, seq: int) -> bytes:
    """The payload of record `seq` of `stream`: random or compressible, 0 to 3000 bytes."""
    rng = random.Random(f"{stream}#{seq}")
    size = rng.choice((0, 1, 40, 63, 64, 200, 1000, 3000))
    if rng.random() < 0.5:
        return rng.randbytes(size)
    return (f"{stream}:{seq};".encode() * (size // 4 + 1))[:size]


def _say(text: str) -> None:
    os.write(1, text.encode())


def run_append(path: str, durability: str, seed: int) -> None:
    store = SegmentStore(path, durability=durability, segment_bytes=SEGMENT_BYTES)  # type: ignore[arg-type]
    next_seq = {s: store.last_seq(s) + 1 for s in STREAMS}
    rng = random.Random(seed)
    _say("ready\n")
    while True:
        n = 1 if rng.random() < 0.7 else rng.randint(1, 6)
        batch = []
        for _ in range(n):
            stream = rng.choice(STREAMS)
            seq = next_seq[stream]
            next_seq[stream] += 1
            batch.append((stream, expected_payload(stream, seq), kind_for(seq), seq))
        if n == 1:
            stream, payload, kind, _ = batch[0]
            got = [store.append(stream, payload, kind=kind)]
        else:
            got = store.append_many([(s, p, k) for s, p, k, _ in batch])
        wanted = [seq for *_, seq in batch]
        if got != wanted:
            sys.stderr.write(f"append returned seqs {got}, expected {wanted}\n")
            sys.stderr.flush()
            os._exit(3)
        _say("".join(f"{s} {seq}\n" for s, _, _, seq in batch))


def run_hold(path: str) -> None:
    with SegmentStore(path) as store:
        store.append("holder", b"written by the holder")
        _say("locked\n")
        sys.stdin.buffer.read()


def run_try(path: str) -> None:
    try:
        store = SegmentStore(path)
    except Exception as exc:
        _say(f"{type(exc).__name__}\n")
    else:
        store.close()
        _say("opened\n")


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "append":
        run_append(args[0], args[1], int(args[2]))
    elif mode == "hold":
        run_hold(args[0])
    elif mode == "try":
        run_try(args[0])
    else:
        sys.exit(f"unknown mode {mode}")
