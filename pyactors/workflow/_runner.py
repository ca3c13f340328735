"""Running a compiled workflow: supersteps on node actors, checkpoints, resume."""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from pykka import messages

from pyactors.actor import PersistentActor, _Supervised
from pyactors.errors import (
    CheckpointNotFoundError,
    InvalidArgumentError,
    NodeFailedError,
    RecursionLimitError,
    WorkflowError,
)
from pyactors.supervisor import Supervisor
from pyactors.workflow._checkpoint import Checkpointer, Head, NodeError, Snapshot

if TYPE_CHECKING:
    from pyactors.supervisor import SupervisedRef, SupervisorRef
    from pyactors.workflow._graph import Graph, NodeFn, State

__all__ = ["DEFAULT_RECURSION_LIMIT", "CompiledWorkflow", "unfinished"]

logger = logging.getLogger("pyactors.workflow")

_MISSING = object()

DEFAULT_RECURSION_LIMIT = 10_000
"""The supersteps one `invoke`, `resume` or `execute_until` may run (LangGraph's default is
about the same): a loop that never ends stops there, checkpointed, instead of running forever."""


class _Running:
    """How many nodes of one superstep have not finished yet."""

    def __init__(self, n: int) -> None:
        self._left = n
        self._lock = threading.Lock()

    def finish_one(self) -> bool:
        """Count one node as finished; True if it was the last one running."""
        with self._lock:
            self._left -= 1
            return self._left == 0


class _Task(NamedTuple):
    node: str
    state: State
    checkpoint_id: str
    running: _Running


class _Done(NamedTuple):
    node: str
    writes: dict[str, Any] | None
    node_state: Any
    error: NodeError | None


class _NodeRunner(_Supervised):
    """Runs one node of one workflow run and records its writes the moment it finishes.

    The last node of a superstep to finish records nothing: the superstep's checkpoint,
    which holds its writes, is written at once, and a crash before it re-runs that node
    exactly as a crash before its own record would.
    """

    def __init__(self, node: str, fn: NodeFn | None, stateful: SupervisedRef[Any] | None, run: _Run) -> None:
        super().__init__()
        self.node, self.fn, self.stateful = node, fn, stateful
        self.checkpointer, self.thread_id = run.app.checkpointer, run.thread_id
        self.done, self.started = run.done, run.started

    def on_receive(self, message: Any) -> Any:
        """Run a `_Task`; report a `_Done` (errors included) on the run's queue."""
        if not isinstance(message, _Task):
            return super().on_receive(message)
        if not self.started:
            self.started.append(time.perf_counter())
        try:
            if self.stateful is not None:
                out = self.stateful.ask(messages.ProxyCall(("run",), (message.state,), {}))
                node_state = self.stateful.ask(messages.ProxyCall(("snapshot",), (), {}))
            else:
                assert self.fn is not None
                out = self.fn(message.state)
                node_state = None
            if out is not None and not isinstance(out, Mapping):
                msg = f"node {self.node!r} returned {type(out).__name__}, not a dict of updates (or None)"
                raise WorkflowError(msg)
            writes = dict(out or {})
            if not message.running.finish_one():
                self.checkpointer.write_node_writes(
                    self.thread_id,
                    message.checkpoint_id,
                    self.node,
                    writes,
                    None if node_state is None else [node_state],
                )
        except Exception as exc:  # noqa: BLE001 - a node's failure is data for the checkpoint
            error = NodeError(self.node, type(exc).__name__, str(exc), traceback.format_exc())
            self.done.put(_Done(self.node, None, None, error))
        else:
            self.done.put(_Done(self.node, writes, node_state, None))
        return None


class _Run:
    """The node actors of one run of one thread, under one supervisor."""

    def __init__(self, app: CompiledWorkflow, thread_id: str, node_states: Mapping[str, Any]) -> None:
        self.app = app
        self.thread_id = thread_id
        self.supervisor: SupervisorRef = Supervisor.start(name=f"{app.graph.name}/{thread_id}")
        self.runners: dict[str, SupervisedRef[Any]] = {}
        self.node_states = dict(node_states)
        self.done: queue.Queue[_Done] = queue.Queue()
        self.started: list[float] = []

    def runner(self, node: str) -> SupervisedRef[Any]:
        if node not in self.runners:
            spec = self.app.graph.nodes[node]
            stateful = None
            fn = None
            if isinstance(spec, type) and issubclass(spec, PersistentActor):
                stateful = self.supervisor.spawn(spec, persistence_id=f"{self.thread_id}/{node}/state", _managed=True)
                if node in self.node_states:
                    stateful.ask(messages.ProxyCall(("restore",), (self.node_states[node],), {}))
            else:
                fn = spec
            self.runners[node] = self.supervisor.spawn(
                _NodeRunner, node, fn, stateful, self, persistence_id=f"{self.thread_id}/{node}"
            )
        return self.runners[node]

    def superstep(self, nodes: list[str], state: State, checkpoint_id: str) -> dict[str, _Done]:
        running = _Running(len(nodes))
        for node in nodes:
            self.runner(node).tell(_Task(node, dict(state), checkpoint_id, running))
        results: dict[str, _Done] = {}
        while len(results) < len(nodes):
            try:
                done = self.done.get(timeout=0.5)
            except queue.Empty:
                if not self.supervisor.is_alive():
                    msg = f"{self.app.graph.name}: run of {self.thread_id!r} interrupted: its actors were stopped"
                    raise WorkflowError(msg) from None
                continue
            results[done.node] = done
        return results

    def close(self) -> None:
        self.supervisor.stop()


def _merge(graph: Graph, state: State, writes: list[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Merge the writes of one superstep (in node order) into the changed keys."""
    merged: dict[str, Any] = {}
    writer: dict[str, str] = {}
    for node, updates in writes:
        for key, value in updates.items():
            reducer = graph.reducers.get(key)
            if reducer is None:
                if key in writer:
                    msg = (
                        f"{graph.name}: nodes {writer[key]!r} and {node!r} both wrote {key!r} in one superstep; "
                        f"give {key!r} a reducer"
                    )
                    raise WorkflowError(msg)
                merged[key] = value
            else:
                base = merged[key] if key in merged else state.get(key, _MISSING)
                merged[key] = value if base is _MISSING else reducer(base, value)
            writer[key] = node
    return merged


class CompiledWorkflow:
    """A validated workflow, ready to run (from `Workflow.compile()`).

    Attributes:
        graph: The validated graph.
        checkpointer: Where its checkpoints go.
        last_recovery_ms: How long the last `resume` took, from the call to the first
            node running (None before any resume).
    """

    def __init__(
        self,
        graph: Graph,
        checkpointer: Checkpointer,
        interrupt_before: frozenset[str],
        interrupt_after: frozenset[str],
    ) -> None:
        self.graph = graph
        self.checkpointer = checkpointer
        self.interrupt_before = interrupt_before
        self.interrupt_after = interrupt_after
        self.last_recovery_ms: float | None = None

    # -- the API --------------------------------------------------------------------

    def invoke(
        self, input: Mapping[str, Any], thread_id: str, *, recursion_limit: int = DEFAULT_RECURSION_LIMIT
    ) -> dict[str, Any]:
        """Run from the entry point; return the final state (or the state at an interrupt).

        Args:
            input: Merged into the thread's state.
            thread_id: The thread (a new one, or a new run of an existing one).
            recursion_limit: Run at most this many supersteps.

        Raises:
            NodeFailedError: A node raised (the error checkpoint is its `snapshot`).
            RecursionLimitError: `recursion_limit` supersteps ran and more were due.
            ResumeConflictError: The thread is already running.
        """
        return self._run(thread_id, input=input, limit=recursion_limit).state

    def execute_until(
        self,
        node: str,
        input: Mapping[str, Any] | None,
        thread_id: str,
        *,
        recursion_limit: int = DEFAULT_RECURSION_LIMIT,
    ) -> Snapshot:
        """Run from the entry point (or resume the thread if `input` is None) and stop before `node`.

        Returns:
            The checkpoint taken before `node` would run (or the final one, if it never does).

        Raises:
            RecursionLimitError: `recursion_limit` supersteps ran and more were due.
        """
        if node not in self.graph.nodes:
            msg = f"{self.graph.name}: execute_until an unknown node {node!r}"
            raise WorkflowError(msg)
        if input is None:
            return self._run(thread_id, resume=True, until=node, limit=recursion_limit)
        return self._run(thread_id, input=input, until=node, limit=recursion_limit)

    def resume(
        self, thread_id: str, checkpoint_id: str | None = None, *, recursion_limit: int = DEFAULT_RECURSION_LIMIT
    ) -> dict[str, Any]:
        """Continue the thread from its latest checkpoint, or fork it from an older one.

        Nodes whose writes were recorded do not run again; a failed or interrupted
        superstep runs its remaining nodes. Returns the final state (or the state at
        the next interrupt). `recursion_limit` bounds the supersteps this call runs
        (a thread stopped by `RecursionLimitError` continues with a higher one).

        Raises:
            CheckpointNotFoundError: No such thread or checkpoint.
            ResumeConflictError: The thread is already running or resuming.
            NodeFailedError: A node raised again.
            RecursionLimitError: `recursion_limit` supersteps ran and more were due.
        """
        return self._run(thread_id, resume=True, from_id=checkpoint_id, limit=recursion_limit).state

    def get_state(self, thread_id: str) -> Snapshot:
        """The thread's latest checkpoint.

        Raises:
            CheckpointNotFoundError: No such thread.
        """
        snap = self.checkpointer.latest(thread_id)
        if snap is None:
            msg = f"no workflow thread {thread_id!r}"
            raise CheckpointNotFoundError(msg)
        return snap

    def get_history(self, thread_id: str, limit: int | None = None, before: str | None = None) -> list[Snapshot]:
        """The thread's checkpoints, forks included, newest first (see `Checkpointer.list`).

        Args:
            thread_id: The thread.
            limit: At most this many (default: all); a page costs the same however long the thread is.
            before: Start after this checkpoint id (the next page after its last).
        """
        return self.checkpointer.list(thread_id, limit=limit, before=before)

    def update_state(self, thread_id: str, values: Mapping[str, Any], as_node: str | None = None) -> Snapshot:
        """Write `values` into the thread's latest state (through the reducers) as a new checkpoint.

        Args:
            thread_id: The thread.
            values: The updates.
            as_node: Apply them as if written by this node: the next nodes become its
                successors. Default: the next nodes stay as they were.
        """
        if as_node is not None and as_node not in self.graph.nodes:
            msg = f"{self.graph.name}: update_state as unknown node {as_node!r}"
            raise WorkflowError(msg)
        with self.checkpointer.claim(thread_id):
            head = self._loaded(thread_id)
            changed = _merge(self.graph, head.state, [(as_node or "update_state", values)])
            new_state = {**head.state, **changed}
            rec = head.record
            nxt = self.graph.successors(as_node, new_state) if as_node else rec.scheduled
            # Writes of nodes that finished in an unfinished superstep stay pending.
            crashed = {} if as_node else head.writes
            pending = {} if as_node else {**crashed, **rec.pending}
            new = self._checkpoint(
                thread_id,
                head,
                step=rec.step + 1,
                values=changed,
                nxt=nxt,
                source="update",
                pending=pending,
                completed=list(crashed),
                nodes=head.node_writes if crashed else None,
            )
            return self.checkpointer.snapshot(new)

    # -- the engine -----------------------------------------------------------------

    def _loaded(self, thread_id: str, checkpoint_id: str | None = None) -> Head:
        head = self.checkpointer.load_head(thread_id, checkpoint_id)
        if head is None:
            msg = f"no workflow thread {thread_id!r} to continue: invoke(input, thread_id={thread_id!r}) starts it"
            raise CheckpointNotFoundError(msg)
        return head

    def _checkpoint(
        self,
        thread_id: str,
        parent: Head | None,
        *,
        step: int,
        values: Mapping[str, Any],
        nxt: list[str],
        source: str,
        completed: list[str] | None = None,
        nodes: Mapping[str, Any] | None = None,
        pending: Mapping[str, Any] | None = None,
        error: NodeError | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Head:
        ready = set(self._runnable(list(nxt))) if nxt else set()
        return self.checkpointer.write_checkpoint(
            thread_id,
            parent,
            step=step,
            values=values,
            # A join still waiting for a predecessor is kept, but is not "next".
            next=[n for n in nxt if n in ready],
            waiting=[n for n in nxt if n not in ready],
            completed=completed,
            nodes=nodes,
            pending=pending,
            error=error,
            source=source,
            meta=meta,
        )

    def _run(
        self,
        thread_id: str,
        *,
        input: Mapping[str, Any] | None = None,
        resume: bool = False,
        from_id: str | None = None,
        until: str | None = None,
        limit: int = DEFAULT_RECURSION_LIMIT,
    ) -> Snapshot:
        called = time.perf_counter()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            msg = f"recursion_limit must be an int of at least 1, got {limit!r}"
            raise InvalidArgumentError(msg)
        with self.checkpointer.claim(thread_id):
            if resume:
                base = self._loaded(thread_id, from_id)  # a damaged newest raises: name an older checkpoint_id
                rec = base.record
                # Nodes that finished before a crash: their writes were recorded but no
                # checkpoint lists them as completed yet. The resume checkpoint does.
                crashed = base.writes
                pending = {**crashed, **rec.pending} if base.is_latest else {}
                if not rec.scheduled and rec.error is None:
                    return self.checkpointer.snapshot(base)  # finished: nothing to resume
                cur = self._checkpoint(
                    thread_id,
                    base,
                    step=rec.step,
                    values={},
                    nxt=rec.scheduled,
                    pending=pending,
                    completed=list(crashed),
                    nodes=base.node_writes,
                    source="resume" if base.is_latest else "fork",
                )
                skip_interrupt = True
            else:
                assert input is not None
                latest = self.checkpointer.load_head(thread_id)
                if latest is None:
                    cur = self._checkpoint(
                        thread_id, None, step=0, values=dict(input), nxt=[self.graph.entry], source="input"
                    )
                else:
                    changed = _merge(self.graph, latest.state, [("input", input)])
                    cur = self._checkpoint(
                        thread_id,
                        latest,
                        step=latest.record.step + 1,
                        values=changed,
                        nxt=[self.graph.entry],
                        source="input",
                    )
                pending = {}
                skip_interrupt = False
            run = _Run(self, thread_id, cur.node_states)
            try:
                return self._loop(
                    run,
                    cur,
                    pending=pending,
                    skip_interrupt=skip_interrupt,
                    until=until,
                    resume_called=called if resume else None,
                    limit=limit,
                )
            finally:
                run.close()

    def _runnable(self, nxt: list[str]) -> list[str]:
        """Fan-in: a join waits while another pending node can still reach one of its predecessors."""
        ready = []
        for node in nxt:
            preds = self.graph.predecessors[node]
            waiting = len(preds) > 1 and any(
                other != node and (other in preds or preds & self.graph.reach[other]) for other in nxt
            )
            if not waiting:
                ready.append(node)
        return ready or list(nxt)

    def _loop(
        self,
        run: _Run,
        cur: Head,
        *,
        pending: dict[str, Any],
        skip_interrupt: bool,
        until: str | None,
        resume_called: float | None,
        limit: int,
    ) -> Snapshot:
        nxt = cur.record.scheduled
        step = cur.record.step
        state = dict(cur.state)
        ran = 0
        while nxt:
            runnable = self._runnable(nxt)
            if until in runnable or (not skip_interrupt and self.interrupt_before & set(runnable)):
                return self.checkpointer.snapshot(cur)
            if ran == limit:
                msg = (
                    f"{self.graph.name}: recursion limit of {limit} supersteps reached in thread {run.thread_id!r} "
                    f"(step {step}, next {runnable}); resume({run.thread_id!r}, recursion_limit=...) continues it"
                )
                raise RecursionLimitError(msg, self.checkpointer.snapshot(cur), limit)
            ran += 1
            skip_interrupt = False
            to_run = [n for n in runnable if n not in pending]
            results = run.superstep(to_run, state, cur.record.id) if to_run else {}
            if resume_called is not None and run.started:
                self.last_recovery_ms = (run.started[0] - resume_called) * 1000
            failed = [results[n] for n in to_run if results[n].error is not None]
            finished = [n for n in runnable if n in pending or results[n].error is None]
            writes = {n: (pending[n] if n in pending else results[n].writes or {}) for n in finished}
            node_states = {
                n: results[n].node_state for n in finished if n in results and results[n].node_state is not None
            }
            if failed:
                error = failed[0].error
                assert error is not None
                failed_at = self._checkpoint(
                    run.thread_id,
                    cur,
                    step=step,
                    values={},
                    nxt=nxt,
                    source="error",
                    completed=[n for n in finished if n not in pending],
                    nodes=node_states,
                    pending=writes,
                    error=error,
                )
                msg = f"{self.graph.name}: node {error.node!r} failed: {error.exc_type}: {error.message}"
                raise NodeFailedError(msg, self.checkpointer.snapshot(failed_at))
            changed = _merge(self.graph, state, [(n, writes[n]) for n in runnable])
            state.update(changed)
            following: list[str] = [n for n in nxt if n not in runnable]
            for n in runnable:
                following.extend(self.graph.successors(n, state))
            nxt = list(dict.fromkeys(following))
            step += 1
            meta = {}
            if resume_called is not None and self.last_recovery_ms is not None:
                meta["recovery_ms"] = self.last_recovery_ms
                resume_called = None
            cur = self._checkpoint(
                run.thread_id,
                cur,
                step=step,
                values=changed,
                nxt=nxt,
                source="loop",
                completed=[n for n in runnable if n not in pending],
                nodes=node_states,
                meta=meta,
            )
            pending = {}
            if self.interrupt_after & set(runnable) and nxt:
                return self.checkpointer.snapshot(cur)
        return self.checkpointer.snapshot(cur)


def unfinished(checkpointer: Checkpointer) -> list[str]:
    """The threads whose latest checkpoint is not final (interrupted, failed, or cut short by a crash).

    Reads each thread's newest checkpoint record only. A supervisor calls `resume()` on
    each after a restart.
    """
    return checkpointer.unfinished()
