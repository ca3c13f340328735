"""LangGraph benchmark: the same LangGraph graphs on `SegmentSaver`, `SqliteSaver` and `InMemorySaver`.

Run: ``python benches/bench_langgraph.py [--quick] [--json PATH] [--only SECTION]`` (a
plain script, not a pytest file; needs the ``langgraph`` extra). The engine is LangGraph
itself in every arm; only the checkpointer changes. As in the other benches, every
comparison alternates its arms round by round (order rotated every round, a full
``gc.collect()`` untimed before each arm) and prints the run count, median, p99 and
ratios, with the target from issue 7 and "met"/"MISSED".

The graph is ``bench_workflow``'s: 10 nodes in a line, each reading a blob of 1 KB,
100 KB or 1 MB (semi-compressible) that the input puts in the state and that no node
changes, writing its own small key and appending to a list. LangGraph runs with
``durability="sync"`` (each checkpoint written before the next superstep).

Sections:

* ``checkpoint``: per superstep, the time spent inside the saver's ``put`` and
  ``put_writes`` during one run / 10 (wrapped on the instance); the full ``invoke()``
  time; and the disk bytes one run adds, per checkpoint (``put``): the store's
  segment bytes for `SegmentSaver`, the payload bytes of the thread's rows for SQLite
  (it reuses pages, so its file sizes say little; page overhead not counted). Arms:
  `SegmentSaver` with durability ``process`` (survives kill -9, not a power loss) and
  ``sync`` (fdatasync per write); ``SqliteSaver`` as it comes (WAL,
  ``synchronous=FULL``: fsync per commit) and with ``synchronous=NORMAL`` (WAL: survives
  kill -9, not a power loss); ``InMemorySaver``; no checkpointer. The target compares
  arms of equal crash safety: ``sync`` vs SQLite FULL, ``process`` vs SQLite NORMAL.
* ``recovery``: a fresh process resumes a thread interrupted before ``n5`` (100 KB
  blob) from its saver's files: the saver's part (opening it + the first
  ``get_tuple``, which loads the checkpoint to resume from; the target), from the
  saver's open to the first node running, and from spawn (``CLOCK_MONOTONIC`` read by
  the parent) to the first node running. Each
  child gets its own copy of the same interrupted thread, flushed to disk (fsync) before
  the child starts, as it would be some time after the run that wrote it (the store's
  open fdatasyncs its active segment, which costs a flush if the pages are still
  dirty); bytecode caching on, untimed warm-ups first.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from _harness import RESULTS, parse_args, problem, run_sections
from bench_store import Times, percentile, verdict
from bench_workflow import NODES, SIZES, SUPERSTEPS, Meter, final_ok, langgraph_builder, make_input
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from pyactors.langgraph import SegmentSaver

__all__ = ["main"]

INTERRUPT_AT = 5
RECOVERY_SIZE = 100 * 1024


@dataclass
class Config:
    """Sizes of one run."""

    quick: bool
    rounds: int
    recovery_runs: int


def _segment_bytes(saver: SegmentSaver, thread: str) -> int:
    """Bytes in the store's segment files (what a run adds is what it wrote)."""
    return saver.store.stats()["bytes"]


def _sqlite_bytes(saver: SqliteSaver, thread: str) -> int:
    """Payload bytes of the thread's rows (page and index overhead not counted: it favours SQLite)."""
    one = saver.conn.execute
    cps = one(
        "SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0) FROM checkpoints WHERE thread_id = ?", (thread,)
    ).fetchone()[0]
    writes = one("SELECT coalesce(sum(length(value)), 0) FROM writes WHERE thread_id = ?", (thread,)).fetchone()[0]
    return int(cps) + int(writes)


def _fsync_tree(path: str) -> None:
    """Flush a copied store or database to disk, as it would be after the run that wrote it."""
    paths = [os.path.join(path, f) for f in os.listdir(path)] if os.path.isdir(path) else [path]
    for p in [*paths, os.path.dirname(path)]:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass
class Arm:
    """One saver on the graph."""

    name: str
    saver: Any
    disk: Callable[[Any, str], int] | None
    close: Callable[[], None]
    full: Times = field(default_factory=Times)
    ckpt: Times = field(default_factory=Times)
    bytes_per_put: list[float] = field(default_factory=list)
    puts: int = 0


def _arms(d: str) -> list[Arm]:
    arms = []
    for policy in ("process", "sync"):
        path = os.path.join(d, f"segment-{policy}")
        s = SegmentSaver(path, durability=policy)
        arms.append(Arm(f"SegmentSaver {policy}", s, _segment_bytes, s.close))
    for sync in ("FULL", "NORMAL"):
        path = os.path.join(d, f"lg-{sync}.sqlite")
        conn = sqlite3.connect(path, check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()
        conn.execute(f"PRAGMA synchronous={sync}")
        arms.append(Arm(f"SqliteSaver {sync}", saver, _sqlite_bytes, conn.close))
    arms.append(Arm("InMemorySaver", InMemorySaver(), None, lambda: None))
    arms.append(Arm("no checkpointer", None, None, lambda: None))
    return arms


def one_size(cfg: Config, tmp: str, size_name: str, size: int) -> None:
    d = tempfile.mkdtemp(prefix=f"lg-{size_name}-", dir=tmp)
    inp = make_input(size)
    arms = _arms(d)
    try:
        runners = []
        for arm in arms:
            graph = langgraph_builder().compile(checkpointer=arm.saver)
            meter = Meter(arm.saver, ("put", "put_writes")) if arm.saver is not None else None
            runners.append((arm, graph, meter))
        counter = {"n": 0}

        def one(arm: Arm, graph: Any, meter: Meter | None, timed: bool) -> None:
            counter["n"] += 1
            thread = f"t{counter['n']}"
            cfg_run: Any = {"configurable": {"thread_id": thread}}
            if meter is not None:
                meter.take()
            before = arm.disk(arm.saver, thread) if arm.disk else 0
            t0 = _ns()
            out = graph.invoke(dict(inp), cfg_run, durability="sync" if arm.saver is not None else None)
            elapsed = _ns() - t0
            if not final_ok(out, inp["blob"]):
                problem(f"checkpoint {size_name} {arm.name}: wrong final state")
            if timed:
                arm.full.ns.append(elapsed)
                if meter is not None:
                    puts = sum(1 for m, _ in meter.calls if m == "put")
                    arm.ckpt.ns.append(meter.total_ns // SUPERSTEPS)
                    arm.puts = puts
                    if arm.disk:
                        arm.bytes_per_put.append((arm.disk(arm.saver, thread) - before) / puts)

        for _ in range(2):  # warm-up
            for arm, graph, meter in runners:
                one(arm, graph, meter, timed=False)
        k = len(runners)
        for r in range(cfg.rounds):
            for j in range(k):
                gc.collect()
                one(*runners[(r + j) % k], timed=True)
        by = {a.name: a for a in arms}
        print(f"\n-- {size_name} blob --")
        print(
            f"{'saver':<22} {'runs':>4} | {'ckpt/step ms':>12} {'p99':>7} | {'full run ms':>11} {'p99':>7} | "
            f"{'bytes/ckpt':>10} | {'SqliteFULL/this':>15} {'InMem/this':>10}"
        )
        sq = by["SqliteSaver FULL"].ckpt.median_ms
        mem = by["InMemorySaver"].ckpt.median_ms
        for a in arms:
            has = a.saver is not None
            c = a.ckpt.median_ms if has else 0.0
            disk = statistics.median(a.bytes_per_put) if a.bytes_per_put else None
            print(
                f"{a.name:<22} {a.full.runs:>4} | "
                + (f"{c:>12.3f} {a.ckpt.p99_ms:>7.3f}" if has else f"{'-':>12} {'-':>7}")
                + f" | {a.full.median_ms:>11.2f} {a.full.p99_ms:>7.2f} | "
                + (f"{disk:>10.0f}" if disk is not None else f"{'-':>10}")
                + " | "
                + (f"{sq / c:>14.1f}x {mem / c:>9.1f}x" if has and c > 0 else f"{'-':>15} {'-':>10}"),
                flush=True,
            )
            RESULTS.append(
                {
                    "bench": "checkpoint",
                    "size": size_name,
                    "saver": a.name,
                    "runs": a.full.runs,
                    "puts_per_run": a.puts,
                    "ckpt_per_step_ms": {"median": c, "p99": a.ckpt.p99_ms} if has else None,
                    "full_run_ms": {"median": a.full.median_ms, "p99": a.full.p99_ms},
                    "disk_bytes_per_checkpoint": disk,
                    "target": None,
                    "met": None,
                }
            )
        for seg, sql in (("SegmentSaver sync", "SqliteSaver FULL"), ("SegmentSaver process", "SqliteSaver NORMAL")):
            ratio = by[sql].ckpt.median_ms / by[seg].ckpt.median_ms
            judged = size_name == "100KB"
            ok = ratio >= 5.0 if judged else None
            print(
                f"{sql} / {seg} (same crash safety): {ratio:.1f}x"
                + (f", target >= 5x at 100 KB {verdict(ok)}" if judged else "")
            )
            RESULTS.append(
                {
                    "bench": "checkpoint_ratio",
                    "size": size_name,
                    "pair": [seg, sql],
                    "ratio": ratio,
                    "target": ">= 5x" if judged else None,
                    "met": ok,
                }
            )
    finally:
        for a in arms:
            a.close()
        shutil.rmtree(d, ignore_errors=True)


def bench_checkpoint(cfg: Config, tmp: str) -> None:
    print(f"\n== checkpoint: {NODES}-node linear LangGraph graph, durability='sync' ==")
    print(
        "   ckpt/step = time inside put + put_writes in one run / 10; bytes/ckpt = bytes a run adds / its puts\n"
        "   (SegmentSaver: segment file bytes; SQLite: payload bytes of the thread's rows, page overhead not counted)"
    )
    for size_name, size in SIZES.items():
        try:
            one_size(cfg, tmp, size_name, size)
        except Exception as exc:
            problem(f"checkpoint {size_name}: {type(exc).__name__}: {exc}")
            traceback.print_exc()


def _ns() -> int:
    import time

    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


CHILD = """import time
_now = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # noqa: E731
_marks = {"first": _now()}
import json
import operator
import sys
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

kind, path, thread, NODES, BLOB = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if kind == "segment":
    from pyactors.langgraph import SegmentSaver
else:
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver
_marks["imported"] = _now()
_ran = []


def _node(i):
    def node(state):
        _ran.append(i)
        _marks.setdefault("node", _now())
        return {f"k{i}": i, "log": [f"n{i}"]}

    node.__name__ = f"n{i}"
    return node


if kind == "segment":
    saver = SegmentSaver(path)
    close = saver.close
else:
    conn = sqlite3.connect(path, check_same_thread=False)
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
_get_tuple = saver.get_tuple


def _timed_get_tuple(config):
    t0 = _now()
    tup = _get_tuple(config)
    _marks.setdefault("get_tuple_ns", _now() - t0)
    return tup


saver.get_tuple = _timed_get_tuple
final = graph.invoke(None, {"configurable": {"thread_id": thread}}, durability="sync")
_marks["done"] = _now()
close()
ok = final.get("log") == [f"n{i}" for i in range(NODES)] and len(final.get("blob", b"")) == BLOB
print(json.dumps({**_marks, "ran": _ran, "ok": ok}), flush=True)
"""


def bench_recovery(cfg: Config, tmp: str) -> None:
    print(f"\n== recovery: a fresh process resumes the {RECOVERY_SIZE // 1024} KB thread stopped before n5 ==")
    d = tempfile.mkdtemp(prefix="recovery-", dir=tmp)
    inp = make_input(RECOVERY_SIZE)
    thread = "interrupted"
    templates = {"segment": os.path.join(d, "segment"), "sqlite": os.path.join(d, "lg.sqlite")}
    for kind, path in templates.items():
        if kind == "segment":
            saver: Any = SegmentSaver(path)
            close = saver.close
        else:
            conn = sqlite3.connect(path, check_same_thread=False)
            saver, close = SqliteSaver(conn), conn.close
        graph = langgraph_builder().compile(checkpointer=saver, interrupt_before=[f"n{INTERRUPT_AT}"])
        cfg_lg: Any = {"configurable": {"thread_id": thread}}
        graph.invoke(dict(inp), cfg_lg, durability="sync")
        if graph.get_state(cfg_lg).next != (f"n{INTERRUPT_AT}",):
            problem(f"recovery: {kind} did not stop before n{INTERRUPT_AT}")
        close()
    script = os.path.join(d, "child.py")
    with open(script, "w") as f:
        f.write(CHILD)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONDONTWRITEBYTECODE", "PYTHONPATH"}}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
    samples: dict[str, list[dict[str, Any]]] = {"segment": [], "sqlite": []}
    counter = {"n": 0}

    def child(kind: str, timed: bool) -> None:
        counter["n"] += 1
        run_dir = os.path.join(d, f"run-{counter['n']}")
        os.mkdir(run_dir)
        target = os.path.join(run_dir, os.path.basename(templates[kind]))
        if kind == "segment":
            shutil.copytree(templates[kind], target)
        else:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(templates[kind] + suffix):
                    shutil.copyfile(templates[kind] + suffix, target + suffix)
        _fsync_tree(target)
        argv = [sys.executable, script, kind, target, thread, str(NODES), str(RECOVERY_SIZE)]
        spawn = _ns()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=run_dir, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)
        if proc.returncode != 0:
            problem(f"recovery {kind}: child exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
            return
        marks = json.loads(proc.stdout.strip().splitlines()[-1])
        if not marks["ok"] or marks["ran"] != list(range(INTERRUPT_AT, NODES)):
            problem(f"recovery {kind}: final ok={marks['ok']}, nodes run {marks['ran']}")
        if timed:
            samples[kind].append({**marks, "spawn": spawn})

    try:
        for _ in range(2):
            child("segment", timed=False)
            child("sqlite", timed=False)
        for r in range(cfg.recovery_runs):
            gc.collect()
            for kind in ("segment", "sqlite") if r % 2 == 0 else ("sqlite", "segment"):
                child(kind, timed=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)

    def span(s: dict[str, Any], a: str, b: str) -> float:
        return (s[b] - s[a]) / 1e6

    print(
        "   saver = opening the saver + its first get_tuple (the checkpoint LangGraph resumes from);\n"
        "   open->node also holds compiling the graph and LangGraph's own start, the same for both"
    )
    print(
        f"{'saver':<14} {'runs':>4} | {'saver ms':>8} {'p99':>7} | {'open ms':>7} {'get_tuple ms':>12} | "
        f"{'open->node ms':>13} {'p99':>7} | {'spawn->node ms':>14} {'p99':>7}"
    )
    med = {}
    for kind, label in (("segment", "SegmentSaver"), ("sqlite", "SqliteSaver")):
        ss = samples[kind]
        if not ss:
            continue
        to_node = [span(s, "spawn", "node") for s in ss]
        open_node = [span(s, "imported", "node") for s in ss]
        opens = [span(s, "imported", "opened") for s in ss]
        gets = [s["get_tuple_ns"] / 1e6 for s in ss]
        own = [o + g for o, g in zip(opens, gets, strict=True)]
        med[kind] = statistics.median(own)
        print(
            f"{label:<14} {len(ss):>4} | {med[kind]:>8.2f} {percentile(own, 99):>7.2f} | "
            f"{statistics.median(opens):>7.2f} {statistics.median(gets):>12.2f} | "
            f"{statistics.median(open_node):>13.2f} {percentile(open_node, 99):>7.2f} | "
            f"{statistics.median(to_node):>14.1f} {percentile(to_node, 99):>7.1f}",
            flush=True,
        )
        RESULTS.append(
            {
                "bench": "recovery",
                "saver": label,
                "runs": len(ss),
                "spawn_to_node_ms": {"median": statistics.median(to_node), "p99": percentile(to_node, 99)},
                "open_to_node_ms": {"median": statistics.median(open_node), "p99": percentile(open_node, 99)},
                "saver_open_plus_get_tuple_ms": {"median": med[kind], "p99": percentile(own, 99)},
                "target": None,
                "met": None,
            }
        )
    if len(med) == 2:
        ok = med["segment"] < med["sqlite"]
        print(
            f"target: recovery (saver open + get_tuple) faster than SqliteSaver: {med['sqlite'] / med['segment']:.2f}x "
            f"{verdict(ok)}"
        )
        RESULTS.append(
            {"bench": "recovery_ratio", "ratio": med["sqlite"] / med["segment"], "target": "< SqliteSaver", "met": ok}
        )


SECTIONS: dict[str, Callable[[Config, str], None]] = {"checkpoint": bench_checkpoint, "recovery": bench_recovery}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status (1 if a run misbehaved)."""
    args = parse_args(__doc__ or "", SECTIONS, "fewer rounds and recovery runs", argv)
    cfg = Config(True, rounds=5, recovery_runs=3) if args.quick else Config(False, rounds=31, recovery_runs=15)
    import platform

    print(
        f"bench_langgraph ({'quick' if cfg.quick else 'full'}); python {platform.python_version()}, "
        f"langgraph {_version('langgraph')}, langgraph-checkpoint {_version('langgraph-checkpoint')}, "
        f"langgraph-checkpoint-sqlite {_version('langgraph-checkpoint-sqlite')}, sqlite {sqlite3.sqlite_version}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    return run_sections("bench-langgraph", SECTIONS, cfg, only=args.only, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
