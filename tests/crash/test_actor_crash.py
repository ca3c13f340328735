"""A persistent actor in a child process, SIGKILLed at random points, over and over.

Each run starts a child (`_actor_child.py`) on the same store: its actor restores the
snapshot, replays the backlog, then is told a burst of numbers, the child printing
``accepted N`` after each `tell` returns. The parent kills it with SIGKILL after a
random number of acknowledgements and a random pause (some runs die before or during
the restore). Finally the actor is started in this process and the test checks:

* no accepted message is lost, and nothing appears that was never sent;
* the state keeps the journal's order and holds each message once;
* a life never processes a message covered by the snapshot it restored (the side-effect
  log shows which messages were processed more than once: only messages after the
  snapshot's watermark, at most `snapshot_every` per crash).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pykka
import pytest
from _actor_child import PID, numbers_class

from pyactors import Kind, SegmentStore

CHILD = Path(__file__).with_name("_actor_child.py")
RUNS = 12  # per mode: 24 SIGKILLed children in all
BURST = 3000  # numbers a child tells if it lives long enough
SPAN = 100_000  # life L tells L * SPAN + i


def _run_and_kill(store: Path, side_log: Path, every: int, life: int, rng: random.Random) -> list[int]:
    """Run one child, SIGKILL it at a random point, return the numbers it acknowledged."""
    cmd = [sys.executable, str(CHILD), str(store), str(side_log), str(every), str(life), str(life * SPAN), str(BURST)]
    accepted: list[int] = []
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            if rng.random() < 0.15:
                time.sleep(rng.uniform(0.05, 0.4))  # somewhere in start-up, restore or replay
            else:
                first = proc.stdout.readline()
                if first != b"ready\n":
                    proc.kill()
                    pytest.fail(f"child {life} did not start: {first!r} {proc.stderr.read().decode()}")
                target = rng.choice((0, rng.randrange(1, 50), rng.randrange(50, 1500)))
                while len(accepted) < target:
                    line = proc.stdout.readline()
                    if line in (b"done\n", b""):
                        break
                    accepted.append(int(line.split()[1]))
                time.sleep(rng.choice((0.0, rng.uniform(0, 0.005), rng.uniform(0.005, 0.05))))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
        for line in proc.stdout.read().splitlines(keepends=True):  # acknowledged before the kill
            if line.startswith(b"accepted ") and line.endswith(b"\n"):
                accepted.append(int(line.split()[1]))
    return accepted


def _side_log(path: Path) -> tuple[dict[int, int], dict[int, list[int]]]:
    """Per life: the last number of the state it restored, and the numbers it processed."""
    restored: dict[int, int] = {}
    processed: dict[int, list[int]] = defaultdict(list)
    for line in path.read_text().splitlines():
        life, what, n = line.split()
        if what == "restored":
            restored[int(life)] = int(n)
        else:
            processed[int(life)].append(int(n))
    return restored, processed


@pytest.mark.parametrize("every", [1, 10], ids=["snapshot_every=1", "snapshot_every=10"])
def test_sigkilled_actor_loses_no_accepted_message_and_reprocesses_only_after_its_snapshot(
    tmp_path: Path, every: int
) -> None:
    store_path = tmp_path / "store"
    side_log = tmp_path / "side.log"
    rng = random.Random(f"actor-crash-{every}")
    accepted: list[int] = []
    for life in range(1, RUNS + 1):
        accepted += _run_and_kill(store_path, side_log, every, life, rng)
    final_life = RUNS + 1

    with SegmentStore(store_path) as store:
        journaled = [store.serializer.loads(r.payload) for r in store.read(PID, kinds=[Kind.MESSAGE])]
        ref = numbers_class(every).start(str(side_log), final_life, store=store)
        try:
            state = ref.ask("get", timeout=60)
        finally:
            pykka.ActorRegistry.stop_all()

    journaled_numbers = [entry[2] for entry in journaled if entry[0] == 0]
    sent = {life * SPAN + i for life in range(1, RUNS + 1) for i in range(BURST)}

    # None lost, nothing invented, journal order kept, each message once in the state.
    assert len(accepted) > 0
    assert set(accepted) <= set(state), f"lost: {sorted(set(accepted) - set(state))[:10]}"
    assert set(state) <= sent
    assert state == sorted(state)
    assert len(state) == len(set(state))
    assert state == journaled_numbers

    # Side effects: a life never reprocesses what its restored snapshot covered, and a
    # crash makes at most `every` messages (those after the watermark) run twice.
    restored, processed = _side_log(side_log)
    assert final_life in restored
    for life, numbers in processed.items():
        assert numbers == sorted(numbers), f"life {life} processed out of order"
        if life in restored:
            assert all(n > restored[life] for n in numbers), f"life {life} reprocessed a snapshotted message"
    assert set(Counter(n for numbers in processed.values() for n in numbers)) == set(state)
    for life in range(1, final_life):
        later = {n for other, numbers in processed.items() if other > life for n in numbers}
        again = [n for n in processed[life] if n in later]
        assert again == processed[life][len(processed[life]) - len(again) :], f"life {life}: not only its last"
        assert len(again) <= every, f"life {life}: {len(again)} messages processed again"
