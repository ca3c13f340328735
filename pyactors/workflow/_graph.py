"""Workflow graphs: nodes, edges, conditional edges, reducers, and their validation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from pyactors.actor import PersistentActor
from pyactors.errors import WorkflowError

if TYPE_CHECKING:
    from pyactors.workflow._checkpoint import Checkpointer
    from pyactors.workflow._runner import CompiledWorkflow

__all__ = ["END", "Workflow"]

END = "__end__"
"""The end of a branch: an edge to `END` ends it."""

State = dict[str, Any]
NodeFn = Callable[[State], Mapping[str, Any] | None]
Router = Callable[[State], str | list[str]]
Reducer = Callable[[Any, Any], Any]


class _Branch(NamedTuple):
    router: Router
    mapping: Mapping[str, str] | None

    def targets(self) -> set[str]:
        """Every node the router may send to (for validation and fan-in)."""
        return set(self.mapping.values()) if self.mapping is not None else set()


class Graph(NamedTuple):
    """A validated graph, as `Workflow.compile()` hands it to the runner."""

    name: str
    nodes: Mapping[str, NodeFn | type[PersistentActor]]
    edges: Mapping[str, tuple[str, ...]]
    branches: Mapping[str, _Branch]
    entry: str
    reducers: Mapping[str, Reducer]
    predecessors: Mapping[str, frozenset[str]]
    reach: Mapping[str, frozenset[str]]
    """For each node, every node reachable from it (itself excluded unless on a cycle)."""

    def successors(self, node: str, state: State) -> list[str]:
        """The nodes to run after `node`, given the state after its superstep."""
        out = list(self.edges.get(node, ()))
        branch = self.branches.get(node)
        if branch is not None:
            picked = branch.router(state)
            keys = [picked] if isinstance(picked, str) else list(picked)
            for key in keys:
                if branch.mapping is None:
                    target = key
                elif key in branch.mapping:
                    target = branch.mapping[key]
                else:
                    msg = f"{self.name}: router of {node!r} returned {key!r}, not one of {sorted(branch.mapping)}"
                    raise WorkflowError(msg)
                if target != END and target not in self.nodes:
                    msg = f"{self.name}: router of {node!r} sent to unknown node {target!r}"
                    raise WorkflowError(msg)
                out.append(target)
        return [t for t in dict.fromkeys(out) if t != END]


class Workflow:
    """A workflow graph under construction; `compile()` it to run it.

    Args:
        name: The workflow's name (used in logs and errors).
        reducers: For some state keys, how a write merges with the current value
            (`f(current, written) -> merged`, e.g. `operator.add` for lists); the
            other keys take the last write.
    """

    def __init__(self, name: str, reducers: Mapping[str, Reducer] | None = None) -> None:
        self.name = name
        self._reducers = dict(reducers or {})
        self._nodes: dict[str, NodeFn | type[PersistentActor]] = {}
        self._edges: dict[str, list[str]] = {}
        self._branches: dict[str, _Branch] = {}
        self._entry: str | None = None

    def add_node(self, name: str, node: NodeFn | type[PersistentActor]) -> Workflow:
        """Add a node: a function `state -> updates`, or a `PersistentActor` subclass with `run(state)`.

        Raises:
            WorkflowError: The name is taken or reserved, or `node` is neither.
        """
        if name in self._nodes:
            msg = f"{self.name}: node {name!r} is added twice"
            raise WorkflowError(msg)
        if name == END or not name:
            msg = f"{self.name}: {name!r} cannot be a node name"
            raise WorkflowError(msg)
        stateful = isinstance(node, type) and issubclass(node, PersistentActor)
        if stateful and not callable(getattr(node, "run", None)):
            msg = f"{self.name}: stateful node {name!r} ({node.__name__}) needs a run(self, state) method"
            raise WorkflowError(msg)
        if not stateful and (isinstance(node, type) or not callable(node)):
            msg = f"{self.name}: node {name!r} must be a function or a PersistentActor subclass, not {node!r}"
            raise WorkflowError(msg)
        self._nodes[name] = node
        return self

    def add_edge(self, start: str, end: str) -> Workflow:
        """Run `end` after `start` (several edges out of a node fan out)."""
        self._edges.setdefault(start, []).append(end)
        return self

    def add_conditional_edges(self, start: str, router: Router, mapping: Mapping[str, str] | None = None) -> Workflow:
        """After `start`, run what `router(state)` picks (a key of `mapping`, or a list of keys).

        Without `mapping`, the router returns node names (or `END`).
        """
        self._branches[start] = _Branch(router, None if mapping is None else dict(mapping))
        return self

    def set_entry_point(self, name: str) -> Workflow:
        """Make `name` the first node."""
        self._entry = name
        return self

    def set_finish_point(self, name: str) -> Workflow:
        """End the run after `name` (an edge to `END`)."""
        return self.add_edge(name, END)

    def compile(
        self,
        checkpointer: Checkpointer | None = None,
        interrupt_before: list[str] | tuple[str, ...] = (),
        interrupt_after: list[str] | tuple[str, ...] = (),
    ) -> CompiledWorkflow:
        """Validate the graph and return the runnable app.

        Args:
            checkpointer: Where checkpoints go (default: a new `MemoryCheckpointer`).
            interrupt_before: Stop before a superstep that would run one of these.
            interrupt_after: Stop after a superstep in which one of these ran.

        Raises:
            WorkflowError: Naming the culprit: an unknown node in an edge or an
                interrupt, an unreachable node, a missing entry point.
        """
        from pyactors.workflow._checkpoint import MemoryCheckpointer
        from pyactors.workflow._runner import CompiledWorkflow

        graph = self._validated()
        for node in (*interrupt_before, *interrupt_after):
            if node not in graph.nodes:
                msg = f"{self.name}: interrupt on unknown node {node!r}"
                raise WorkflowError(msg)
        return CompiledWorkflow(
            graph,
            checkpointer if checkpointer is not None else MemoryCheckpointer(),
            frozenset(interrupt_before),
            frozenset(interrupt_after),
        )

    def _validated(self) -> Graph:
        entry = self._check_entry()
        out = self._successor_sets()
        succ = {n: frozenset(t for t in ts if t != END) for n, ts in out.items()}
        # A router without a mapping may send anywhere: everything is reachable through it.
        dynamic = frozenset(n for n, b in self._branches.items() if b.mapping is None)
        reach = {n: _reachable(n, succ, dynamic) for n in succ}
        reachable = {entry} | reach[entry]
        for n in self._nodes:
            if n not in reachable:
                msg = f"{self.name}: node {n!r} is unreachable from the entry point {entry!r}"
                raise WorkflowError(msg)
        preds: dict[str, set[str]] = {n: set() for n in self._nodes}
        for n, ts in succ.items():
            for t in ts:
                preds[t].add(n)
        return Graph(
            name=self.name,
            nodes=dict(self._nodes),
            edges={s: tuple(e) for s, e in self._edges.items()},
            branches=dict(self._branches),
            entry=entry,
            reducers=dict(self._reducers),
            predecessors={n: frozenset(p) for n, p in preds.items()},
            reach=reach,
        )

    def _check_entry(self) -> str:
        if self._entry is None:
            msg = f"{self.name}: no entry point (call set_entry_point)"
            raise WorkflowError(msg)
        if self._entry not in self._nodes:
            msg = f"{self.name}: entry point {self._entry!r} is not a node"
            raise WorkflowError(msg)
        return self._entry

    def _successor_sets(self) -> dict[str, set[str]]:
        """Every node's possible successors (END included); unknown names are errors."""
        out: dict[str, set[str]] = {n: set() for n in self._nodes}
        edges = [(s, e, "edge") for s, ends in self._edges.items() for e in ends]
        edges += [(s, t, "conditional edge") for s, b in self._branches.items() for t in b.targets()]
        for start, end, what in edges:
            for n in (start, end):
                if n not in self._nodes and not (n == END and n == end):
                    msg = f"{self.name}: {what} {start!r} -> {end!r} names unknown node {n!r}"
                    raise WorkflowError(msg)
            out[start].add(end)
        for start in self._branches:
            if start not in self._nodes:
                msg = f"{self.name}: conditional edges from unknown node {start!r}"
                raise WorkflowError(msg)
        return out


def _reachable(start: str, succ: Mapping[str, frozenset[str]], dynamic: frozenset[str]) -> frozenset[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        n = todo.pop()
        if n in dynamic:
            return frozenset(succ)
        for t in succ[n]:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return frozenset(seen)
