"""What a crash-harness child does until it is SIGKILLed (imported by the fork server and the test; not collected).

A child ("life") opens the store under one durability policy, starts two persistent
actors (they restore their snapshots and replay their journals), prints ``ready``,
then runs three workloads at once, each in its own thread, forever:

* **raw**: single appends and `append_many` batches over the streams `RAW`, each payload
  tagged with its (stream, seq) and a CRC32; snapshot records in `SNAPS`, pruned now and
  then, and the store compacted;
* **actors**: `tell` and `ask` of numbers to the actors `ACTORS` (persistence id ->
  ``snapshot_every``); life L's i-th number to an actor is ``L * SPAN + i``;
* **workflows**: the threads left unfinished by earlier lives are resumed, then new runs
  of `build_workflow()` are invoked one after another (some pruned to their last
  checkpoint once finished).

Every line the child writes to its pipe is one ``write(2)`` of less than PIPE_BUF
bytes, so lines never tear or interleave. An *intent* line is written before an
operation, an *ack* line after it returned (so an acked operation completed, and
anything found in the store was at least intended):

    ready
    I s:q s:q-r ...   raw: intends to append these (stream, seq) in one call (q-r: seqs q to r)
    A s:q s:q-r ...   raw: that call returned these seqs
    P upto            raw: intends to prune SNAPS up to seq `upto`;   p upto: done
    C                 raw: intends to compact;                        c: done
    T pid n           actor: tell(n) returned
    Q pid n c d       actor: ask(n) returned state (count c, digest d)
    R pid last        actor `pid` restored, the last number its state covers (-1: none)
    X pid n           actor `pid` processed n (a side effect: repeats show reprocessing)
    W tid             workflow: intends to invoke thread `tid`
    F tid             workflow: the run of `tid` returned (finished)
    K tid             workflow: pruned `tid` to its last checkpoint
    S tid node        workflow: a node body started;   E tid node: it returned
    G pid c d         drain: the actor's final state
    drained           drain: done, the store is closed
    ! text            a workload failed (the child then exits with status 3)
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import traceback
import zlib
from typing import Any

import pykka

from pyactors import FileCheckpointer, Kind, PersistentActor, SegmentStore, Workflow
from pyactors.workflow import unfinished

RAW = ("s0", "s1", "s2")
SNAPS = "snaps"
SNAPS_KEEP = 3
ACTORS = {"acct-1": 1, "acct-7": 7}
SPAN = 1_000_000
SEGMENT_BYTES = 64 * 1024
SIZES = (0, 1, 40, 63, 64, 200, 1000, 3000)
BIG = 512 * 1024
"""One payload in a hundred is this big (compressed, or stored raw when zstd cannot shrink it)."""
LONG_BATCH = 20_000
"""Records in the batch a "long write" life appends first: small, so stored raw without compression,
~4 MiB in one write(2) of many pages, which a SIGKILL can cut short (the kernel stops between pages)."""
NODES = ("start", "a", "b", "c", "join")
BRANCHES = ("a", "b", "c")

# -- raw records ----------------------------------------------------------------------


def kind_for(stream: str, seq: int) -> int:
    """The kind of record `seq` of a raw stream."""
    return Kind.SNAPSHOT if stream == SNAPS or seq % 5 == 0 else Kind.MESSAGE


def make_payload(stream: str, seq: int, rng: random.Random, size: int | None = None) -> bytes:
    """A payload tagged ``stream#seq#``, with a random or compressible body and a CRC32 of both."""
    head = f"{stream}#{seq}#".encode()
    if size is not None:
        body = rng.randbytes(size)
    else:
        size = BIG if rng.random() < 0.01 else rng.choice(SIZES)
        body = rng.randbytes(size) if rng.random() < 0.5 else (head * (size // len(head) + 1))[:size]
    return head + body + zlib.crc32(head + body).to_bytes(4, "little")


def payload_ok(stream: str, seq: int, payload: bytes) -> bool:
    """True when `payload` is one `make_payload` made for (stream, seq), intact."""
    head = f"{stream}#{seq}#".encode()
    return (
        payload.startswith(head)
        and len(payload) >= len(head) + 4
        and zlib.crc32(payload[:-4]) == int.from_bytes(payload[-4:], "little")
    )


# -- actors ---------------------------------------------------------------------------


def step(state: list[int], n: int) -> list[int]:
    """The actors' state after processing number `n`: [count, last number, CRC32 of the numbers]."""
    count, _, digest = state
    return [count + 1, n, zlib.crc32(n.to_bytes(8, "little"), digest)]


INITIAL = [0, -1, 0]


class Accumulator(PersistentActor):
    """State: `step` folded over the numbers it processed; an ask replies with the new state."""

    def on_start(self) -> None:
        if self.state is None:
            self.state = list(INITIAL)
        _say(f"R {self.persistence_id} {self.state[1]}\n")

    def on_receive(self, message: Any) -> Any:
        if message == "get":
            return list(self.state)
        self.state = step(self.state, message)
        _say(f"X {self.persistence_id} {message}\n")
        return list(self.state)


def actor_class(pid: str) -> type[Accumulator]:
    """`Accumulator` with the snapshot policy of actor `pid`."""
    return type(f"Accumulator{ACTORS[pid]}", (Accumulator,), {"snapshot_every": ACTORS[pid]})


# -- workflows ------------------------------------------------------------------------


def thread_input(tid: str) -> dict[str, Any]:
    """The input of workflow thread `tid` (``L<life>-<k>``): its id and a number made from it."""
    life, k = tid[1:].split("-")
    return {"tid": tid, "x": int(life) * 1000 + int(k)}


_BODIES: dict[str, Any] = {
    "start": lambda s: {"s": s["x"] * 3 + 1},
    "a": lambda s: {"a": s["s"] + 1},
    "b": lambda s: {"b": s["s"] * 2},
    "c": lambda s: {"c": s["s"] - 5},
    "join": lambda s: {"j": s["a"] + s["b"] + s["c"]},
}


def expected_state(tid: str) -> dict[str, Any]:
    """The final state of an uninterrupted run of thread `tid`."""
    state = thread_input(tid)
    for node in NODES:
        state.update(_BODIES[node](state))
    return state


def build_workflow(rng: random.Random | None = None) -> Workflow:
    """start -> (a, b, c) -> join; each node body reports its start and end (and naps, given `rng`)."""

    def node(name: str) -> Any:
        def body(state: dict[str, Any]) -> dict[str, Any]:
            _say(f"S {state['tid']} {name}\n")
            if rng is not None:  # the branches nap longer: kills often land in the fan-out
                time.sleep(rng.choice((0.002, 0.005, 0.01) if name in BRANCHES else (0, 0.001)))
            out: dict[str, Any] = _BODIES[name](state)
            _say(f"E {state['tid']} {name}\n")
            return out

        return body

    wf = Workflow("crash-harness")
    for name in NODES:
        wf.add_node(name, node(name))
    for branch in BRANCHES:
        wf.add_edge("start", branch)
        wf.add_edge(branch, "join")
    wf.set_entry_point("start")
    wf.set_finish_point("join")
    return wf


# -- the child ------------------------------------------------------------------------

_OUT = -1


def _say(line: str) -> None:
    os.write(_OUT, line.encode())


def _guarded(name: str, work: Any) -> Any:
    def run() -> None:
        try:
            work()
        except BaseException:
            text = traceback.format_exc().replace("\n", " | ")[-3000:]  # one line, under PIPE_BUF
            os.write(_OUT, f"! {name}: {text}\n".encode())
            os._exit(3)

    return run


def _items(batch: list[tuple[str, int]]) -> str:
    """``s:q`` per record, runs of one stream's consecutive seqs as ``s:q-r``."""
    runs: list[list[Any]] = []
    for s, q in batch:
        if runs and runs[-1][0] == s and runs[-1][2] == q - 1:
            runs[-1][2] = q
        else:
            runs.append([s, q, q])
    return " ".join(f"{s}:{a}" if a == b else f"{s}:{a}-{b}" for s, a, b in runs)


def _raw(store: SegmentStore, rng: random.Random, *, long_write: bool) -> None:
    streams = (*RAW, SNAPS)
    next_seq = {s: store.last_seq(s) + 1 for s in streams}
    while True:
        roll = rng.random()
        if roll < 0.03 and next_seq[SNAPS] - 1 > SNAPS_KEEP:
            upto = next_seq[SNAPS] - 1 - SNAPS_KEEP
            _say(f"P {upto}\n")
            store.prune(SNAPS, Kind.SNAPSHOT, keep_last=SNAPS_KEEP)
            _say(f"p {upto}\n")
            continue
        if roll < 0.04:
            _say("C\n")
            store.compact(min_dead_ratio=0.3)
            _say("c\n")
            continue
        n = LONG_BATCH + 1 if long_write else 1 if roll < 0.7 else rng.randint(2, 6)
        batch = []
        for i in range(n):
            stream = RAW[0] if long_write and i < LONG_BATCH else rng.choice(streams)
            batch.append((stream, next_seq[stream]))
            next_seq[stream] += 1
        size = 150 if long_write else None
        records = [(s, make_payload(s, q, rng, size), kind_for(s, q)) for s, q in batch]
        long_write = False
        items = _items(batch)
        _say(f"I {items}\n")
        got = [store.append(*records[0])] if n == 1 else store.append_many(records)
        if got != [q for _, q in batch]:
            msg = f"append returned seqs {got} for {batch}"
            raise AssertionError(msg)
        _say(f"A {items}\n")
        time.sleep(0)  # let the other workloads have the GIL


def _actors(refs: dict[str, pykka.ActorRef[Accumulator]], life: int, rng: random.Random) -> None:
    sent = dict.fromkeys(refs, 0)
    while True:
        pid = rng.choice(sorted(refs))
        n = life * SPAN + sent[pid]
        sent[pid] += 1
        if rng.random() < 0.1:
            count, _, digest = refs[pid].ask(n, timeout=30)
            _say(f"Q {pid} {n} {count} {digest}\n")
        else:
            refs[pid].tell(n)
            _say(f"T {pid} {n}\n")
        if rng.random() < 0.05:
            time.sleep(0.001)  # let the actors catch up now and then


def _workflows(store: SegmentStore, life: int, rng: random.Random) -> None:
    cp = FileCheckpointer(store=store)
    app = build_workflow(rng).compile(checkpointer=cp)
    for tid in unfinished(cp):
        app.resume(tid)
        _say(f"F {tid}\n")
    k = 0
    while True:
        k += 1
        tid = f"L{life}-{k}"
        _say(f"W {tid}\n")
        app.invoke(thread_input(tid), thread_id=tid)
        _say(f"F {tid}\n")
        if rng.random() < 0.3:
            cp.prune(tid, keep_last=1)
            _say(f"K {tid}\n")


def run_child(
    out: int, path: str, durability: str, life: int, seed: int, *, drain: bool = False, long_write: bool = False
) -> None:
    """The body of a forked child: run the workloads forever (or, with `drain`, recover and stop).

    With `long_write`, the raw workload starts with a batch of `LONG_BATCH` records.

    Never returns: it exits with `os._exit` (0 after a drain, 3 when a workload fails).
    """
    global _OUT  # noqa: PLW0603 - one pipe per (forked) process
    _OUT = out
    sys.setswitchinterval(0.001)  # the three workloads take turns often (the default is 5 ms)
    seeds = [seed * 3 + i for i in range(3)]

    def main() -> None:
        store = SegmentStore(path, durability=durability, segment_bytes=SEGMENT_BYTES)  # type: ignore[arg-type]
        refs = {pid: actor_class(pid).start(persistence_id=pid, store=store) for pid in sorted(ACTORS)}
        if drain:
            cp = FileCheckpointer(store=store)
            app = build_workflow().compile(checkpointer=cp)
            for tid in unfinished(cp):
                app.resume(tid)
                _say(f"F {tid}\n")
            for pid, ref in refs.items():
                count, _, digest = ref.ask("get", timeout=60)
                _say(f"G {pid} {count} {digest}\n")
            pykka.ActorRegistry.stop_all()
            store.close()
            _say("drained\n")
            os._exit(0)
        _say("ready\n")
        workloads = {
            "raw": lambda: _raw(store, random.Random(seeds[0]), long_write=long_write),
            "actors": lambda: _actors(refs, life, random.Random(seeds[1])),
            "workflows": lambda: _workflows(store, life, random.Random(seeds[2])),
        }
        workers = [threading.Thread(target=_guarded(name, work), daemon=True) for name, work in workloads.items()]
        for w in workers:
            w.start()
        threading.Event().wait()

    _guarded("main", main)()
    os._exit(3)  # not reached: main never returns
