"""The crash harness: children appending, telling actors and running workflows, SIGKILLed at random.

Per durability policy, a fork server (`_forkserver.py`) forks child after child
(`_workload.py`) on one store; each child reports every operation through a pipe as it
is acknowledged, and the test SIGKILLs it at a random moment: during start-up and
recovery (restoring actors, resuming workflows left unfinished by the previous kill),
after a random number of acknowledgements, or a random pause after them. After every
kill the test reopens the store and checks:

* the store opens, and `verify()` is clean;
* every acknowledged operation is there and intact: raw records (each payload tagged
  with its stream and seq, with a CRC32), actor messages (told or asked), finished
  workflow runs (final, with the state of an uninterrupted run), prunes;
* per-stream sequences have no gaps and no duplicates, an `append_many` batch cut by
  the kill is there whole or not at all, and nothing appears that was never written
  (intended: each child announces an operation before it starts it);
* every actor snapshot holds exactly the effect of the journaled messages up to its
  watermark, and every ask's reply the effect of the messages up to it;
* a workflow node whose writes were recorded never runs again, and a thread cut short
  is listed by `unfinished()`.

After `LIVES_PER_STORE` kills (each reopening continues the previous history, so
recovery is itself recovered), a last child drains the store: it restores the actors,
finishes every workflow, reads the actors' final states and closes the store cleanly;
the test checks that every thread ended as an uninterrupted run would, and that no life
reprocessed a message its restored snapshot covered (nor more than `snapshot_every`
of its last messages).

``PYACTORS_CRASH_ITERATIONS`` (default 204) is the number of kills, split over the
three policies; ``make soak`` runs 10,000 and prints the counts.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _forkserver import ForkServer, Lines
from _util import DURABILITIES
from _workload import (
    ACTORS,
    BRANCHES,
    INITIAL,
    LONG_BATCH,
    NODES,
    RAW,
    SEGMENT_BYTES,
    SNAPS,
    SPAN,
    expected_state,
    kind_for,
    payload_ok,
    step,
)

from pyactors import FileCheckpointer, Kind, SegmentStore
from pyactors.actor import _backlog
from pyactors.workflow import unfinished

if TYPE_CHECKING:
    from collections.abc import Iterator

ITERATIONS = int(os.environ.get("PYACTORS_CRASH_ITERATIONS", "204"))
LIVES_PER_STORE = 12
"""Kills on one store before it is drained and a new store started. The last of them starts with a long
batch (`_workload.LONG_BATCH`) and is killed while it is being appended, maybe inside its write(2)."""
SHOWN = (
    "torn tails truncated",
    "torn records dropped",
    "indexes rebuilt",
    "kills during start-up and recovery",
    "kills in the middle of a workflow fan-out",
    "operations cut by a kill: whole",
    "operations cut by a kill: absent",
    "long batches cut by a kill: whole",
    "long batches cut by a kill: absent",
)
"""Counts printed even when zero."""
DEADLINE = 60.0
"""Seconds a child may take to reach the point where it is to be killed (a hang bound, not a speed claim)."""


@dataclass
class Life:
    """What one child reported."""

    number: int
    killed: bool
    lines: list[str]


@dataclass
class _InFlight:
    """What a life was doing when it was killed (and what it restored)."""

    life: int
    processed: dict[str, list[int]]
    restored: dict[str, int] = field(default_factory=dict)
    raw: list[tuple[str, int]] | None = None
    prune: int | None = None
    nodes: set[tuple[str, str]] = field(default_factory=set)
    """Workflow nodes started and not returned: (thread, node)."""


@dataclass
class History:
    """What the children of one store intended and had acknowledged, and the counts."""

    counts: Counter[str]
    raw_intended: dict[str, int] = field(default_factory=dict)
    raw_acked: dict[str, int] = field(default_factory=dict)
    cut_batch: list[tuple[str, int]] | None = None
    """The raw operation in flight when the last child was killed."""
    pruned_upto: int = 0
    prunes_in_flight: set[int] = field(default_factory=set)
    told: dict[str, set[int]] = field(default_factory=dict)
    replies: list[tuple[str, int, list[int]]] = field(default_factory=list)
    processed: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    """Per life, per actor: the numbers it processed, in order (its side effects)."""
    threads: set[str] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)
    recorded: dict[str, set[str]] = field(default_factory=dict)
    """Per workflow thread: the nodes whose writes the store held at the last check."""
    final: dict[str, list[int]] = field(default_factory=dict)

    def absorb(self, life: Life) -> None:
        """Take in a life's lines; check what can be checked from them alone."""
        now = _InFlight(life.number, processed=self.processed.setdefault(life.number, {}))
        for line in life.lines:
            tag, *rest = line.split(" ")
            assert tag != "!", f"life {life.number}: a workload failed: {line}"
            if tag in "IAPpc":
                self._raw_line(now, tag, rest)
            elif tag in "TQRXG":
                self._actor_line(now, tag, rest)
            elif tag in "WFKSE":
                self._workflow_line(now, tag, rest)
        if life.killed:
            self.cut_batch = now.raw
            if now.prune is not None:
                self.prunes_in_flight.add(now.prune)
            if "ready" not in life.lines:
                self.counts["kills during start-up and recovery"] += 1
            if any(node in BRANCHES for _, node in now.nodes):
                self.counts["kills in the middle of a workflow fan-out"] += 1

    def _raw_line(self, now: _InFlight, tag: str, rest: list[str]) -> None:
        if tag in "IA":
            items = [(s, q) for item in rest for s, q in _seqs(item)]
            table = self.raw_intended if tag == "I" else self.raw_acked
            for s, q in items:
                table[s] = max(table.get(s, 0), q)
            now.raw = items if tag == "I" else None
            if tag == "A":
                self.counts["raw records acknowledged"] += len(items)
                self.counts["append_many batches acknowledged"] += len(items) > 1
                self.counts["long batches acknowledged"] += len(items) > LONG_BATCH
        elif tag == "P":
            now.prune = int(rest[0])
        elif tag == "p":
            self.pruned_upto = max(self.pruned_upto, int(rest[0]))
            now.prune = None
            self.counts["prunes acknowledged"] += 1
        elif tag == "c":
            self.counts["compactions acknowledged"] += 1

    def _actor_line(self, now: _InFlight, tag: str, rest: list[str]) -> None:
        pid = rest[0]
        if tag in "TQ":
            n = int(rest[1])
            self.told.setdefault(pid, set()).add(n)
            self.counts["actor tells acknowledged" if tag == "T" else "actor asks acknowledged"] += 1
            if tag == "Q":
                self.replies.append((pid, n, [int(rest[2]), n, int(rest[3])]))
        elif tag == "R":
            now.restored[pid] = int(rest[1])
        elif tag == "X":
            n = int(rest[1])
            seen = now.processed.setdefault(pid, [])
            assert n > now.restored[pid], f"life {now.life}: {pid} reprocessed {n}, covered by its snapshot"
            assert not seen or n > seen[-1], f"life {now.life}: {pid} processed {n} after {seen[-1]}"
            seen.append(n)
        elif tag == "G":
            self.final[pid] = [int(rest[1]), int(rest[2])]

    def _workflow_line(self, now: _InFlight, tag: str, rest: list[str]) -> None:
        tid = rest[0]
        if tag == "W":
            self.threads.add(tid)
        elif tag == "F":
            self.finished.add(tid)
            self.counts["workflow runs acknowledged"] += 1
        elif tag == "K":
            self.counts["workflow prunes acknowledged"] += 1
        elif tag == "S":
            node = rest[1]
            assert node not in self.recorded.get(tid, ()), (
                f"life {now.life}: {tid}/{node} ran again though its writes were recorded"
            )
            now.nodes.add((tid, node))
        elif tag == "E":
            now.nodes.discard((tid, rest[1]))

    def check(self, store: SegmentStore, life: int, *, drained: bool = False) -> None:
        """Check the reopened store against everything acknowledged and intended so far."""
        where = f"after life {life}"
        wf_streams = {f"wf/{t}" for t in self.threads}
        assert set(store.streams()) <= {*RAW, SNAPS, *ACTORS, *wf_streams}, where
        for stream in store.streams():
            seqs = [r.seq for r in store.read(stream)]
            assert seqs == sorted(set(seqs)), f"{where}: {stream} has duplicate or unordered seqs"
            assert not seqs or seqs[-1] <= store.last_seq(stream), f"{where}: {stream}"
        self._check_raw(store, where)
        self._check_actors(store, where, drained=drained)
        self._check_workflows(store, where, drained=drained)
        report = store.verify()
        assert report.ok, f"{where}: verify() found {report.damaged}"
        self.counts["records verified"] += report.records
        # Whatever a crash interrupted (a roll, a compaction), open leaves no stray file, and
        # every file is private.
        root = Path(store.path)
        assert stat.S_IMODE(root.stat().st_mode) == 0o700, where
        for f in root.iterdir():
            assert f.name in ("LOCK", "MANIFEST") or f.suffix in (".seg", ".idx"), f"{where}: stray file {f.name}"
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f"{where}: {f.name} is {f.stat().st_mode:o}"

    def _check_raw(self, store: SegmentStore, where: str) -> None:
        for stream in (*RAW, SNAPS):
            records = list(store.read(stream))
            last = store.last_seq(stream)
            assert last >= self.raw_acked.get(stream, 0), f"{where}: {stream} lost acknowledged records"
            assert last <= self.raw_intended.get(stream, 0), f"{where}: {stream} has seqs never written"
            for r in records:
                assert r.kind == kind_for(stream, r.seq), f"{where}: {stream}#{r.seq} kind {r.kind}"
                assert payload_ok(stream, r.seq, r.payload), f"{where}: {stream}#{r.seq} payload damaged"
            seqs = [r.seq for r in records]
            if stream == SNAPS:  # pruned from the front: a contiguous run ending at the last seq
                low = seqs[0] if seqs else last + 1
                assert seqs == list(range(low, last + 1)), f"{where}: {SNAPS} {seqs}"
                deleted = low - 1
                assert deleted == self.pruned_upto or (
                    deleted > self.pruned_upto and deleted in self.prunes_in_flight
                ), f"{where}: {SNAPS} deleted up to {deleted}, acknowledged {self.pruned_upto}"
            else:
                assert seqs == list(range(1, last + 1)), f"{where}: {stream} has gaps"
                snapshots = [r.seq for r in records if r.kind == Kind.SNAPSHOT]
                latest = store.latest(stream)
                assert (latest.seq if latest else None) == (snapshots[-1] if snapshots else None), where
            self.counts["raw records checked"] += len(records)
        if self.cut_batch is not None:
            # The kernel may stop a long write(2) between two pages when the SIGKILL arrives: the
            # batch's records say more of it follow, so open drops a cut batch whole.
            batch, self.cut_batch = self.cut_batch, None
            kept = sum(q <= store.last_seq(s) for s, q in batch)
            assert kept in (0, len(batch)), f"{where}: {kept} of the {len(batch)} records of a cut batch survived"
            what = "long batches" if len(batch) > LONG_BATCH else "operations"
            state = "whole" if kept == len(batch) else "absent"
            self.counts[f"{what} cut by a kill: {state}"] += 1

    def _check_actors(self, store: SegmentStore, where: str, *, drained: bool) -> None:
        loads = store.serializer.loads
        for pid in ACTORS:
            records = list(store.read(pid))
            assert [r.seq for r in records] == list(range(1, store.last_seq(pid) + 1)), f"{where}: {pid} has gaps"
            state = list(INITIAL)
            at = {0: state}  # message seq -> the state after it
            effect: dict[int, list[int]] = {}  # number -> the state after it
            numbers: list[int] = []
            for r in records:
                if r.kind in (Kind.MESSAGE, Kind.TOLD):
                    ((_, message, _, plain),) = _backlog([(r.seq, r.kind, r.payload)], r.seq, loads)
                    assert plain, f"{where}: {pid}#{r.seq}"
                    if message != "get":
                        numbers.append(message)
                        state = step(state, message)
                        effect[message] = state
                    at[r.seq] = state
                else:
                    assert r.kind == Kind.SNAPSHOT, f"{where}: {pid}#{r.seq} kind {r.kind}"
                    watermark = int.from_bytes(r.payload[:8], "little")
                    assert watermark in at, f"{where}: {pid}#{r.seq} covers {watermark}, not a message"
                    assert loads(r.payload[8:]) == at[watermark], f"{where}: {pid} snapshot #{r.seq} != its journal"
            # Life L's numbers are L * SPAN + 0, 1, 2, ...: each life's journaled ones a prefix.
            assert numbers == sorted(set(numbers)), f"{where}: {pid} journal out of order"
            per_life = Counter(n // SPAN for n in numbers)
            assert all(n % SPAN < per_life[n // SPAN] for n in numbers), f"{where}: {pid} journal has holes"
            told = self.told.get(pid, set())
            assert told <= effect.keys(), f"{where}: {pid} lost {sorted(told - effect.keys())[:5]}"
            self.counts["actor messages checked"] += len(numbers)
            for asked, n, reply in self.replies:
                if asked == pid:
                    assert effect[n] == reply, f"{where}: ask({n}) of {pid} replied {reply}, not {effect[n]}"
            if drained:
                assert self.final[pid] == [state[0], state[2]], f"{where}: {pid} final state != its journal"

    def _check_workflows(self, store: SegmentStore, where: str, *, drained: bool) -> None:
        cp = FileCheckpointer(store=store)
        threads = set(cp.threads())
        assert self.finished <= threads, f"{where}: runs lost: {sorted(self.finished - threads)}"
        left = set(unfinished(cp))
        for tid in threads:
            snap = cp.latest(tid)
            assert snap is not None, where
            expected = expected_state(tid)
            assert set(snap.state) <= set(expected), f"{where}: {tid} state {snap.state}"
            assert snap.state == {k: expected[k] for k in snap.state}, f"{where}: {tid} state {snap.state}"
            assert len(snap.completed_nodes) == len(set(snap.completed_nodes)), f"{where}: {tid} {snap}"
            assert set(snap.completed_nodes) <= set(NODES), f"{where}: {tid} {snap.completed_nodes}"
            if tid in self.finished or drained:
                assert snap.is_final, f"{where}: {tid} finished, but its latest checkpoint is not final"
            if snap.is_final:
                assert snap.state == expected, f"{where}: {tid} final state {snap.state}"
                assert tid not in left, where
                self.recorded[tid] = set(NODES)
            else:
                assert tid in left, f"{where}: {tid} is unfinished but unfinished() does not list it"
                self.recorded[tid] = set(snap.completed_nodes) | set(snap.pending_writes)
        self.counts["workflow threads checked"] += len(threads)

    def check_lives(self) -> None:
        """After a drain: a message processed again later was among the last `snapshot_every` of its life."""
        for pid, every in ACTORS.items():
            lives = sorted(self.processed)
            for i, life in enumerate(lives):
                mine = self.processed[life].get(pid, [])
                later = {n for other in lives[i + 1 :] for n in self.processed[other].get(pid, [])}
                again = [n for n in mine if n in later]
                assert again == mine[len(mine) - len(again) :], f"life {life}: {pid} reprocessed {again}, not its last"
                assert len(again) <= every, f"life {life}: {pid} had {len(again)} messages processed again"
                self.counts["messages processed again after a kill"] += len(again)


def _seqs(item: str) -> Iterator[tuple[str, int]]:
    """The (stream, seq) pairs of an ``s:q`` or ``s:q-r`` item."""
    stream, seqs = item.rsplit(":", 1)
    first, _, last = seqs.partition("-")
    for q in range(int(first), int(last or first) + 1):
        yield stream, q


def _live(server: ForkServer, path: Path, durability: str, life: int, rng: random.Random, *, long_write: bool) -> Life:
    """Run one child and SIGKILL it at a random moment; return what it acknowledged."""
    pid, fd = server.spawn(path, durability, life, rng.randrange(2**32), long_write=long_write)
    lines = Lines(fd)
    try:
        deadline = time.monotonic() + DEADLINE
        if long_write:  # while the first, long batch is being appended (maybe inside its write)
            while not any(line.startswith("I ") for line in lines.lines):
                assert not lines.eof, f"life {life} ended early: {lines.lines[-3:]}"
                assert time.monotonic() < deadline, f"life {life}: no long write in {DEADLINE} s"
                lines.read(0.5)
            stop = time.monotonic() + rng.uniform(0, 0.15)
        elif rng.random() < 0.15:  # during start-up: opening, restoring the actors
            stop = time.monotonic() + rng.uniform(0, 0.03)
        else:  # after some acknowledgements, then a pause: short, or long enough for workflow runs
            target = rng.choice((0, rng.randint(1, 100)))
            while "ready" not in lines.lines or len(lines.lines) < target:
                assert not lines.eof, f"life {life} ended early: {lines.lines[-3:]}"
                assert time.monotonic() < deadline, f"life {life}: {target} lines not reached in {DEADLINE} s"
                lines.read(0.5)
            stop = time.monotonic() + rng.choice((0.0, rng.uniform(0, 0.003), rng.uniform(0.003, 0.3)))
        while (now := time.monotonic()) < stop and not lines.eof:
            lines.read(stop - now)  # keep the pipe drained while the child runs on
        os.kill(pid, signal.SIGKILL)
        status = server.wait(pid)
        while not lines.eof:
            lines.read(DEADLINE)
    finally:
        lines.close()
    failed = [line for line in lines.lines if line.startswith("!")]
    assert status == -signal.SIGKILL, f"life {life} exited {status} before the kill: {failed or lines.lines[-3:]}"
    return Life(life, killed=True, lines=lines.lines)


def _drain(server: ForkServer, path: Path, durability: str, life: int) -> Life:
    """Run a child that recovers everything, finishes every workflow and closes the store."""
    pid, fd = server.spawn(path, durability, life, 0, drain=True)
    lines = Lines(fd)
    try:
        deadline = time.monotonic() + DEADLINE
        while not lines.eof and time.monotonic() < deadline:
            lines.read(deadline - time.monotonic())
        if not lines.eof:
            os.kill(pid, signal.SIGKILL)
        status = server.wait(pid)
    finally:
        lines.close()
    assert status == 0, f"drain (life {life}) exited {status}: {lines.lines[-3:]}"
    assert lines.lines[-1:] == ["drained"], lines.lines[-3:]
    return Life(life, killed=False, lines=lines.lines)


def _open(path: Path, durability: str, counts: Counter[str], life: int) -> SegmentStore:
    store = SegmentStore(path, durability=durability, segment_bytes=SEGMENT_BYTES)  # type: ignore[arg-type]
    report = store.open_report
    if report.truncated_bytes:
        counts["torn tails truncated"] += 1
        counts["torn records dropped"] += report.dropped_records
    counts["indexes rebuilt"] += len(report.rebuilt_indexes)
    # A kill can tear the tail of the active segment, and damage nothing else.
    assert sum(d.length for d in report.damaged) == report.truncated_bytes, f"after life {life}: {report}"
    return store


@pytest.fixture(scope="module")
def fork_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    """One fork server for the module's tests."""
    server = ForkServer(tmp_path_factory.mktemp("forkserver") / "server.log")
    yield server
    server.close()


@pytest.mark.parametrize("durability", DURABILITIES)
def test_sigkilled_children_lose_no_acknowledged_append_message_or_workflow_run(
    tmp_path: Path, fork_server: ForkServer, durability: str
) -> None:
    kills = math.ceil(ITERATIONS / len(DURABILITIES))
    rng = random.Random(f"crash-harness/{durability}")
    counts: Counter[str] = Counter(dict.fromkeys(SHOWN, 0))
    life = 0
    while counts["kills"] < kills:
        path = tmp_path / f"store-{life}"
        history = History(counts)
        lives = min(LIVES_PER_STORE, kills - counts["kills"])
        for i in range(lives):
            life += 1
            history.absorb(_live(fork_server, path, durability, life, rng, long_write=i == lives - 1))
            counts["kills"] += 1
            with _open(path, durability, counts, life) as store:
                history.check(store, life)
        life += 1
        history.absorb(_drain(fork_server, path, durability, life))
        counts["drains"] += 1
        with _open(path, durability, counts, life) as store:
            history.check(store, life, drained=True)
            assert store.open_report.truncated_bytes == 0, "a clean close left a torn tail"
            assert store.open_report.damaged == (), store.open_report
        history.check_lives()
        shutil.rmtree(path)

    print(f"\ncrash harness [{durability}]:")  # shown by `make soak` (pytest -s)
    for name, n in sorted(counts.items()):
        print(f"  {name:45} {n:>10}")
    assert counts["kills"] >= kills
    # The kills reached every workload (in a few hundred kills, each is hit many times).
    for what in ("raw records acknowledged", "actor tells acknowledged", "workflow runs acknowledged"):
        assert counts[what] > 0, counts
    assert counts["kills in the middle of a workflow fan-out"] > 0, counts
