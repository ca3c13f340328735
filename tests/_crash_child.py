"""Child process of the lock tests (run as a script, not collected).

Usage:
    python _crash_child.py hold PATH
        Open the store, append one record to stream ``holder``, print ``locked``,
        then block until stdin is closed.
    python _crash_child.py try PATH
        Try to open the store; print ``opened`` or the name of the exception.
"""

from __future__ import annotations

import os
import sys

from pyactors import SegmentStore


def _say(text: str) -> None:
    os.write(1, text.encode())


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
    if mode == "hold":
        run_hold(args[0])
    elif mode == "try":
        run_try(args[0])
    else:
        sys.exit(f"unknown mode {mode}")
