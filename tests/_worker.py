"""Worker process of the process-supervision tests (run as a script, not collected).

Every line it reports goes to the file named by ``PYACTORS_TEST_LOG`` (one
``write`` per line, appended), so a test can follow it while it runs.

Usage:
    python _worker.py tick [--interval S] [--until N] [--crash-after K] [--hang-after K]
        Open the store in ``$PYACTORS_STORE``, count the records of the stream
        named ``$PYACTORS_WORKER`` and report ``start <pid> <count>``. Then, per
        tick: append a record, call `pyactors.process.heartbeat()`, report
        ``tick <pid> <seq>``, sleep. Exit 0 once the stream has N records. In its
        first life only (the stream was empty at start): exit 1 after K ticks
        (``--crash-after``), or stop heartbeating and sleep forever after K
        ticks (``--hang-after``).
    python _worker.py crash
        Report ``crash <pid>`` and exit with status 3.
    python _worker.py sleep
        Report ``sleep <pid>`` and sleep forever, never heartbeating.
    python _worker.py submit PATH
        Report ``submit <pid> <PATH><TAB><content of PATH>`` and exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from pyactors import SegmentStore
from pyactors.process import heartbeat


def report(line: str) -> None:
    """Append one line to the test's log file."""
    fd = os.open(os.environ["PYACTORS_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def run_tick(args: argparse.Namespace) -> int:
    name = os.environ["PYACTORS_WORKER"]
    pid = os.getpid()
    with SegmentStore(os.environ["PYACTORS_STORE"], durability="process") as store:
        found = sum(1 for _ in store.read(name))
        report(f"start {pid} {found}")
        first_life = found == 0
        ticks = 0
        while args.until is None or store.last_seq(name) < args.until:
            seq = store.append(name, f"tick from {pid}".encode())
            ticks += 1
            if first_life and args.crash_after is not None and ticks >= args.crash_after:
                report(f"crashing {pid} {seq}")
                os._exit(1)
            if first_life and args.hang_after is not None and ticks > args.hang_after:
                report(f"hanging {pid} {seq}")
                while True:
                    time.sleep(60)
            heartbeat()
            report(f"tick {pid} {seq}")
            time.sleep(args.interval)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    modes = parser.add_subparsers(dest="mode", required=True)
    tick = modes.add_parser("tick")
    tick.add_argument("--interval", type=float, default=0.02)
    tick.add_argument("--until", type=int)
    tick.add_argument("--crash-after", type=int)
    tick.add_argument("--hang-after", type=int)
    modes.add_parser("crash")
    modes.add_parser("sleep")
    submit = modes.add_parser("submit")
    submit.add_argument("path")
    args = parser.parse_args()
    pid = os.getpid()
    if args.mode == "tick":
        return run_tick(args)
    if args.mode == "crash":
        report(f"crash {pid}")
        return 3
    if args.mode == "sleep":
        report(f"sleep {pid}")
        while True:
            time.sleep(60)
    with open(args.path, encoding="utf-8") as f:
        content = f.read()
    report(f"submit {pid} {args.path}\t{content}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
