"""Child process of the actor crash test (run as a script, not collected).

Usage:
    python _actor_child.py STORE SIDE_LOG EVERY LIFE FIRST COUNT

Opens the store (durability "process"), starts a `Numbers` actor (persistence id
``numbers``, ``snapshot_every=EVERY``), which restores its snapshot and replays its
backlog, then prints ``ready`` and tells it the numbers FIRST .. FIRST+COUNT-1 in
order, printing ``accepted N`` after each `tell` returns (one unbuffered write per
line). Then it prints ``done`` and waits for stdin to close. The parent SIGKILLs it
at random points.

The actor's state is the list of numbers it processed. Besides, each life appends
to SIDE_LOG (one ``write(2)`` per line, so a kill never tears a line):
``L restored X`` in `on_start` (X: the last number of the restored state, or -1),
and ``L processed N`` for every message it processes: the side effect that shows
which messages were processed more than once.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pyactors import PersistentActor, SegmentStore

PID = "numbers"


class Numbers(PersistentActor):
    """State: the numbers processed, in order. `"get"` replies with a copy."""

    persistence_id = PID

    def __init__(self, side_log: str, life: int) -> None:
        super().__init__()
        self.life = life
        self.fd = os.open(side_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def on_start(self) -> None:
        if self.state is None:
            self.state = []
        last = self.state[-1] if self.state else -1
        os.write(self.fd, f"{self.life} restored {last}\n".encode())

    def on_stop(self) -> None:
        os.close(self.fd)

    def on_receive(self, message: Any) -> Any:
        if message == "get":
            return list(self.state)
        self.state.append(message)
        os.write(self.fd, f"{self.life} processed {message}\n".encode())
        return None


def numbers_class(every: int) -> type[Numbers]:
    """`Numbers` with ``snapshot_every = every``."""
    return type(f"Numbers{every}", (Numbers,), {"snapshot_every": every})


def main(argv: list[str]) -> None:
    path, side_log, every, life, first, count = argv
    store = SegmentStore(path, durability="process")
    ref = numbers_class(int(every)).start(side_log, int(life), store=store)
    out = sys.stdout.fileno()
    os.write(out, b"ready\n")
    for n in range(int(first), int(first) + int(count)):
        ref.tell(n)
        os.write(out, f"accepted {n}\n".encode())
    os.write(out, b"done\n")
    sys.stdin.read()
    ref.stop()
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
