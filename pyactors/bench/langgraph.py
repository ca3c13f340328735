"""LangGraph benchmark: the same LangGraph graphs on `SegmentSaver`, `SqliteSaver` and `InMemorySaver`.

The ``langgraph`` area of ``pyactors bench`` (``--only langgraph``; needs the ``bench``
extra). The engine is LangGraph itself in every arm; only the checkpointer changes. As
in the other areas, every comparison alternates its arms round by round (order rotated
every round, a full ``gc.collect()`` untimed before each arm) and records the run
count, median, p99 and ratios, with the targets of issue 7 and "met"/"MISSED".

The graph is the ``workflow`` area's: 10 nodes in a line, each reading a blob of 1 KB,
100 KB or 1 MB (semi-compressible) that the input puts in the state and that no node
changes, writing its own small key and appending to a list. LangGraph runs with
``durability="sync"`` (each checkpoint written before the next superstep).

Sections:

* ``checkpoint``: per superstep, the time spent inside the saver's ``put`` and
  ``put_writes`` during one run / 10 (wrapped on the instance); the full ``invoke()``
  time; and the disk bytes one run adds, per checkpoint (``put``): the store's
  segment bytes for `SegmentSaver`, the payload bytes of the thread's rows for SQLite
  (it reuses pages, so its file sizes say little; page overhead not counted). Each run
  uses a new thread, deleted after the run (untimed). Arms: `SegmentSaver` with
  durability ``process`` (survives kill -9, not a power loss) and ``sync`` (fdatasync
  per write); ``SqliteSaver`` as it comes (WAL, ``synchronous=FULL``: fsync per commit)
  and with ``synchronous=NORMAL`` (WAL: survives kill -9, not a power loss);
  ``InMemorySaver``; no checkpointer. Compared: arms of equal crash safety (``sync``
  vs SQLite FULL, ``process`` vs SQLite NORMAL; the targets), default against default
  (``process`` vs SQLite FULL), and each `SegmentSaver` arm against ``InMemorySaver``.
* ``recovery``: a fresh process resumes a thread interrupted before ``n5`` (100 KB
  blob) from its saver's files: the saver's part (opening it + the first
  ``get_tuple``, which loads the checkpoint to resume from; the target), from the
  saver's open to the first node running, and from spawn (``CLOCK_MONOTONIC`` read by
  the parent) to the first node running. The child is the ``workflow`` area's
  LangGraph child with the saver to open as its last argument. Each child gets its own
  copy of the same interrupted thread, flushed to disk (fsync) before the child
  starts, as it would be some time after the run that wrote it (the store's open
  fdatasyncs its active segment, which costs a flush if the pages are still dirty);
  bytecode caching on, untimed warm-ups first.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from pyactors.bench._harness import alternate, child_env, compare, figure, monotonic_ns, problem, summary, target
from pyactors.bench.workflow import (
    CHILD_LANGGRAPH,
    INTERRUPT_AT,
    NODES,
    RECOVERY_SIZE,
    SIZES,
    SUPERSTEPS,
    Arm,
    final_ok,
    langgraph_arm,
    langgraph_builder,
    make_input,
)
from pyactors.langgraph import SegmentSaver

__all__ = ["SECTIONS", "Config", "config"]

PAIRS = (  # (contender, baseline, pairing): the checkpoint comparisons
    ("SegmentSaver sync", "SqliteSaver FULL", "equal crash safety: power loss"),
    ("SegmentSaver process", "SqliteSaver NORMAL", "equal crash safety: kill -9"),
    ("SegmentSaver process", "SqliteSaver FULL", "default vs default"),
    ("SegmentSaver process", "InMemorySaver", "vs no durability"),
    ("SegmentSaver sync", "InMemorySaver", "vs no durability"),
)
TARGET_SIZE = "100KB"


@dataclass
class Config:
    """Sizes of one run."""

    quick: bool
    sizes: tuple[str, ...]
    rounds: int
    warmups: int
    recovery_runs: int


def config(quick: bool) -> Config:
    """The sizes of a quick or a full run."""
    if quick:
        # No warm-up: a quick run shows the area works, its figures are not for quoting.
        return Config(True, sizes=(TARGET_SIZE,), rounds=2, warmups=0, recovery_runs=1)
    return Config(False, sizes=("1KB", "100KB", "1MB"), rounds=31, warmups=2, recovery_runs=15)


# --------------------------------------------------------------------------- checkpoint cost


def _segment_bytes(saver: SegmentSaver, thread: str) -> int:
    """Bytes in the store's segment files (what a run adds is what it wrote)."""
    return int(saver.store.stats()["bytes"])


def _sqlite_bytes(conn: sqlite3.Connection, thread: str) -> int:
    """Payload bytes of the thread's rows (page and index overhead not counted: it favours SQLite)."""
    cps = conn.execute(
        "SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0) FROM checkpoints WHERE thread_id = ?", (thread,)
    ).fetchone()[0]
    writes = conn.execute(
        "SELECT coalesce(sum(length(value)), 0) FROM writes WHERE thread_id = ?", (thread,)
    ).fetchone()
    return int(cps) + int(writes[0])


@dataclass
class Saver:
    """A saver under test: the arm running it, the saver, and how to read the bytes a thread has on disk."""

    arm: Arm
    saver: Any
    disk: Callable[[str], int] | None


def _savers(d: str) -> list[Saver]:
    out: list[Saver] = []
    for policy in ("process", "sync"):
        seg = SegmentSaver(os.path.join(d, f"segment-{policy}"), durability=policy)
        out.append(Saver(langgraph_arm(f"SegmentSaver {policy}", seg, seg.close), seg, partial(_segment_bytes, seg)))
    for sync in ("FULL", "NORMAL"):
        conn = sqlite3.connect(os.path.join(d, f"lg-{sync}.sqlite"), check_same_thread=False)
        sq = SqliteSaver(conn)
        sq.setup()
        conn.execute(f"PRAGMA synchronous={sync}")
        out.append(Saver(langgraph_arm(f"SqliteSaver {sync}", sq, conn.close), sq, partial(_sqlite_bytes, conn)))
    mem = InMemorySaver()
    out.append(Saver(langgraph_arm("InMemorySaver", mem, lambda: None), mem, None))
    out.append(Saver(langgraph_arm("no checkpointer", None, lambda: None), None, None))
    return out


def bench_checkpoint(cfg: Config, tmp: str) -> None:
    print(f"\n== checkpoint: {NODES}-node linear LangGraph graph, durability='sync', saver by saver ==")
    print(
        "   ckpt/step = time inside put + put_writes in one run / 10; bytes/ckpt = bytes a run adds / its puts\n"
        "   (SegmentSaver: segment file bytes; SQLite: payload bytes of the thread's rows, page overhead not counted)"
    )
    for size_name in cfg.sizes:
        try:
            one_size(cfg, tmp, size_name)
        except Exception as exc:
            problem(f"checkpoint {size_name}: {type(exc).__name__}: {exc}")
            traceback.print_exc()


def one_size(cfg: Config, tmp: str, size_name: str) -> None:
    d = tempfile.mkdtemp(prefix=f"lg-{size_name}-", dir=tmp)
    size = SIZES[size_name]
    inp = make_input(size)
    savers = _savers(d)
    per_put: dict[str, list[float]] = {s.arm.name: [] for s in savers}
    counter = {"n": 0}

    def one(s: Saver, timed: bool) -> None:
        counter["n"] += 1
        thread = f"t{counter['n']}"
        before = s.disk(thread) if s.disk else 0
        run_ns, ck_ns, _, out = s.arm.run(thread, dict(inp))
        if not final_ok(out, inp["blob"]):
            problem(f"checkpoint {size_name} {s.arm.name}: wrong final state")
        if timed:
            s.arm.full.ns.append(run_ns)
            s.arm.ckpt.ns.append(ck_ns // SUPERSTEPS)
            if s.disk:
                puts = len(list(s.saver.list({"configurable": {"thread_id": thread}})))
                s.arm.calls = puts
                per_put[s.arm.name].append((s.disk(thread) - before) / puts)
        s.arm.cleanup(thread)

    try:
        for _ in range(cfg.warmups):
            for s in savers:
                one(s, timed=False)
        alternate([partial(one, s, True) for s in savers], cfg.rounds)
        _record_checkpoint(cfg, size_name, size, {s.arm.name: s.arm for s in savers}, per_put)
    finally:
        for s in savers:
            s.arm.close()
        shutil.rmtree(d, ignore_errors=True)


def _record_checkpoint(
    cfg: Config, size_name: str, size: int, by: dict[str, Arm], per_put: dict[str, list[float]]
) -> None:
    print(f"\n-- {size_name} blob --")
    print(
        f"{'saver':<22} {'runs':>4} | {'ckpt/step ms':>12} {'p99':>7} | {'full run ms':>11} {'p99':>7} | "
        f"{'bytes/ckpt':>10} | {'SqliteFULL/this':>15} {'InMem/this':>10}"
    )
    sq, mem = by["SqliteSaver FULL"].ckpt.median_ms, by["InMemorySaver"].ckpt.median_ms
    params = {"size": size_name, "blob_bytes": size}
    for name, a in by.items():
        has = name != "no checkpointer"
        c = a.ckpt.median_ms
        disk = statistics.median(per_put[name]) if per_put[name] else None
        print(
            f"{name:<22} {a.full.runs:>4} | "
            + (f"{c:>12.3f} {a.ckpt.p99_ms:>7.3f}" if has else f"{'-':>12} {'-':>7}")
            + f" | {a.full.median_ms:>11.2f} {a.full.p99_ms:>7.2f} | "
            + (f"{disk:>10.0f}" if disk is not None else f"{'-':>10}")
            + " | "
            + (f"{sq / c:>14.1f}x {mem / c:>9.1f}x" if has and c > 0 else f"{'-':>15} {'-':>10}"),
            flush=True,
        )
        figure("LangGraph run (10 nodes)", name, "ms", a.full.summary(), **params)
    lower: dict[tuple[str, str], float] = {}
    for seg, base, pairing in PAIRS:
        ratio = compare(
            "LangGraph checkpoint cost per superstep",
            "ms",
            (seg, by[seg].ckpt.summary()),
            (base, by[base].ckpt.summary()),
            higher_is_better=False,
            pairing=pairing,
            **params,
        )
        lower[seg, base] = 1 / ratio if ratio else float("inf")
        if per_put[base]:
            compare(
                "LangGraph disk bytes per checkpoint",
                "B",
                (seg, summary(per_put[seg])),
                (base, summary(per_put[base])),
                higher_is_better=False,
                pairing=pairing,
                puts_per_run=by[seg].calls,
                **params,
            )
        print(f"{base} / {seg} ({pairing}): {lower[seg, base]:.1f}x")
    if size_name != TARGET_SIZE:
        return
    default = lower["SegmentSaver process", "SqliteSaver FULL"]
    for (seg, base, pairing), key in zip(
        PAIRS[:2],
        ("langgraph_checkpoint_sync_vs_sqlite_full", "langgraph_checkpoint_process_vs_sqlite_normal"),
        strict=True,
    ):
        target(
            key,
            f"LangGraph checkpoint cost per superstep at 100 KB, {pairing} ({seg} vs {base}): "
            ">= 5x lower than SqliteSaver's",
            f"{lower[seg, base]:.1f}x ({by[seg].ckpt.median_ms:.3f} vs {by[base].ckpt.median_ms:.3f} ms; "
            f"{by[seg].ckpt.runs} runs)",
            lower[seg, base] >= 5.0,
            note=f"default vs default (SegmentSaver process vs SqliteSaver FULL): {default:.1f}x",
        )


# --------------------------------------------------------------------------- recovery


def _fsync_tree(path: str) -> None:
    """Flush a copied store or database to disk, as it would be after the run that wrote it."""
    paths = [os.path.join(path, f) for f in os.listdir(path)] if os.path.isdir(path) else [path]
    for p in [*paths, os.path.dirname(path)]:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _interrupted_thread(kind: str, path: str, thread: str) -> None:
    """Run the graph on a fresh saver at `path` until it stops before node `INTERRUPT_AT`."""
    if kind == "segment":
        seg = SegmentSaver(path)
        saver: Any = seg
        close = seg.close
    else:
        conn = sqlite3.connect(path, check_same_thread=False)
        saver, close = SqliteSaver(conn), conn.close
    try:
        graph = langgraph_builder().compile(checkpointer=saver, interrupt_before=[f"n{INTERRUPT_AT}"])
        cfg_lg: Any = {"configurable": {"thread_id": thread}}
        graph.invoke(make_input(RECOVERY_SIZE), cfg_lg, durability="sync")
        if graph.get_state(cfg_lg).next != (f"n{INTERRUPT_AT}",):
            problem(f"recovery: {kind} did not stop before n{INTERRUPT_AT}")
    finally:
        close()


def bench_recovery(cfg: Config, tmp: str) -> None:
    print(f"\n== recovery: a fresh process resumes the {RECOVERY_SIZE // 1024} KB thread stopped before n5 ==")
    d = tempfile.mkdtemp(prefix="lg-recovery-", dir=tmp)
    thread = "interrupted"
    templates = {"segment": os.path.join(d, "segment"), "sqlite": os.path.join(d, "lg.sqlite")}
    script = os.path.join(d, "child.py")
    with open(script, "w") as f:
        f.write(CHILD_LANGGRAPH)
    env = child_env(tmp)
    samples: dict[str, list[dict[str, Any]]] = {"segment": [], "sqlite": []}
    counter = {"n": 0}

    def child(kind: str, timed: bool) -> None:
        counter["n"] += 1
        run_dir = os.path.join(d, f"run-{counter['n']}")
        os.mkdir(run_dir)
        dest = os.path.join(run_dir, os.path.basename(templates[kind]))
        if kind == "segment":
            shutil.copytree(templates[kind], dest)
        else:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(templates[kind] + suffix):
                    shutil.copyfile(templates[kind] + suffix, dest + suffix)
        _fsync_tree(dest)
        argv = [sys.executable, script, dest, thread, str(NODES), str(RECOVERY_SIZE), kind]
        spawn = monotonic_ns()
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
        for kind, path in templates.items():
            _interrupted_thread(kind, path, thread)
        for _ in range(cfg.warmups):
            child("segment", timed=False)
            child("sqlite", timed=False)
        alternate([partial(child, "segment", True), partial(child, "sqlite", True)], cfg.recovery_runs)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    _record_recovery(samples)


def _record_recovery(samples: dict[str, list[dict[str, Any]]]) -> None:
    def span(s: dict[str, Any], a: str, b: str) -> float:
        return float(s[b] - s[a]) / 1e6

    measures: dict[str, Callable[[dict[str, Any]], float]] = {  # name -> ms per sample
        "saver open + first get_tuple": lambda s: span(s, "imported", "opened") + span(s, "restoring", "restored"),
        "saver open": lambda s: span(s, "imported", "opened"),
        "first get_tuple": lambda s: span(s, "restoring", "restored"),
        "open -> first node running": lambda s: span(s, "imported", "node"),
        "spawn -> first node running": lambda s: span(s, "spawn", "node"),
    }
    if not samples["segment"] or not samples["sqlite"]:
        return
    print(
        "   saver = opening the saver + its first get_tuple (the checkpoint LangGraph resumes from);\n"
        "   open->node also holds compiling the graph and LangGraph's own start, the same for both"
    )
    print(f"{'measure (ms)':<30} | {'SegmentSaver':>12} {'p99':>7} | {'SqliteSaver':>11} {'p99':>7} | runs")
    stats: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for name, fn in measures.items():
        seg = summary([fn(s) for s in samples["segment"]])
        sql = summary([fn(s) for s in samples["sqlite"]])
        stats[name] = (seg, sql)
        print(
            f"{name:<30} | {seg['median']:>12.2f} {seg['p99']:>7.2f} | {sql['median']:>11.2f} {sql['p99']:>7.2f} | "
            f"{seg['runs']}",
            flush=True,
        )
        compare(
            f"LangGraph recovery, {name}",
            "ms",
            ("SegmentSaver", seg),
            ("SqliteSaver", sql),
            higher_is_better=False,
            size="100KB",
            blob_bytes=RECOVERY_SIZE,
        )
    seg, sql = stats["saver open + first get_tuple"]
    to_node = stats["spawn -> first node running"]
    target(
        "langgraph_recovery_vs_sqlite",
        "LangGraph recovery at 100 KB, fresh process (saver open + first get_tuple): faster than SqliteSaver",
        f"{seg['median']:.2f} vs {sql['median']:.2f} ms ({sql['median'] / seg['median']:.2f}x; {seg['runs']} runs)",
        seg["median"] < sql["median"],
        note=f"spawn -> first node running: {to_node[0]['median']:.0f} vs {to_node[1]['median']:.0f} ms",
    )


def bench_history(cfg: Config, tmp: str) -> None:
    """SegmentSaver against SqliteSaver on a thread of N supersteps (the workflow area's history section, its sizes)."""
    from pyactors.bench import workflow

    workflow.bench_history(workflow.config(cfg.quick), tmp, engines=workflow.SAVER_HISTORY_ENGINES)


SECTIONS: dict[str, Callable[[Config, str], None]] = {
    "checkpoint": bench_checkpoint,
    "recovery": bench_recovery,
    "history": bench_history,
}
