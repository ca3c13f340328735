"""Workflow benchmark: pyactors checkpointers side by side with LangGraph's.

The ``workflow`` area of ``pyactors bench`` (``--only workflow``; needs the ``bench``
extra: ``langgraph`` and ``langgraph-checkpoint-sqlite``). As in the other areas,
every comparison alternates its arms round by round (order rotated every round, a
full ``gc.collect()`` untimed before each arm) and prints the run count, median, p99
and ratios, with the targets and "met"/"MISSED".

The graph, the same for both engines: 10 nodes in a line (``n0`` -> ... -> ``n9``);
node ``i`` reads the state's blob (``len``), writes its own key ``k<i>`` and appends
``"n<i>"`` to ``log`` (a list with an ``operator.add`` reducer). The blob is a bytes
value of 1 KB, 100 KB or 1 MB (semi-compressible: concatenated pickled dicts) given
in the input and passed along unchanged from node to node.

Sections:

* ``checkpoint``: per-superstep checkpoint cost and full-run time with
  ``FileCheckpointer`` (each durability policy) and ``MemoryCheckpointer`` vs
  LangGraph with ``InMemorySaver`` and ``SqliteSaver`` (a file in a temporary
  directory; SQLite's defaults: rollback journal, ``synchronous=FULL``) and with no
  checkpointer. LangGraph runs with ``durability="sync"`` (each checkpoint is
  written before the next superstep, as pyactors does). Method: the time spent
  inside the checkpointer's write calls during one run, divided by the 10
  supersteps. The calls are wrapped on the instance: pyactors
  ``Checkpointer.write_checkpoint`` (the checkpoint record: serialise, append,
  index; 11 per run: input + 10 supersteps) + ``write_node_writes`` (a node's
  writes, recorded as it finishes while others of its superstep still run: none in
  this linear graph, whose superstep checkpoints hold them); LangGraph ``saver.put`` (12 per
  run) + ``saver.put_writes`` (11 per run). Each run uses a new thread, deleted
  after the run (untimed).
* ``recovery``: a fresh process resumes a thread whose process was killed (SIGKILL) as
  node ``n5`` started (1 KB to 10 MB blob; each engine's thread is made once by a
  child that kills itself, its files copied for every resuming child): the parent
  reads ``CLOCK_MONOTONIC`` (system-wide on Linux) just before spawning; the child
  reads it at its first line, after its imports, after opening the checkpointer, after
  building and compiling the graph, when the thread's checkpoints are loaded (wrapping
  pyactors ``Checkpointer.load_head`` / LangGraph ``saver.get_tuple``), when the first
  node function starts, and when the run returns. Each child gets its own copy of the
  same killed thread's files. Children run with bytecode caching on
  (``PYTHONPYCACHEPREFIX`` in the temporary directory, ``PYTHONDONTWRITEBYTECODE``
  removed) after untimed warm-ups, as an installed package would run.
* ``change``: the per-superstep checkpoint cost (as in ``checkpoint``) against the size
  of each node's change (100 B to 100 KB), the blob unchanged in the state.
* ``footprint``: bytes on disk per checkpoint after one run on fresh files, and the
  compression ratio (pickled state of every superstep / bytes on disk), for the
  ``checkpoint`` states and a growing one (each node appends 10 KiB to a list).
* ``history``: recovery against the length of a thread's history. A one-node loop
  (``{"n": n + 1, "log": [n]}``, ``log`` reduced by ``operator.add``, beside a 100 KB
  string that never changes) is run for N supersteps (10 to 10,000) by a child that
  SIGKILLs itself as the node starts superstep N + 1; each engine's thread is made once.
  Fresh processes then open it: "open -> state restored" (pyactors ``get_state``,
  LangGraph ``graph.get_state``; from after the imports, so opening and compiling count)
  and the time of ``get_history(limit=10)`` / ``get_state_history(limit=10)`` read the
  thread itself; "open -> next node running" (``resume`` / ``invoke(None)``, up to the
  node's first line) resumes its own copy of it. Workflow + ``FileCheckpointer`` beside
  LangGraph + ``SqliteSaver``.
* ``bigstate``: a 10 MB state (an incompressible 10 MB blob plus small keys) in
  which one superstep changes one small key: bytes written to the store for that
  superstep (``FileCheckpointer``: ``store.stats()["bytes"]`` read at the start of
  the node that changes the key and at the start of the next node; LangGraph
  ``SqliteSaver``: growth of the database file) vs the pickled size of the state.
"""

from __future__ import annotations

import gc
import json
import operator
import os
import pickle
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END as LG_END
from langgraph.graph import START as LG_START
from langgraph.graph import StateGraph

from pyactors import Durability, FileCheckpointer, Kind, MemoryCheckpointer, Snapshot, Workflow
from pyactors.bench._harness import Times, child_env, compare, figure, percentile, problem, summary, target, verdict
from pyactors.bench.store import semi_compressible
from pyactors.workflow import CheckpointRecord, Head

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

__all__ = ["SECTIONS", "Config", "config", "disk_bytes"]

NODES = 10
SUPERSTEPS = NODES
SIZES = {"1KB": 1024, "100KB": 100 * 1024, "1MB": 1024 * 1024, "10MB": 10 * 1024 * 1024}
POLICIES: tuple[Durability, ...] = ("process", "group", "sync")
INTERRUPT_AT = 5  # recovery: the thread stops before n5
RECOVERY_SIZE = 100 * 1024
BIG_BYTES = 10 * 2**20
BIG_SMALL_KEYS = 20

# --------------------------------------------------------------------------- the graph


def make_node(i: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Node `i`: read the blob, write `k<i>`, append to `log` (shared by both engines)."""

    def node(state: dict[str, Any]) -> dict[str, Any]:
        if not state["blob"]:
            raise ValueError("no blob in the state")
        return {f"k{i}": i, "log": [f"n{i}"]}

    node.__name__ = f"n{i}"
    return node


NodeFn = Callable[[dict[str, Any]], dict[str, Any]]
NODE_FNS = [make_node(i) for i in range(NODES)]

LGState = TypedDict(  # keys computed at import (untyped for mypy)
    "LGState",
    {"blob": bytes, "log": Annotated[list[str], operator.add], **{f"k{i}": int for i in range(NODES)}},  # type: ignore[misc]
    total=False,
)


def pyactors_workflow(fns: Sequence[NodeFn] = NODE_FNS) -> Workflow:
    wf = Workflow("bench", reducers={"log": operator.add})
    for i, fn in enumerate(fns):
        wf.add_node(f"n{i}", fn)
        if i:
            wf.add_edge(f"n{i - 1}", f"n{i}")
    wf.set_entry_point("n0")
    wf.set_finish_point(f"n{NODES - 1}")
    return wf


def _lg_add_node(g: StateGraph[Any], name: str, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Add a node to a LangGraph graph whose state schema is built at run time (untyped for mypy)."""
    g.add_node(name, fn)  # type: ignore[call-overload]


def langgraph_builder(fns: Sequence[NodeFn] = NODE_FNS) -> StateGraph[Any]:
    g: StateGraph[Any] = StateGraph(LGState)
    for i, fn in enumerate(fns):
        _lg_add_node(g, f"n{i}", fn)
        if i:
            g.add_edge(f"n{i - 1}", f"n{i}")
    g.add_edge(LG_START, "n0")
    g.add_edge(f"n{NODES - 1}", LG_END)
    return g


def make_input(size: int) -> dict[str, Any]:
    return {"blob": semi_compressible(size, seed=size), "log": []}


def final_ok(out: dict[str, Any], blob: bytes) -> bool:
    return (
        out.get("log") == [f"n{i}" for i in range(NODES)]
        and all(out.get(f"k{i}") == i for i in range(NODES))
        and out.get("blob") == blob
    )


# --------------------------------------------------------------------------- output


@dataclass
class Config:
    """Sizes of one run."""

    quick: bool
    sizes: tuple[str, ...]
    rounds: int
    warmups: int
    changes: tuple[str, ...]
    recovery_sizes: tuple[str, ...]
    recovery_runs: int
    history_steps: tuple[int, ...]
    footprint_runs: int
    big_runs: int


def _now() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class Meter:
    """Time spent inside some methods of one object, wrapped on the instance (thread-safe)."""

    def __init__(self, obj: Any, names: Sequence[str]) -> None:
        self.calls: list[tuple[str, int]] = []
        """(method, ns) of every call since the last `take`, in the order they returned."""
        for name in names:
            self._wrap(obj, name)

    def _wrap(self, obj: Any, name: str) -> None:
        orig = getattr(obj, name)
        calls = self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter_ns()
            try:
                return orig(*args, **kwargs)
            finally:
                calls.append((name, time.perf_counter_ns() - t0))  # list.append is atomic

        setattr(obj, name, timed)

    @property
    def total_ns(self) -> int:
        return sum(ns for _, ns in self.calls)

    def take(self) -> tuple[int, int]:
        """(total ns, calls) since the last take."""
        out = (self.total_ns, len(self.calls))
        self.calls.clear()
        return out


# --------------------------------------------------------------------------- checkpoint cost


@dataclass
class Arm:
    """One contender in the checkpoint comparison."""

    name: str
    run: Callable[[str, dict[str, Any]], tuple[int, int, int, dict[str, Any]]]
    """(thread, input) -> (run ns, checkpointer ns, checkpointer calls, final state)."""
    cleanup: Callable[[str], object]
    close: Callable[[], None]
    full: Times = field(default_factory=Times)
    ckpt: Times = field(default_factory=Times)
    calls: int = 0
    split: dict[str, list[int]] = field(default_factory=dict)
    """pyactors only: ns per call of the input checkpoint, the other checkpoints, the node writes."""


def pyactors_arm(name: str, ck: FileCheckpointer | MemoryCheckpointer, fns: Sequence[NodeFn] = NODE_FNS) -> Arm:
    app = pyactors_workflow(fns).compile(checkpointer=ck)
    meter = Meter(ck, ("write_checkpoint", "write_node_writes"))
    split: dict[str, list[int]] = {"input checkpoint": [], "superstep checkpoint": [], "node writes": []}

    def run(thread: str, inp: dict[str, Any]) -> tuple[int, int, int, dict[str, Any]]:
        meter.take()
        t0 = time.perf_counter_ns()
        out = app.invoke(inp, thread_id=thread)
        elapsed = time.perf_counter_ns() - t0
        first = True
        for method, ns in meter.calls:
            if method == "write_node_writes":
                split["node writes"].append(ns)
            else:
                split["input checkpoint" if first else "superstep checkpoint"].append(ns)
                first = False
        return (elapsed, *meter.take(), out)

    return Arm(name, run, ck.delete_thread, ck.close, split=split)


class NullCheckpointer(MemoryCheckpointer):
    """Keeps checkpoints only in the run's own bookkeeping: pyactors with no checkpoint cost.

    The baseline of the end-to-end method (a run's time minus this run's time), the way
    LangGraph runs without a checkpointer.
    """

    def write_checkpoint(self, thread_id: str, parent: Head | None, **checkpoint: Any) -> Head:
        values = checkpoint["values"]
        rec = CheckpointRecord(
            id="null",
            parent=None,
            step=checkpoint["step"],
            values={},
            appended={},
            completed=[],
            nodes={},
            next=list(checkpoint["next"]),
            waiting=list(checkpoint.get("waiting") or []),
            pending={},
            error=None,
            meta={},
        )
        state = {**parent.state, **values} if parent is not None else dict(values)
        return Head(
            thread_id=thread_id,
            record=rec,
            state=state,
            completed=[],
            node_states={},
            writes={},
            node_writes={},
            is_latest=True,
            chain=(),
            writes_payloads=(),
            chain_bytes=0,
            newest_seq=0,
            newest_base=None,
        )

    def snapshot(self, head: Head) -> Snapshot:
        return Snapshot(head.thread_id, "null", None, head.record.step, head.state, (), (), {}, None, {}, {})

    def write_node_writes(self, *args: Any) -> None:
        pass

    def delete_thread(self, thread_id: str) -> int:
        return 0


def langgraph_arm(
    name: str, saver: BaseCheckpointSaver[Any] | None, close: Callable[[], None], fns: Sequence[NodeFn] = NODE_FNS
) -> Arm:
    graph = langgraph_builder(fns).compile(checkpointer=saver)
    meter = Meter(saver, ("put", "put_writes")) if saver is not None else None
    durability: Literal["sync"] | None = "sync" if saver is not None else None

    def run(thread: str, inp: dict[str, Any]) -> tuple[int, int, int, dict[str, Any]]:
        if meter is not None:
            meter.take()
        cfg: Any = {"configurable": {"thread_id": thread}}
        t0 = time.perf_counter_ns()
        out = graph.invoke(inp, cfg, durability=durability)
        elapsed = time.perf_counter_ns() - t0
        ns, calls = meter.take() if meter is not None else (0, 0)
        return elapsed, ns, calls, out

    def cleanup(thread: str) -> None:
        if saver is not None:
            saver.delete_thread(thread)

    return Arm(name, run, cleanup, close)


def bench_checkpoint(cfg: Config, tmp: str) -> None:
    print(f"\n== checkpoint: {NODES}-node linear graph, per-superstep checkpoint cost and full run ==")
    print(
        "   ckpt/superstep = time inside the checkpointer's write calls in one run / 10 supersteps\n"
        "   delta/10 = (median full run - the same engine's median run with no checkpointer) / 10\n"
        "   (pyactors: _write_checkpoint + _write_node_writes; LangGraph: put + put_writes, durability='sync');\n"
        "   pyactors' calls include finding the delta from the parent; LangGraph builds its checkpoint before put.\n"
        "   full run = invoke() wall time, new thread each run. SqliteSaver commits with fsync (SQLite\n"
        "   synchronous=FULL), like FileCheckpointer 'sync'; 'process' (the default) leaves flushing to the OS.",
        flush=True,
    )
    for size_name in cfg.sizes:
        size = SIZES[size_name]
        try:
            one_checkpoint_comparison(cfg, tmp, size_name, size)
        except Exception as exc:
            problem(f"checkpoint {size_name}: {type(exc).__name__}: {exc}")
            traceback.print_exc()


def one_checkpoint_comparison(cfg: Config, tmp: str, size_name: str, size: int) -> None:
    d = tempfile.mkdtemp(prefix=f"ckpt-{size_name}-", dir=tmp)
    inp = make_input(size)
    blob = inp["blob"]
    arms: list[Arm] = []
    try:
        for policy in POLICIES:
            ck = FileCheckpointer(os.path.join(d, f"store-{policy}"), durability=policy)
            arms.append(pyactors_arm(f"pyactors File, {policy}", ck))
        arms.append(pyactors_arm("pyactors Memory", MemoryCheckpointer()))
        arms.append(pyactors_arm("pyactors no checkpointer", NullCheckpointer()))
        arms.append(langgraph_arm("LangGraph no checkpointer", None, lambda: None))
        arms.append(langgraph_arm("LangGraph InMemorySaver", InMemorySaver(), lambda: None))
        conn = sqlite3.connect(os.path.join(d, "lg.sqlite"), check_same_thread=False)
        arms.append(langgraph_arm("LangGraph SqliteSaver", SqliteSaver(conn), conn.close))
        counter = {"n": 0}

        def one(arm: Arm, timed: bool) -> None:
            counter["n"] += 1
            thread = f"t{counter['n']}"
            run_ns, ck_ns, calls, out = arm.run(thread, dict(inp))
            if not final_ok(out, blob):
                problem(f"checkpoint {size_name} {arm.name}: wrong final state (log={out.get('log')})")
            if timed:
                arm.full.ns.append(run_ns)
                arm.ckpt.ns.append(ck_ns // SUPERSTEPS)
                arm.calls = calls
            arm.cleanup(thread)

        for _ in range(cfg.warmups):  # warm-up
            for arm in arms:
                one(arm, timed=False)
        for arm in arms:
            for v in arm.split.values():
                v.clear()
        k = len(arms)
        for r in range(cfg.rounds):
            for j in range(k):
                gc.collect()
                one(arms[(r + j) % k], timed=True)
        by = {a.name: a for a in arms}
        sq = by["LangGraph SqliteSaver"].ckpt.median_ms
        mem = by["LangGraph InMemorySaver"].ckpt.median_ms
        pickled = len(pickle.dumps(inp, protocol=5))
        print(f"\n-- {size_name} blob (input state pickled: {pickled / 1024:.1f} KiB) --")
        baseline = {
            "LangGraph": by["LangGraph no checkpointer"].full.median_ms,
            "pyactors": by["pyactors no checkpointer"].full.median_ms,
        }
        print(
            f"{'arm':<26} {'runs':>4} {'calls':>5} | {'ckpt/superstep ms':>17} {'p99':>7} | "
            f"{'full run ms':>11} {'p99':>7} {'delta/10':>8} | {'Sqlite/this':>11} {'InMem/this':>10}"
        )
        for a in arms:
            has = not a.name.endswith("no checkpointer")
            c_med = a.ckpt.median_ms
            engine = a.name.split()[0]
            delta = (a.full.median_ms - baseline[engine]) / SUPERSTEPS if has else None
            cells = (
                f"{c_med:>17.3f} {a.ckpt.p99_ms:>7.3f}" if has else f"{'-':>17} {'-':>7}",
                f"{sq / c_med:>10.1f}x {mem / c_med:>9.1f}x" if has and c_med > 0 else f"{'-':>11} {'-':>10}",
                f"{delta:>8.3f}" if delta is not None else f"{'-':>8}",
            )
            print(
                f"{a.name:<26} {a.full.runs:>4} {a.calls if has else '-':>5} | {cells[0]} | "
                f"{a.full.median_ms:>11.2f} {a.full.p99_ms:>7.2f} {cells[2]} | {cells[1]}",
                flush=True,
            )
            params = {"size": size_name, "blob_bytes": size, "state_pickled_bytes": pickled}
            figure("workflow run (10 nodes)", a.name, "ms", a.full.summary(), **params)
            if has and not a.name.startswith("LangGraph"):
                for base in ("LangGraph SqliteSaver", "LangGraph InMemorySaver"):
                    compare(
                        "checkpoint cost per superstep",
                        "ms",
                        (a.name, a.ckpt.summary()),
                        (base, by[base].ckpt.summary()),
                        higher_is_better=False,
                        **params,
                    )
        for a in arms:
            if a.split:
                calls = {what: v for what, v in a.split.items() if v}  # a linear graph writes no node writes
                parts = ", ".join(
                    f"{what} {statistics.median(v) / 1e6:.3f} ms x{len(v) // max(1, a.full.runs)}"
                    for what, v in calls.items()
                )
                print(f"   {a.name}, per call (median): {parts}")
                for what, v in calls.items():
                    figure("checkpoint call", a.name, "ms", summary([x / 1e6 for x in v]), size=size_name, call=what)
        if size_name == "100KB":
            # Judged end to end (a run's time minus the same engine's run without a
            # checkpointer, per superstep): the method of the reference figures.
            def per_step(name: str) -> float:
                return (by[name].full.median_ms - baseline[name.split(maxsplit=1)[0]]) / SUPERSTEPS

            p, sq, mem = (
                per_step("pyactors File, process"),
                per_step("LangGraph SqliteSaver"),
                per_step("LangGraph InMemorySaver"),
            )
            ratio = sq / p if p > 0 else float("inf")
            ok_sq, ok_mem = ratio >= 10.0, p < mem
            wrapped = by["pyactors File, process"].ckpt.median_ms
            print(
                f"target (100 KB, FileCheckpointer default 'process', end to end): SqliteSaver {sq:.3f} ms / "
                f"pyactors {p:.3f} ms = {ratio:.1f}x, >= 10x {verdict(ok_sq)}; < InMemorySaver {mem:.3f} ms "
                f"{verdict(ok_mem)}\n   (inside the write calls: pyactors {wrapped:.3f} ms, SqliteSaver "
                f"{by['LangGraph SqliteSaver'].ckpt.median_ms:.3f} ms, InMemorySaver "
                f"{by['LangGraph InMemorySaver'].ckpt.median_ms:.3f} ms)",
                flush=True,
            )
            target(
                "checkpoint_vs_sqlite",
                "checkpoint cost per superstep at 100 KB: >= 10x lower than SqliteSaver's",
                f"{ratio:.1f}x (end to end: {p:.3f} vs {sq:.3f} ms; inside the write calls: {wrapped:.3f} vs "
                f"{by['LangGraph SqliteSaver'].ckpt.median_ms:.3f} ms; {cfg.rounds} runs)",
                ok_sq,
            )
            target(
                "checkpoint_vs_inmemory",
                "checkpoint cost per superstep at 100 KB: below InMemorySaver's",
                f"{p:.3f} vs {mem:.3f} ms end to end (inside the write calls: {wrapped:.3f} vs "
                f"{by['LangGraph InMemorySaver'].ckpt.median_ms:.3f} ms)",
                ok_mem,
            )
    finally:
        for a in arms:
            try:
                a.close()
            except Exception as exc:
                problem(f"checkpoint {size_name} {a.name}: close: {type(exc).__name__}: {exc}")
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- size of the change

CHANGES = {"100B": 100, "10KB": 10 * 1024, "100KB": 100 * 1024}


def make_change_node(i: int, value: bytes) -> NodeFn:
    """Node `i` of the change benchmark: writes `value` (its change) to `k<i>`."""

    def node(state: dict[str, Any]) -> dict[str, Any]:
        return {f"k{i}": value, "log": [f"n{i}"]}

    node.__name__ = f"n{i}"
    return node


def bench_change(cfg: Config, tmp: str) -> None:
    blob_name = cfg.sizes[-1]
    print(
        f"\n== change: per-superstep checkpoint cost against the size of each node's change "
        f"({blob_name} blob unchanged in the state) =="
    )
    print(f"{'change':<7} {'arm':<26} {'runs':>4} | {'ckpt/superstep ms':>17} {'p99':>7} | {'this/pyactors':>13}")
    inp = make_input(SIZES[blob_name])
    for change_name in cfg.changes:
        one_change(cfg, tmp, change_name, inp, blob_name)


def one_change(cfg: Config, tmp: str, change_name: str, inp: dict[str, Any], blob_name: str) -> None:
    d = tempfile.mkdtemp(prefix=f"change-{change_name}-", dir=tmp)
    fns = [make_change_node(i, semi_compressible(CHANGES[change_name], seed=50 + i)) for i in range(NODES)]
    conn = sqlite3.connect(os.path.join(d, "lg.sqlite"), check_same_thread=False)
    arms = [
        pyactors_arm("pyactors File, process", FileCheckpointer(os.path.join(d, "store")), fns),
        langgraph_arm("LangGraph InMemorySaver", InMemorySaver(), lambda: None, fns),
        langgraph_arm("LangGraph SqliteSaver", SqliteSaver(conn), conn.close, fns),
    ]
    counter = {"n": 0}

    def one(arm: Arm, timed: bool) -> None:
        counter["n"] += 1
        thread = f"t{counter['n']}"
        _, ck_ns, _, out = arm.run(thread, dict(inp))
        if out.get("log") != [f"n{i}" for i in range(NODES)]:
            problem(f"change {change_name} {arm.name}: wrong final state")
        if timed:
            arm.ckpt.ns.append(ck_ns // SUPERSTEPS)
        arm.cleanup(thread)

    try:
        for _ in range(cfg.warmups):
            for arm in arms:
                one(arm, timed=False)
        for r in range(cfg.rounds):
            for j in range(len(arms)):
                gc.collect()
                one(arms[(r + j) % len(arms)], timed=True)
        pa = arms[0]
        for a in arms:
            print(
                f"{change_name:<7} {a.name:<26} {a.ckpt.runs:>4} | {a.ckpt.median_ms:>17.3f} "
                f"{a.ckpt.p99_ms:>7.3f} | "
                f"{a.ckpt.median_ms / pa.ckpt.median_ms:>12.1f}x",
                flush=True,
            )
        for base in arms[1:]:
            compare(
                "checkpoint cost per superstep, by size of the change",
                "ms",
                (pa.name, pa.ckpt.summary()),
                (base.name, base.ckpt.summary()),
                higher_is_better=False,
                change=change_name,
                change_bytes=CHANGES[change_name],
                blob=blob_name,
            )
    finally:
        for a in arms:
            a.close()
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- recovery

_CHILD_COMMON = """
def _node(i):
    def node(state):
        _ran.append(i)
        if "node" not in _marks:
            _marks["node"] = _now()
        if not state["blob"]:
            raise ValueError("no blob")
        return {f"k{i}": i, "log": [f"n{i}"]}
    node.__name__ = f"n{i}"
    return node

def _report(final):
    import json
    ok = (
        final.get("log") == [f"n{i}" for i in range(NODES)]
        and all(final.get(f"k{i}") == i for i in range(NODES))
        and len(final.get("blob", b"")) == BLOB
    )
    print(json.dumps({**_marks, "ran": _ran, "ok": ok}), flush=True)
"""

CHILD_PYACTORS = (
    """import time
_now = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # noqa: E731
_marks = {"first": _now()}
import operator
import sys

from pyactors import FileCheckpointer, Workflow

_marks["imported"] = _now()
NODES, BLOB = int(sys.argv[3]), int(sys.argv[4])
_ran = []
"""
    + _CHILD_COMMON
    + """
ck = FileCheckpointer(sys.argv[1])
_marks["opened"] = _now()
wf = Workflow("bench", reducers={"log": operator.add})
for i in range(NODES):
    wf.add_node(f"n{i}", _node(i))
    if i:
        wf.add_edge(f"n{i - 1}", f"n{i}")
wf.set_entry_point("n0")
wf.set_finish_point(f"n{NODES - 1}")
app = wf.compile(checkpointer=ck)
_marks["compiled"] = _now()
_load_head = ck.load_head

def _timed_load_head(thread_id, checkpoint_id=None):
    head = _load_head(thread_id, checkpoint_id)
    _marks.setdefault("restored", _now())
    return head

ck.load_head = _timed_load_head
final = app.resume(sys.argv[2])
_marks["done"] = _now()
_marks["own_recovery_ms"] = app.last_recovery_ms
ck.close()
_report(final)
"""
)

CHILD_LANGGRAPH = (
    """import time
_now = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # noqa: E731
_marks = {"first": _now()}
import operator
import sys
from typing import Annotated, TypedDict

SAVER = sys.argv[5] if len(sys.argv) > 5 else "sqlite"
if SAVER == "segment":
    from pyactors.langgraph import SegmentSaver
else:
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

_marks["imported"] = _now()
NODES, BLOB = int(sys.argv[3]), int(sys.argv[4])
_ran = []
"""
    + _CHILD_COMMON
    + """
if SAVER == "segment":
    saver = SegmentSaver(sys.argv[1])
    close = saver.close
else:
    conn = sqlite3.connect(sys.argv[1], check_same_thread=False)
    saver = SqliteSaver(conn)
    close = conn.close
_marks["opened"] = _now()
State = TypedDict(
    "State",
    {"blob": bytes, "log": Annotated[list[str], operator.add], **{f"k{i}": int for i in range(NODES)}},
    total=False,
)
g = StateGraph(State)
for i in range(NODES):
    g.add_node(f"n{i}", _node(i))
    if i:
        g.add_edge(f"n{i - 1}", f"n{i}")
g.add_edge(START, "n0")
g.add_edge(f"n{NODES - 1}", END)
graph = g.compile(checkpointer=saver)
_marks["compiled"] = _now()
_get_tuple = saver.get_tuple

def _timed_get_tuple(config):
    _marks.setdefault("restoring", _now())
    tup = _get_tuple(config)
    _marks.setdefault("restored", _now())
    return tup

saver.get_tuple = _timed_get_tuple
final = graph.invoke(None, {"configurable": {"thread_id": sys.argv[2]}}, durability="sync")
_marks["done"] = _now()
close()
_report(final)
"""
)
"""The LangGraph child resuming a thread: ``PATH THREAD NODES BLOB [sqlite|segment]``, the last the saver to open."""

CHILD_KILLED = """import os
import signal
import sqlite3
import sys

from pyactors import FileCheckpointer
from pyactors.bench import workflow as w

engine, path, thread, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def killed(state):
    os.kill(os.getpid(), signal.SIGKILL)


fns = list(w.NODE_FNS)
fns[w.INTERRUPT_AT] = killed
inp = w.make_input(size)
if engine == "pyactors":
    ck = FileCheckpointer(path)
    w.pyactors_workflow(fns).compile(checkpointer=ck).invoke(inp, thread_id=thread)
else:
    conn = sqlite3.connect(path, check_same_thread=False)
    graph = w.langgraph_builder(fns).compile(checkpointer=w.SqliteSaver(conn))
    graph.invoke(inp, {"configurable": {"thread_id": thread}}, durability="sync")
sys.exit("not killed")
"""
"""A child that runs the 10-node workflow and is SIGKILLed as node `INTERRUPT_AT` starts."""

PHASES = (  # (label, from mark, to mark)
    ("start", "spawn", "first"),
    ("imports", "first", "imported"),
    ("open", "imported", "opened"),
    ("compile", "opened", "compiled"),
    ("restore", "compiled", "restored"),
    ("to node", "restored", "node"),
)


def bench_recovery(cfg: Config, tmp: str) -> None:
    for size_name in cfg.recovery_sizes:
        one_recovery(cfg, tmp, size_name, SIZES[size_name])


def one_recovery(cfg: Config, tmp: str, size_name: str, size: int) -> None:
    print(f"\n== recovery: a fresh process resumes the {size_name} thread killed (SIGKILL) in n{INTERRUPT_AT} ==")
    d = tempfile.mkdtemp(prefix="recovery-", dir=tmp)
    try:
        inp = make_input(size)
        thread = "killed"
        # The killed threads, made once (a child SIGKILLed in n5) and copied for every resuming child.
        pa_template = os.path.join(d, "pyactors-template")
        lg_template = os.path.join(d, "langgraph-template.sqlite")
        kill_script = os.path.join(d, "child_killed.py")
        with open(kill_script, "w") as f:
            f.write(CHILD_KILLED)
        for engine, template in (("pyactors", pa_template), ("langgraph", lg_template)):
            proc = subprocess.run(
                [sys.executable, kill_script, engine, template, thread, str(size)],
                capture_output=True,
                text=True,
                env=child_env(tmp),
                check=False,
            )
            if proc.returncode != -signal.SIGKILL:
                problem(f"recovery: the {engine} child to kill exited {proc.returncode}: {proc.stderr[-600:]}")
                return

        scripts = {}
        for name, src in (("pyactors", CHILD_PYACTORS), ("langgraph", CHILD_LANGGRAPH)):
            scripts[name] = os.path.join(d, f"child_{name}.py")
            with open(scripts[name], "w") as f:
                f.write(src)
        env = child_env(tmp)
        counter = {"n": 0}
        samples: dict[str, list[dict[str, Any]]] = {"pyactors": [], "langgraph": []}

        def child(name: str, timed: bool) -> None:
            counter["n"] += 1
            run_dir = os.path.join(d, f"run-{counter['n']}")
            os.mkdir(run_dir)
            if name == "pyactors":
                dest = os.path.join(run_dir, "store")
                shutil.copytree(pa_template, dest)
            else:
                dest = os.path.join(run_dir, "lg.sqlite")
                for ext in ("", "-wal", "-shm"):  # SqliteSaver uses WAL: a killed writer leaves its commits there
                    if os.path.exists(lg_template + ext):
                        shutil.copyfile(lg_template + ext, dest + ext)
            argv = [sys.executable, scripts[name], dest, thread, str(NODES), str(len(inp["blob"]))]
            spawn = _now()
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=run_dir, check=False)
            exited = _now()
            shutil.rmtree(run_dir, ignore_errors=True)
            if proc.returncode != 0:
                problem(f"recovery {name}: child exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
                return
            marks = json.loads(proc.stdout.strip().splitlines()[-1])
            if not marks["ok"] or marks["ran"] != list(range(INTERRUPT_AT, NODES)):
                problem(f"recovery {name}: final state ok={marks['ok']}, nodes run {marks['ran']}")
            if timed:
                samples[name].append({**marks, "spawn": spawn, "exited": exited})

        # Warm-ups, untimed: the first fills the bytecode cache, the next warm the page cache.
        for _ in range(cfg.warmups):
            child("pyactors", timed=False)
            child("langgraph", timed=False)
        for r in range(cfg.recovery_runs):
            gc.collect()
            order = ("pyactors", "langgraph") if r % 2 == 0 else ("langgraph", "pyactors")
            for name in order:
                child(name, timed=True)

        def span(s: dict[str, Any], a: str, b: str) -> float:
            return float(s[b] - s[a]) / 1e6

        print("   phases: median ms over runs; bytecode cache on; each child resumes its own copy of the thread")
        head = " ".join(f"{label:>8}" for label, _, _ in PHASES)
        print(
            f"{'engine':<26} {'runs':>4} | {head} | {'spawn->node':>11} {'p99':>7} | {'open->node':>10} {'p99':>6} "
            f"| {'spawn->finish':>13}"
        )
        rows = (("pyactors FileCheckpointer", "pyactors"), ("LangGraph SqliteSaver", "langgraph"))
        stats: dict[str, dict[str, Any]] = {}
        for label, name in rows:
            ss = samples[name]
            if not ss:
                continue
            phases = {p: statistics.median(span(s, a, b) for s in ss) for p, a, b in PHASES}
            to_node = [span(s, "spawn", "node") for s in ss]
            open_node = [span(s, "imported", "node") for s in ss]
            finish = [span(s, "spawn", "done") for s in ss]
            cells = " ".join(f"{phases[p]:>8.2f}" for p, _, _ in PHASES)
            print(
                f"{label:<26} {len(ss):>4} | {cells} | {statistics.median(to_node):>11.1f} "
                f"{percentile(to_node, 99):>7.1f} | {statistics.median(open_node):>10.2f} "
                f"{percentile(open_node, 99):>6.2f} | {statistics.median(finish):>13.1f}",
                flush=True,
            )
            params = {"size": size_name, "blob_bytes": size}
            for p, a, b in PHASES:
                figure("workflow recovery phase", label, "ms", summary([span(s, a, b) for s in ss]), phase=p, **params)
            stats[name] = {
                "phases": phases,
                "spawn": summary(to_node),
                "open": summary(open_node),
                "finish": summary(finish),
            }
            if name == "pyactors":
                own = [s["own_recovery_ms"] for s in ss if s.get("own_recovery_ms") is not None]
                if own:
                    figure("workflow recovery, resume call -> next node", label, "ms", summary(own), **params)
                    print(f"{'':<26} {'':>4}   app.last_recovery_ms (resume call -> node) {statistics.median(own):.2f}")
        if "pyactors" in stats and "langgraph" in stats:
            params = {"size": size_name, "blob_bytes": size}
            pa, lg = stats["pyactors"], stats["langgraph"]
            for what, key in (
                ("spawn -> next node running", "spawn"),
                ("open -> next node running", "open"),
                ("spawn -> finished", "finish"),
            ):
                compare(
                    f"workflow recovery, {what}",
                    "ms",
                    ("pyactors FileCheckpointer", pa[key]),
                    ("LangGraph SqliteSaver", lg[key]),
                    higher_is_better=False,
                    **params,
                )
            if size >= SIZES["1MB"]:
                pa_open, lg_open = pa["open"]["median"], lg["open"]["median"]
                target(
                    f"workflow_open_to_node_{size_name}",
                    f"10-node workflow, {size_name} state: open -> next node running at or below "
                    "LangGraph SqliteSaver's",
                    f"{pa_open:.2f} ms (p99 {pa['open']['p99']:.2f}) vs {lg_open:.2f} ms "
                    f"({pa_open / lg_open:.2f}x; {pa['open']['runs']} runs)",
                    pa_open <= lg_open,
                )
            if size == RECOVERY_SIZE:
                to_node, open_node = pa["spawn"]["median"], pa["open"]["median"]
                lg_node = lg["spawn"]["median"]
                runs = pa["spawn"]["runs"]
                target(
                    "workflow_spawn_to_node",
                    "10-node workflow, 100 KB state, fresh process: spawn -> next node running < 100 ms",
                    f"{to_node:.1f} ms (p99 {pa['spawn']['p99']:.1f}; LangGraph SqliteSaver {lg_node:.0f} ms; "
                    f"{runs} runs)",
                    to_node < 100.0,
                    note="phases (median ms): "
                    + ", ".join(f"{p} {ms:.1f}" for p, ms in pa["phases"].items() if p in ("start", "imports", "open")),
                )
                target(
                    "workflow_open_to_node",
                    "10-node workflow, 100 KB state: open -> next node running < 10 ms",
                    f"{open_node:.2f} ms (LangGraph SqliteSaver {lg['open']['median']:.2f} ms; {runs} runs)",
                    open_node < 10.0,
                )
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- history

HISTORY_PAD = 100 * 1024
HISTORY_PAGE = 10

CHILD_HISTORY = """import time
_now = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # noqa: E731
_marks = {"first": _now()}
import json
import operator
import os
import signal
import sys

ENGINE, PATH, MODE, N, PAGE = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if ENGINE == "pyactors":
    from pyactors import END, FileCheckpointer, Workflow
else:
    import sqlite3
    from typing import Annotated, TypedDict

    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    from pyactors.langgraph import SegmentSaver
_marks["imported"] = _now()


def tick(state):
    if MODE == "build" and state["n"] == N:
        os.kill(os.getpid(), signal.SIGKILL)  # the thread stops after N supersteps, tick next
    _marks.setdefault("node", _now())
    return {"n": state["n"] + 1, "log": [state["n"]]}


def route(state):
    return "tick" if state["n"] <= N else END  # a resume runs one superstep


thread = "t"
if ENGINE == "pyactors":
    ck = FileCheckpointer(PATH)
    close = ck.close
    _marks["opened"] = _now()
    wf = Workflow("history", reducers={"log": operator.add})
    wf.add_node("tick", tick)
    wf.add_conditional_edges("tick", route)
    wf.set_entry_point("tick")
    app = wf.compile(checkpointer=ck)
    get_state = lambda: app.get_state(thread).state  # noqa: E731
    page = lambda: [s.step for s in app.get_history(thread, limit=PAGE)]  # noqa: E731
    resume = lambda: app.resume(thread, recursion_limit=N + 100)  # noqa: E731
    build = lambda inp: app.invoke(inp, thread_id=thread, recursion_limit=N + 100)  # noqa: E731
else:
    if ENGINE == "segmentsaver":
        saver = SegmentSaver(PATH, durability="sync")
        close = saver.close
    else:
        conn = sqlite3.connect(PATH, check_same_thread=False)
        close = conn.close
        saver = SqliteSaver(conn)
    _marks["opened"] = _now()
    State = TypedDict("State", {"n": int, "log": Annotated[list, operator.add], "pad": str})
    g = StateGraph(State)
    g.add_node("tick", tick)
    g.add_edge(START, "tick")
    g.add_conditional_edges("tick", route)
    graph = g.compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": thread}, "recursion_limit": N + 100}
    get_state = lambda: graph.get_state(cfg).values  # noqa: E731
    page = lambda: [s.metadata["step"] for s in graph.get_state_history(cfg, limit=PAGE)]  # noqa: E731
    resume = lambda: graph.invoke(None, cfg, durability="sync")  # noqa: E731
    build = lambda inp: graph.invoke(inp, cfg, durability="sync")  # noqa: E731
_marks["compiled"] = _now()
if MODE == "build":
    build({"n": 0, "log": [], "pad": sys.stdin.read()})
    sys.exit("not killed")
if MODE == "state":
    state = get_state()
    _marks["restored"] = _now()
    t0 = _now()
    steps = page()
    _marks["page_ns"] = _now() - t0
    ok = state["n"] == N and state["log"] == list(range(N)) and len(state["pad"]) == int(sys.argv[6])
    ok = ok and len(steps) == PAGE and steps == sorted(steps, reverse=True) and steps[0] >= N
else:
    final = resume()
    ok = final["n"] == N + 1 and final["log"] == list(range(N + 1))
close()
print(json.dumps({**_marks, "ok": ok}), flush=True)
"""
"""A child of the history section: ``ENGINE PATH build|state|resume N PAGE PAD_LEN`` (the pad on stdin to build)."""

HISTORY_ENGINES = (("pyactors", "pyactors Workflow + FileCheckpointer"), ("langgraph", "LangGraph SqliteSaver"))
"""The workflow.history section: (subject, baseline) as (engine, label)."""
SAVER_HISTORY_ENGINES = (("segmentsaver", "LangGraph + SegmentSaver"), ("langgraph", "LangGraph SqliteSaver"))
"""The langgraph.history section (`pyactors.bench.langgraph`): the same graph on each saver."""
_HISTORY_SUBJECTS = {
    "pyactors": ("workflow", "Workflow + FileCheckpointer"),
    "segmentsaver": ("langgraph", "SegmentSaver"),
}
"""Subject engine -> (target name prefix, what the targets call it)."""
HistoryStats = dict[str, dict[str, dict[str, Any]]]
"""Engine -> measure (open_state, open_node, page) -> `summary`."""


def bench_history(cfg: Config, tmp: str, engines: tuple[tuple[str, str], ...] = HISTORY_ENGINES) -> None:
    """Open a thread of N supersteps in fresh processes, for the subject engine and its baseline side by side."""
    print("\n== history: fresh processes open a thread of N supersteps (100 KB value, a list +1 item a step) ==")
    d = tempfile.mkdtemp(prefix="history-", dir=tmp)
    script = os.path.join(d, "child_history.py")
    with open(script, "w") as f:
        f.write(CHILD_HISTORY)
    pad = random.Random(15).randbytes(HISTORY_PAD // 2).hex()
    results: dict[int, HistoryStats] = {}
    try:
        print(
            f"{'N':>6} {'engine':<38} {'runs':>4} | {'open->state':>11} {'p99':>7} | {'open->node':>10} {'p99':>7} "
            f"| {'history(10)':>11} {'p99':>7} | {'MB on disk':>10}"
        )
        for n in cfg.history_steps:
            results[n] = one_history(cfg, d, script, child_env(tmp), n, pad, engines)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if len(results) < 2 or any(len(r) < len(engines) for r in results.values()):
        return
    (subject, _), (baseline, _) = engines
    prefix, called = _HISTORY_SUBJECTS[subject]
    first, last = min(results), max(results)
    short, long = results[first][subject], results[last][subject]
    grow = long["open_node"]["median"] / short["open_node"]["median"]
    target(
        f"{prefix}_history_flat",
        f"{called}: open -> next node running at {last:,} supersteps <= 1.5x the figure at {first}",
        f"{long['open_node']['median']:.2f} ms vs {short['open_node']['median']:.2f} ms ({grow:.2f}x)",
        grow <= 1.5,
    )
    ratios = {k: r[subject]["open_state"]["median"] / r[baseline]["open_state"]["median"] for k, r in results.items()}
    target(
        f"{prefix}_history_vs_sqlite",
        f"{called}: open -> state restored at or below LangGraph SqliteSaver's at every N",
        ", ".join(f"N={k:,} {v:.2f}x" for k, v in ratios.items()),
        max(ratios.values()) <= 1.0,
    )
    page = long["page"]["median"] / short["page"]["median"]
    target(
        f"{prefix}_history_page",
        f"{called}: history (limit={HISTORY_PAGE}) at {last:,} supersteps within 2x of its cost at {first}",
        f"{long['page']['median']:.2f} ms vs {short['page']['median']:.2f} ms ({page:.2f}x)",
        page <= 2.0,
    )


def _remove(path: str) -> None:
    """Remove a store directory or an SQLite file with its journal files."""
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    for p in (path, path + "-wal", path + "-shm"):
        if os.path.isfile(p):
            os.remove(p)


def one_history(
    cfg: Config,
    d: str,
    script: str,
    env: dict[str, str],
    n: int,
    pad: str,
    engines: tuple[tuple[str, str], ...] = HISTORY_ENGINES,
) -> HistoryStats:
    """One N: build each engine's thread, then time fresh processes on it."""
    names = {"pyactors": f"pyactors-{n}", "segmentsaver": f"segmentsaver-{n}", "langgraph": f"lg-{n}.sqlite"}
    templates = {engine: os.path.join(d, names[engine]) for engine, _ in engines}
    tail = [str(HISTORY_PAGE), str(len(pad))]
    for engine, path in templates.items():
        proc = subprocess.run(
            [sys.executable, script, engine, path, "build", str(n), *tail],
            input=pad,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode != -signal.SIGKILL:
            problem(
                f"history: the {engine} child building {n} supersteps exited {proc.returncode}: {proc.stderr[-600:]}"
            )
            return {}
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {e: {"state": [], "resume": []} for e, _ in engines}

    def child(engine: str, mode: str, timed: bool) -> None:
        path = templates[engine]
        if mode == "resume":  # a resume writes: it gets its own copy
            path = os.path.join(d, "resumed" + os.path.splitext(path)[1])
            if os.path.isdir(templates[engine]):
                shutil.copytree(templates[engine], path)
            else:
                for ext in ("", "-wal", "-shm"):  # a killed writer leaves its commits in the WAL
                    if os.path.exists(templates[engine] + ext):
                        shutil.copyfile(templates[engine] + ext, path + ext)
        argv = [sys.executable, script, engine, path, mode, str(n), *tail]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=d, check=False)
        if mode == "resume":
            _remove(path)
        if proc.returncode != 0:
            problem(f"history {engine} {mode} at {n}: child exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
            return
        marks = json.loads(proc.stdout.strip().splitlines()[-1])
        if not marks["ok"]:
            problem(f"history {engine} {mode} at {n}: wrong state or history")
        if timed:
            samples[engine][mode].append(marks)

    # Untimed: the first opening settles what the killed writer left, as a first resume
    # would (later copies start from there); the warm-ups fill the bytecode and page caches.
    for _ in range(max(1, cfg.warmups)):
        for engine, _ in engines:
            child(engine, "state", timed=False)
            child(engine, "resume", timed=False)
    for r in range(cfg.recovery_runs):
        for engine, _ in engines[:: 1 if r % 2 == 0 else -1]:
            gc.collect()
            child(engine, "state", timed=True)
            child(engine, "resume", timed=True)

    out: HistoryStats = {}
    for engine, label in engines:
        st, rs = samples[engine]["state"], samples[engine]["resume"]
        if not st or not rs:
            continue
        out[engine] = {
            "open_state": summary([(s["restored"] - s["imported"]) / 1e6 for s in st]),
            "open_node": summary([(s["node"] - s["imported"]) / 1e6 for s in rs]),
            "page": summary([s["page_ns"] / 1e6 for s in st]),
        }
        cells = " | ".join(f"{out[engine][k]['median']:>10.2f} {out[engine][k]['p99']:>7.2f}" for k in out[engine])
        print(f"{n:>6} {label:<38} {len(st):>4} | {cells} | {disk_bytes(templates[engine]) / 2**20:>10.1f}", flush=True)
    if len(out) == len(engines):
        (subject, pa_label), (baseline, lg_label) = engines
        prefix = _HISTORY_SUBJECTS[subject][0]
        for what, key in (
            ("open -> state restored", "open_state"),
            ("open -> next node running", "open_node"),
            (f"history page (limit={HISTORY_PAGE})", "page"),
        ):
            compare(
                f"{prefix} history, {what}",
                "ms",
                (pa_label, out[subject][key]),
                (lg_label, out[baseline][key]),
                higher_is_better=False,
                supersteps=n,
            )
    for path in templates.values():
        _remove(path)
    return out


# --------------------------------------------------------------------------- big state


def big_input() -> dict[str, Any]:
    rng = random.Random(10)
    state: dict[str, Any] = {"blob": rng.randbytes(BIG_BYTES), "counter": 0}
    for j in range(BIG_SMALL_KEYS):
        state[f"meta{j}"] = f"value {j} " * 4
    return state


BigState = TypedDict(  # keys computed at import (untyped for mypy)
    "BigState",
    {"blob": bytes, "counter": int, **{f"meta{j}": str for j in range(BIG_SMALL_KEYS)}},  # type: ignore[misc]
    total=False,
)


def big_nodes(probe: Callable[[str], None]) -> list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]]:
    """n0 and n1 change `counter`; each node first calls `probe(name)`. n1's superstep is measured."""

    def n0(state: dict[str, Any]) -> dict[str, Any]:
        probe("n0")
        return {"counter": state["counter"] + 1}

    def n1(state: dict[str, Any]) -> dict[str, Any]:
        probe("n1")
        return {"counter": state["counter"] + 1}

    def n2(state: dict[str, Any]) -> dict[str, Any]:
        probe("n2")
        return {}

    return [("n0", n0), ("n1", n1), ("n2", n2)]


def bench_bigstate(cfg: Config, tmp: str) -> None:
    print(f"\n== bigstate: checkpoint of a superstep that changes one small key of a {BIG_BYTES >> 20} MiB state ==")
    d = tempfile.mkdtemp(prefix="big-", dir=tmp)
    try:
        inp = big_input()
        pickled = len(pickle.dumps(inp, protocol=5))
        rows: dict[str, dict[str, list[float]]] = {
            "pyactors FileCheckpointer": {"bytes": [], "payload": [], "ms": []},
            "LangGraph SqliteSaver": {"bytes": [], "payload": [], "ms": []},
        }
        for r in range(cfg.big_runs):
            order = (big_pyactors, big_langgraph) if r % 2 == 0 else (big_langgraph, big_pyactors)
            for fn in order:
                gc.collect()
                fn(d, r, inp, rows)
        print(
            f"   state: {BIG_BYTES >> 20} MiB random bytes + {BIG_SMALL_KEYS} small keys, "
            f"pickled {pickled / 2**20:.2f} MiB; the superstep of n1 sets counter (an int).\n"
            f"   bytes written = store/file growth between the starts of n1 and n2 (that superstep's writes and "
            f"checkpoint);\n   payload = serialised bytes handed to the store (pyactors only); ms = time in the "
            f"checkpointer's write calls"
        )
        print(
            f"{'engine':<26} {'runs':>4} | {'bytes written':>13} {'% of state':>10} | {'payload B':>9} | "
            f"{'ckpt ms':>8}  target"
        )
        for name, v in rows.items():
            if not v["bytes"]:
                continue
            written = statistics.median(v["bytes"])
            share = written / pickled * 100
            is_pa = name.startswith("pyactors")
            ok = share < 1.0 if is_pa else None
            tgt = f"(issue 4: < 1% {verdict(ok)})" if is_pa else ""
            payload = f"{statistics.median(v['payload']):>9.0f}" if v["payload"] else f"{'-':>9}"
            print(
                f"{name:<26} {len(v['bytes']):>4} | {written:>13,.0f} {share:>9.4f}% | {payload} | "
                f"{statistics.median(v['ms']):>8.2f}  {tgt}",
                flush=True,
            )
            params = {"state_pickled_bytes": pickled}
            figure("10 MiB state, one small key changes: bytes written", name, "B", summary(v["bytes"]), **params)
            figure("10 MiB state, one small key changes: checkpoint ms", name, "ms", summary(v["ms"]), **params)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def big_pyactors(d: str, r: int, inp: dict[str, Any], rows: dict[str, dict[str, list[float]]]) -> None:
    path = os.path.join(d, f"pyactors-{r}")
    with FileCheckpointer(path) as ck:
        marks: dict[str, tuple[int, int, int]] = {}
        appended: list[int] = []
        append = ck.store.append

        def counted_append(stream: str, payload: bytes, kind: int = Kind.MESSAGE, *, compress: bool = True) -> int:
            appended.append(len(payload))
            return append(stream, payload, kind, compress=compress)

        ck.store.append = counted_append  # type: ignore[method-assign]
        meter = Meter(ck, ("write_checkpoint", "write_node_writes"))

        def probe(node: str) -> None:
            marks[node] = (ck.store.stats()["bytes"], sum(appended), meter.total_ns)

        wf = Workflow("big")
        nodes = big_nodes(probe)
        for name, fn in nodes:
            wf.add_node(name, fn)
        wf.add_edge("n0", "n1")
        wf.add_edge("n1", "n2")
        wf.set_entry_point("n0")
        wf.set_finish_point("n2")
        out = wf.compile(checkpointer=ck).invoke(dict(inp), thread_id="big")
        if out["counter"] != 2 or out["blob"] != inp["blob"]:
            problem(f"bigstate pyactors: wrong final state (counter={out['counter']})")
        row = rows["pyactors FileCheckpointer"]
        row["bytes"].append(marks["n2"][0] - marks["n1"][0])
        row["payload"].append(marks["n2"][1] - marks["n1"][1])
        row["ms"].append((marks["n2"][2] - marks["n1"][2]) / 1e6)
    shutil.rmtree(path, ignore_errors=True)


def big_langgraph(d: str, r: int, inp: dict[str, Any], rows: dict[str, dict[str, list[float]]]) -> None:
    path = os.path.join(d, f"lg-{r}.sqlite")
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        meter = Meter(saver, ("put", "put_writes"))
        marks: dict[str, tuple[int, int]] = {}

        def probe(node: str) -> None:
            marks[node] = (os.path.getsize(path), meter.total_ns)

        g: StateGraph[Any] = StateGraph(BigState)
        for name, fn in big_nodes(probe):
            _lg_add_node(g, name, fn)
        g.add_edge(LG_START, "n0")
        g.add_edge("n0", "n1")
        g.add_edge("n1", "n2")
        g.add_edge("n2", LG_END)
        cfg: Any = {"configurable": {"thread_id": "big"}}
        out = g.compile(checkpointer=saver).invoke(dict(inp), cfg, durability="sync")
        if out["counter"] != 2:
            problem(f"bigstate LangGraph: wrong final state (counter={out['counter']})")
        row = rows["LangGraph SqliteSaver"]
        row["bytes"].append(marks["n2"][0] - marks["n1"][0])
        row["ms"].append((marks["n2"][1] - marks["n1"][1]) / 1e6)
    finally:
        conn.close()
        os.unlink(path)


# --------------------------------------------------------------------------- disk footprint


def disk_bytes(path: str) -> int:
    """Bytes allocated on disk under `path` (a file, or every file below a directory)."""
    if os.path.isfile(path):
        return os.stat(path).st_blocks * 512
    return sum(os.stat(os.path.join(root, f)).st_blocks * 512 for root, _, files in os.walk(path) for f in files)


GROW_BYTES = 10 * 1024
"""Growing workload: each node appends this many semi-compressible bytes to the state's ``items``."""


def _grow_node(i: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def node(state: dict[str, Any]) -> dict[str, Any]:
        return {"items": [semi_compressible(GROW_BYTES, seed=i)], "log": [f"n{i}"]}

    node.__name__ = f"n{i}"
    return node


class GrowState(TypedDict, total=False):
    items: Annotated[list[bytes], operator.add]
    log: Annotated[list[str], operator.add]


def _footprint_pair(d: str, name: str, inp: dict[str, Any], grow: bool) -> tuple[int, int]:
    """Run the workload once on each engine, on fresh files; (pyactors bytes, SqliteSaver bytes) on disk."""
    fns = [_grow_node(i) for i in range(NODES)] if grow else NODE_FNS
    pa_path = os.path.join(d, f"{name}-pyactors")
    wf = Workflow("footprint", reducers={"log": operator.add, "items": operator.add})
    g: StateGraph[Any] = StateGraph(GrowState if grow else LGState)
    for i, fn in enumerate(fns):
        wf.add_node(f"n{i}", fn)
        _lg_add_node(g, f"n{i}", fn)
        if i:
            wf.add_edge(f"n{i - 1}", f"n{i}")
            g.add_edge(f"n{i - 1}", f"n{i}")
    wf.set_entry_point("n0")
    wf.set_finish_point(f"n{NODES - 1}")
    g.add_edge(LG_START, "n0")
    g.add_edge(f"n{NODES - 1}", LG_END)
    with FileCheckpointer(pa_path) as ck:
        out = wf.compile(checkpointer=ck).invoke(dict(inp), thread_id="t")
    lg_path = os.path.join(d, f"{name}-langgraph.sqlite")
    conn = sqlite3.connect(lg_path, check_same_thread=False)
    try:
        lg_out = g.compile(checkpointer=SqliteSaver(conn)).invoke(
            dict(inp), {"configurable": {"thread_id": "t"}}, durability="sync"
        )
    finally:
        conn.close()
    want = [f"n{i}" for i in range(NODES)]
    if out.get("log") != want or lg_out.get("log") != want:
        problem(f"footprint {name}: wrong final state")
    sizes = (
        disk_bytes(pa_path),
        disk_bytes(lg_path)
        + sum(disk_bytes(lg_path + ext) for ext in ("-wal", "-journal") if os.path.exists(lg_path + ext)),
    )
    shutil.rmtree(pa_path, ignore_errors=True)
    os.unlink(lg_path)
    return sizes


def bench_footprint(cfg: Config, tmp: str) -> None:
    print(f"\n== footprint: bytes on disk per checkpoint (one run of the {NODES}-node graph, fresh files) ==")
    print(
        "   bytes on disk = allocated blocks of every file after close / 10 supersteps; compression = the pickled\n"
        "   state of every superstep summed / bytes on disk. 'growing': each node appends "
        f"{GROW_BYTES // 1024} KiB to a list."
    )
    d = tempfile.mkdtemp(prefix="footprint-", dir=tmp)
    try:
        workloads: list[tuple[str, dict[str, Any], bool]] = [
            (size_name, make_input(SIZES[size_name]), False) for size_name in cfg.sizes
        ]
        workloads.append(("growing", {"items": [], "log": []}, True))
        print(
            f"{'workload':<10} {'runs':>4} | {'pyactors B/ckpt':>15} {'compr':>6} | {'Sqlite B/ckpt':>13} "
            f"{'compr':>6} | {'Sqlite/pyactors':>15}"
        )
        for name, inp, grow in workloads:
            if grow:
                raw = sum(
                    len(
                        pickle.dumps(
                            {"items": [semi_compressible(GROW_BYTES, seed=i) for i in range(k + 1)]}, protocol=5
                        )
                    )
                    for k in range(NODES)
                )
            else:
                raw = len(pickle.dumps(inp, protocol=5)) * NODES
            pa: list[float] = []
            lg: list[float] = []
            for r in range(cfg.footprint_runs):
                gc.collect()
                a, b = _footprint_pair(d, f"{name}-{r}", inp, grow)
                pa.append(a / SUPERSTEPS)
                lg.append(b / SUPERSTEPS)
            ratio = compare(
                "disk bytes per checkpoint",
                "B",
                ("pyactors FileCheckpointer", summary(pa)),
                ("LangGraph SqliteSaver", summary(lg)),
                higher_is_better=False,
                workload=name,
                pickled_state_bytes_all_supersteps=raw,
            )
            for engine, per_ckpt in (("pyactors FileCheckpointer", pa), ("LangGraph SqliteSaver", lg)):
                figure(
                    "compression (pickled state / bytes on disk)",
                    engine,
                    "x",
                    summary([raw / SUPERSTEPS / x for x in per_ckpt]),
                    workload=name,
                )
            pa_m, lg_m = statistics.median(pa), statistics.median(lg)
            print(
                f"{name:<10} {len(pa):>4} | {pa_m:>15,.0f} {raw / SUPERSTEPS / pa_m:>5.1f}x | {lg_m:>13,.0f} "
                f"{raw / SUPERSTEPS / lg_m:>5.1f}x | {1 / ratio:>14.1f}x",
                flush=True,
            )
            if grow:
                target(
                    "footprint_growing",
                    "disk bytes per checkpoint for a growing state: >= 10x fewer than SqliteSaver's",
                    f"{1 / ratio:.1f}x ({pa_m:,.0f} vs {lg_m:,.0f} B per checkpoint, {len(pa)} runs)",
                    1 / ratio >= 10.0,
                )
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- main

SECTIONS: dict[str, Callable[[Config, str], None]] = {
    "checkpoint": bench_checkpoint,
    "change": bench_change,
    "recovery": bench_recovery,
    "history": bench_history,
    "footprint": bench_footprint,
    "bigstate": bench_bigstate,
}


def config(quick: bool) -> Config:
    """The sizes of a quick or a full run."""
    if quick:
        return Config(
            True,
            sizes=("1KB", "100KB"),
            rounds=3,
            warmups=1,
            changes=("100B", "10KB"),
            recovery_sizes=("100KB",),
            recovery_runs=1,
            history_steps=(10, 100),
            footprint_runs=1,
            big_runs=1,
        )
    return Config(
        False,
        sizes=("1KB", "100KB", "1MB"),
        rounds=21,
        warmups=2,
        changes=tuple(CHANGES),
        recovery_sizes=tuple(SIZES),
        recovery_runs=9,
        history_steps=(10, 100, 1000, 10000),
        footprint_runs=3,
        big_runs=3,
    )
