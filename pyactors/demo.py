"""Crash-recovery demo: a workflow survives ``kill -9`` of its worker (``python -m pyactors.demo``, ``make demo``).

1. A `ProcessSupervisor` (on a thread of this process) runs one worker process,
   ``python -m pyactors.demo --worker DIR``. The worker opens a `FileCheckpointer`
   on ``DIR/store``, resumes every unfinished workflow thread (or starts the run
   if there is none), and calls `heartbeat()` once it is ready, then regularly.
2. The workflow is ``fetch -> {parse_a, parse_b, parse_c} -> merge -> report``:
   the three parsers run in parallel (one superstep), and every node sleeps
   0.1-0.2 s as if it waited on I/O. Each node logs its start and end (node,
   pid, time) to a side file, ``DIR/store/nodes.log``.
3. The demo watches the side file and, once the first parser has finished
   while the others are still running, SIGKILLs the worker.
4. The supervisor restarts it; the new life resumes the thread from the
   segments the first one wrote and finishes it.
5. The demo prints the timeline (which nodes ran before the kill, which after,
   and that only the nodes in flight at the kill ran twice), the recovery
   time from the restart's spawn to the next node running, and the final
   state, checked against an uninterrupted run.

Exit status: 0 when no node whose writes were checkpointed ran again and the
final state equals an uninterrupted run's, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import operator
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyactors.process import ENV_STORE, ProcessSupervisor, WorkerSpec, heartbeat
from pyactors.workflow import FileCheckpointer, MemoryCheckpointer, Workflow, unfinished

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pyactors.process import WorkerStats
    from pyactors.workflow import Snapshot

__all__ = ["main"]

THREAD = "report-1"
"""The workflow thread the worker runs."""
WORKER = "flow"
"""The worker's name under the supervisor."""
SIDE_LOG = "nodes.log"
"""The side file (in the store directory) where nodes log their executions."""
NAPS = {"fetch": 0.1, "parse_a": 0.1, "parse_b": 0.2, "parse_c": 0.2, "merge": 0.1, "report": 0.1}
"""Each node's simulated I/O wait, in seconds (also the graph's nodes, in order)."""
PARSERS = ("parse_a", "parse_b", "parse_c")
"""The fan-out: the nodes that run in parallel after ``fetch``."""
INPUT = {"url": "demo://quarterly.txt"}
"""The run's input."""
TEXT = "revenue grew in every region\nthe north grew most\ncosts fell\nthe outlook is good\n"
"""What ``fetch`` "downloads"."""
BEAT_EVERY = 0.2
"""Seconds between the worker's periodic heartbeats."""
DEADLINE = 8.0
"""Give up (exit 1) if the demo has not finished after this many seconds."""


# ---------------------------------------------------------------------------- the workflow


def build(log_fd: int | None = None, *, nap: bool = True) -> Workflow:
    """Return the demo workflow.

    Args:
        log_fd: A file descriptor (opened with ``O_APPEND``) where each node
            writes ``start``/``end`` lines; None: no log.
        nap: Sleep `NAPS` seconds in each node (False: the reference run).

    Returns:
        The (uncompiled) workflow.
    """

    def logged(name: str, body: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], Any]:
        def node(state: dict[str, Any]) -> dict[str, Any]:
            note(log_fd, "start", name)
            if nap:
                time.sleep(NAPS[name])
            out = body(state)
            note(log_fd, "end", name)
            return out

        node.__name__ = name
        return node

    def fetch(state: dict[str, Any]) -> dict[str, Any]:
        return {"text": TEXT, "source": state["url"]}

    def parse_a(state: dict[str, Any]) -> dict[str, Any]:
        return {"words": len(state["text"].split()), "sections": ["words"]}

    def parse_b(state: dict[str, Any]) -> dict[str, Any]:
        return {"lines": state["text"].count("\n"), "sections": ["lines"]}

    def parse_c(state: dict[str, Any]) -> dict[str, Any]:
        top, _ = Counter(state["text"].split()).most_common(1)[0]
        return {"top": top, "sections": ["top"]}

    def merge(state: dict[str, Any]) -> dict[str, Any]:
        return {"summary": {key: state[key] for key in state["sections"]}}

    def report(state: dict[str, Any]) -> dict[str, Any]:
        s = state["summary"]
        return {"report": f"{state['source']}: {s['words']} words, {s['lines']} lines, most frequent {s['top']!r}"}

    wf = Workflow("demo", reducers={"sections": operator.add})
    for fn in (fetch, parse_a, parse_b, parse_c, merge, report):
        wf.add_node(fn.__name__, logged(fn.__name__, fn))
    for parser in PARSERS:
        wf.add_edge("fetch", parser)
        wf.add_edge(parser, "merge")
    wf.add_edge("merge", "report")
    wf.set_entry_point("fetch")
    wf.set_finish_point("report")
    return wf


def note(fd: int | None, kind: str, *fields: object) -> None:
    """Append ``KIND PID MONOTONIC FIELDS...`` to the side file.

    One `os.write` on an ``O_APPEND`` descriptor, so a kill never tears a line.
    `time.monotonic` is one clock for every process on Linux, so the parent can
    compare the worker's times with the supervisor's spawn times.

    Args:
        fd: The side file's descriptor; None: do nothing.
        kind: ``boot``, ``ready``, ``start``, ``end`` or ``resumed``.
        *fields: More space-separated fields.
    """
    if fd is not None:
        os.write(fd, " ".join(map(str, (kind, os.getpid(), f"{time.monotonic():.6f}", *fields))).encode() + b"\n")


# ---------------------------------------------------------------------------- the worker


def worker(root: str) -> int:
    """Resume every unfinished thread of the store, or start the run; then exit 0.

    Args:
        root: The demo's directory (the store is ``root/store``, or
            ``$PYACTORS_STORE`` under a supervisor).

    Returns:
        0 once every thread has finished.
    """
    store = os.environ.get(ENV_STORE) or os.path.join(root, "store")
    os.makedirs(store, exist_ok=True)
    fd = os.open(os.path.join(store, SIDE_LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    note(fd, "boot")  # interpreter started, pyactors imported
    with FileCheckpointer(store) as cp:
        app = build(fd).compile(checkpointer=cp)
        todo = unfinished(cp)
        fresh = not cp.threads()
        note(fd, "ready", "start" if fresh else "resume", *todo)
        heartbeat()  # ready: the supervisor's recovery time ends here
        beats = threading.Event()

        def beat() -> None:
            while not beats.wait(BEAT_EVERY):
                heartbeat()

        threading.Thread(target=beat, name="heartbeat", daemon=True).start()
        try:
            for thread_id in todo:
                app.resume(thread_id)
                note(fd, "resumed", thread_id, f"{app.last_recovery_ms or 0:.2f}")
            if fresh:
                app.invoke(INPUT, thread_id=THREAD)
        finally:
            beats.set()
    os.close(fd)
    return 0


# ---------------------------------------------------------------------------- the parent


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the side file."""

    kind: str
    pid: int
    at: float
    args: tuple[str, ...]


def read_log(path: str) -> list[Line]:
    """Parse the side file (a missing file is empty).

    Args:
        path: The side file.

    Returns:
        Its complete lines, in order.
    """
    try:
        with open(path, "rb") as f:
            data = f.read().decode()
    except FileNotFoundError:
        return []
    out = []
    for raw in data.splitlines(keepends=True):
        parts = raw.split()
        if raw.endswith("\n") and len(parts) >= 3:  # noqa: PLR2004 - kind pid time
            out.append(Line(parts[0], int(parts[1]), float(parts[2]), tuple(parts[3:])))
    return out


def kill_mid_fanout(sup: ProcessSupervisor, side_log: str, deadline: float) -> tuple[int, float] | None:
    """SIGKILL the worker once one parser has finished while another is still running.

    Args:
        sup: The running supervisor.
        side_log: The side file to watch.
        deadline: `time.monotonic` time to give up at.

    Returns:
        The killed pid and the kill's time, or None (the run ended or timed out first).
    """
    while time.monotonic() < deadline:
        lines = read_log(side_log)
        ended = {ln.args[0] for ln in lines if ln.kind == "end"}
        if ended & set(PARSERS):
            # Let the finished parser's writes reach the store (microseconds after its
            # "end" line), while the 0.2 s parsers are still far from done.
            time.sleep(0.01)
            pid = sup.stats(WORKER).pid
            if pid is None or pid != lines[-1].pid:
                return None
            os.kill(pid, signal.SIGKILL)
            return pid, time.monotonic()
        if "report" in ended or sup.stats(WORKER).state in ("done", "failed"):
            return None
        time.sleep(0.002)
    return None


def reference() -> dict[str, Any]:
    """Return the final state of an uninterrupted run (in memory, no naps)."""
    with MemoryCheckpointer() as cp:
        return build(nap=False).compile(checkpointer=cp).invoke(INPUT, thread_id=THREAD)


def names(nodes: Sequence[str] | set[str]) -> str:
    """Return `nodes` in graph order, comma-separated ("-" when empty)."""
    ordered = [n for n in NAPS if n in nodes]
    return ", ".join(ordered) or "-"


def parent(root: str) -> int:
    """Run the whole demo in `root`.

    Args:
        root: An empty directory (the store goes in ``root/store``).

    Returns:
        The exit status: 0 if the run recovered correctly, else 1.
    """
    store = os.path.join(root, "store")
    side_log = os.path.join(store, SIDE_LOG)
    print("pyactors demo: a workflow in a supervised worker process, SIGKILLed in the middle of its fan-out")
    print(f"  graph: fetch -> {{{', '.join(PARSERS)}}} (in parallel) -> merge -> report;  store: {store}")

    restarts: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            restarts.append(record.getMessage())

    handler = Collect(logging.WARNING)
    log = logging.getLogger("pyactors.process")
    log.addHandler(handler)
    spec = WorkerSpec(WORKER, [sys.executable, "-m", "pyactors.demo", "--worker", root])
    sup = ProcessSupervisor(store, [spec], backoff_initial=0.05, max_restarts=3, heartbeat_timeout=2.0)
    status: list[int] = []
    runner = threading.Thread(target=lambda: status.append(sup.run()), name="process-supervisor", daemon=True)
    deadline = time.monotonic() + DEADLINE
    try:
        runner.start()
        killed = kill_mid_fanout(sup, side_log, deadline)
        runner.join(max(0.0, deadline - time.monotonic()))
        if runner.is_alive():
            sup.stop(timeout=5.0)
    finally:
        log.removeHandler(handler)
    stats = sup.stats(WORKER)
    if killed is None or status != [0] or stats.state != "done":
        print(f"FAILED: the worker was {'not killed mid-fan-out' if killed is None else 'killed'}; supervisor")
        print(f"  status {status or 'still running'}, worker {stats.state}, {stats.restarts} restarts")
        return 1
    victim, killed_at = killed
    with FileCheckpointer(store) as cp:
        history = cp.list(THREAD)
    run = Run(read_log(side_log), stats, victim, killed_at, history, restarts)
    print_timeline(run)
    problems = check_nodes(run) + check_recovery(run) + check_final(run)
    for problem in problems:
        print(f"WRONG: {problem}")
    if problems:
        return 1
    print(f"OK: killed mid-fan-out, restarted, resumed from its segments; only {names(run.in_flight)} ran twice")
    return 0


@dataclass(frozen=True, slots=True)
class Run:
    """What the demo observed.

    Attributes:
        lines: The side file.
        stats: The worker's supervision record.
        victim: The pid that was killed.
        killed_at: When (`time.monotonic`).
        history: The thread's checkpoints, newest first.
        restarts: The supervisor's restart log lines.
    """

    lines: list[Line]
    stats: WorkerStats
    victim: int
    killed_at: float
    history: list[Snapshot]
    restarts: list[str]

    @property
    def before(self) -> list[Line]:
        """The first life's lines."""
        return [ln for ln in self.lines if ln.pid == self.victim]

    @property
    def after(self) -> list[Line]:
        """The restarted life's lines."""
        return [ln for ln in self.lines if ln.pid != self.victim]

    @property
    def saved(self) -> set[str]:
        """The nodes whose writes were checkpointed before the kill, according to the store.

        The nodes completed at the checkpoint the resume started from, plus the writes
        recorded after it (the resume checkpoint's pending writes).
        """
        by_id = {s.checkpoint_id: s for s in self.history}
        for snap in self.history:
            if snap.metadata.get("source") == "resume":
                base = by_id.get(snap.parent_id or "")
                return {*snap.completed_nodes, *snap.pending_writes, *(base.completed_nodes if base else ())}
        return set()

    @property
    def in_flight(self) -> set[str]:
        """The nodes that started before the kill without their writes being checkpointed."""
        return {ln.args[0] for ln in self.before if ln.kind == "start"} - self.saved

    def ms(self, at: float) -> str:
        """`at` in milliseconds since the first spawn, right-aligned."""
        return f"{(at - self.stats.spawn_times[0]) * 1000:6.0f}"


def print_timeline(run: Run) -> None:
    """Print one line per spawn, readiness, node execution and the kill.

    Args:
        run: What the demo observed.
    """
    print(f"  {'ms':>6}  {'pid':>7}  event")
    last_before = run.before[-1]
    for ln in run.lines:
        if ln.kind == "boot":
            spawn = max(t for t in run.stats.spawn_times if t <= ln.at)
            what = "restarted" if spawn != run.stats.spawn_times[0] else "spawned"
            print(f"  {run.ms(spawn)}  {ln.pid:>7}  {what} by the ProcessSupervisor")
        elif ln.kind == "ready":
            todo = f"resumes {', '.join(ln.args[1:])}" if ln.args[0] == "resume" else f"starts {THREAD!r}"
            print(f"  {run.ms(ln.at)}  {ln.pid:>7}  store open, ready (heartbeat); {todo}")
        elif ln.kind == "start":
            node = ln.args[0]
            end = next((e for e in run.lines if e.kind == "end" and e.pid == ln.pid and e.args[0] == node), None)
            until = "(in flight at the kill)" if end is None else f"ran until {run.ms(end.at).strip()} ms"
            print(f"  {run.ms(ln.at)}  {ln.pid:>7}  {node:<8} {until}")
        if ln is last_before:
            print(f"  {run.ms(run.killed_at)}  {run.victim:>7}  SIGKILL")


def check_nodes(run: Run) -> list[str]:
    """Print which nodes ran before and after the kill; check that only those in flight ran twice.

    Args:
        run: What the demo observed.

    Returns:
        The problems found.
    """
    ended = {ln.args[0] for ln in run.before if ln.kind == "end"}
    print(f"before the kill: {names(ended)} finished ({names(run.saved)} checkpointed)", end="")
    print(f"; in flight: {names(run.in_flight)}")
    print(f"after the restart: {names({ln.args[0] for ln in run.after if ln.kind == 'start'})}")
    runs = Counter(ln.args[0] for ln in run.lines if ln.kind == "start")
    twice = {n for n, c in runs.items() if c > 1}
    verdict = "only the node(s) in flight at the kill" if twice <= run.in_flight else "WRONG"
    print(f"ran twice: {names(twice)} - {verdict}")
    problems = []
    if twice - run.in_flight:
        problems.append(f"ran again although their writes were checkpointed: {names(twice - run.in_flight)}")
    if max(runs.values(), default=0) > 2 or set(runs) != set(NAPS):  # noqa: PLR2004 - two lives at most
        problems.append(f"unexpected executions: {dict(runs)}")
    return problems


def check_recovery(run: Run) -> list[str]:
    """Print the restart's recovery time: spawn, imports done, ready, next node running.

    Args:
        run: What the demo observed.

    Returns:
        The problems found.
    """
    spawn = run.stats.spawn_times[-1]
    at = {kind: next((ln for ln in run.after if ln.kind == kind), None) for kind in ("boot", "ready", "start")}
    resumed = next((ln.args[1] for ln in run.after if ln.kind == "resumed"), "?")
    boot, ready, node = at["boot"], at["ready"], at["start"]
    if boot is None or ready is None or node is None:
        return ["the restarted worker never ran a node"]
    print(
        f"recovery: spawn -> imports done {(boot.at - spawn) * 1000:.0f} ms -> store open, ready "
        f"{(ready.at - spawn) * 1000:.0f} ms -> next node running {(node.at - spawn) * 1000:.0f} ms "
        f"(resume() to node: {resumed} ms)"
    )
    for line in run.restarts:
        print(f"  supervisor: {line}")
    return []


def check_final(run: Run) -> list[str]:
    """Print the final state; check it against an uninterrupted run's.

    Args:
        run: What the demo observed.

    Returns:
        The problems found.
    """
    final = run.history[0]
    state, expected = final.state, reference()
    print(
        f"final state: step {final.step}, {len(run.history)} checkpoints; sections={state.get('sections')}; "
        f"report={state.get('report')!r}"
    )
    problems = []
    if not final.is_final:
        problems.append(f"the thread did not finish: next {final.next_nodes}, error {final.error}")
    if state == expected:
        print("  equals an uninterrupted run's final state")
    else:
        diff = sorted(k for k in {*state, *expected} if state.get(k) != expected.get(k))
        problems.append(f"the final state differs from an uninterrupted run's in {diff}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the demo (or, with ``--worker``, the worker).

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m pyactors.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help="run in this (empty) directory and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
        return parent(args.dir)
    tmp = tempfile.mkdtemp(prefix="pyactors-demo-")
    try:
        return parent(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
