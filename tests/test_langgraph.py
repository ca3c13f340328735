"""`pyactors.langgraph.SegmentSaver`: LangGraph's conformance suite, reopening, pruning, costs."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import operator
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from pyactors.errors import InvalidArgumentError, StoreLockedError
from pyactors.langgraph import SegmentSaver

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def test_import_pyactors_does_not_import_langgraph() -> None:
    code = "import sys, pyactors, pyactors.workflow; print(sorted(m for m in sys.modules if m.startswith('lang')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("missing", ["ormsgpack", "langgraph"])
def test_a_missing_dependency_of_the_langgraph_extra_names_the_extra(missing: str) -> None:
    # None in sys.modules makes the import fail as if the package were not installed.
    code = f"import sys; sys.modules[{missing!r}] = None\nimport pyactors.langgraph"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"ModuleNotFoundError: pyactors.langgraph needs {missing}, of the langgraph extra: "
        "pip install 'pyactors-durable[langgraph]'"
    ), done.stderr


def test_conformance_suite_passes_every_capability(tmp_path: Path) -> None:
    opened: list[SegmentSaver] = []

    @checkpointer_test(name="SegmentSaver")
    async def factory() -> AsyncIterator[SegmentSaver]:
        saver = SegmentSaver(tmp_path / f"store-{len(opened)}")
        opened.append(saver)
        yield saver
        saver.close()

    report = asyncio.run(validate(factory))
    failures = {name: r.failures for name, r in report.results.items() if r.passed is not True}
    assert failures == {}
    assert set(report.results) == {c.value for c in ALL_CAPABILITIES}
    assert all(r.detected and r.tests_passed > 0 for r in report.results.values())
    assert report.conformance_level() == "FULL"
    assert len(opened) == len(ALL_CAPABILITIES)  # a fresh store per capability suite


def _cfg(thread: str, checkpoint_id: str | None = None, ns: str = "") -> Any:
    c: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        c["checkpoint_id"] = checkpoint_id
    return {"configurable": c}


def _put(saver: SegmentSaver, thread: str, parent: Any, values: dict[str, Any], versions: dict[str, str]) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = values
    cp["channel_versions"] = versions
    config = parent if parent is not None else _cfg(thread)
    new = {k: v for k, v in versions.items() if k in values}
    return saver.put(config, cp, {"source": "loop", "step": len(versions)}, new)


def test_reopened_saver_reads_the_same_checkpoints_values_and_writes(tmp_path: Path) -> None:
    path = tmp_path / "lg"
    with SegmentSaver(path) as saver:
        c1 = _put(saver, "t", None, {"big": "x" * 5000, "n": 1}, {"big": "1", "n": "1"})
        c2 = _put(saver, "t", c1, {"n": 2}, {"big": "1", "n": "2"})
        saver.put_writes(c2, [("n", 3), ("log", ["a"])], task_id="task-1", task_path="p")
        before = saver.get_tuple(_cfg("t"))
        history = [t.config for t in saver.list(_cfg("t"))]
    with SegmentSaver(path) as saver:
        after = saver.get_tuple(_cfg("t"))
        assert after == before
        assert after is not None
        assert after.checkpoint["channel_values"] == {"big": "x" * 5000, "n": 2}
        assert after.pending_writes == [("task-1", "n", 3), ("task-1", "log", ["a"])]
        assert after.parent_config == c1
        assert [t.config for t in saver.list(_cfg("t"))] == history == [c2, c1]


def test_checkpoint_stores_only_the_channels_whose_version_changed(tmp_path: Path) -> None:
    with SegmentSaver(tmp_path / "lg", compression_level=1) as saver:
        big = os.urandom(200_000)  # incompressible
        c1 = _put(saver, "t", None, {"big": big, "n": 0}, {"big": "1", "n": "1"})
        grown = []
        parent = c1
        for i in range(1, 6):
            start = saver.store.stats()["bytes"]
            parent = _put(saver, "t", parent, {"n": i}, {"big": "1", "n": str(i + 1)})
            grown.append(saver.store.stats()["bytes"] - start)
        latest = saver.get_tuple(_cfg("t"))
        assert latest is not None
        assert latest.checkpoint["channel_values"] == {"big": big, "n": 5}
    assert max(grown) < 2_000, grown  # the 200 KB channel is not written again


def test_prune_keeps_the_latest_per_namespace_across_a_reopen_and_frees_space(tmp_path: Path) -> None:
    path = tmp_path / "lg"
    with SegmentSaver(path, segment_bytes=64 * 1024) as saver:
        parent = None
        for i in range(30):
            parent = _put(saver, "t", parent, {"blob": os.urandom(20_000), "i": i}, {"blob": str(i), "i": str(i)})
        saver.put_writes(parent, [("i", 99)], task_id="w")
        other = _put(saver, "other", None, {"i": 1}, {"i": "1"})
        saver.prune(["t"], strategy="keep_latest")
        report = saver.store.compact(min_dead_ratio=0.5)
        assert report.bytes_after < report.bytes_before / 3
        with pytest.raises(InvalidArgumentError, match="strategy"):
            saver.prune(["t"], strategy="keep_some")
    with SegmentSaver(path) as saver:
        kept = list(saver.list(_cfg("t")))
        assert [t.config for t in kept] == [parent]
        assert kept[0].checkpoint["channel_values"]["i"] == 29
        assert kept[0].pending_writes == [("w", "i", 99)]
        assert [t.config for t in saver.list(_cfg("other"))] == [other]


def test_a_second_saver_on_the_same_store_is_refused(tmp_path: Path) -> None:
    with SegmentSaver(tmp_path / "lg"), pytest.raises(StoreLockedError):
        SegmentSaver(tmp_path / "lg")


def test_from_conn_string_closes_the_store(tmp_path: Path) -> None:
    with SegmentSaver.from_conn_string(str(tmp_path / "lg")) as saver:
        _put(saver, "t", None, {"n": 1}, {"n": "1"})
    assert saver.store.closed
    with SegmentSaver(tmp_path / "lg") as again:
        assert [t.checkpoint["channel_values"] for t in again.list(None)] == [{"n": 1}]


def test_versions_increase_and_never_repeat_across_forks() -> None:
    saver = SegmentSaver.__new__(SegmentSaver)  # get_next_version needs no store
    v1 = saver.get_next_version(None, None)
    v2a, v2b = saver.get_next_version(v1, None), saver.get_next_version(v1, None)
    assert v1 < v2a and v1 < v2b and v2a != v2b
    assert saver.get_next_version(7, None).startswith(f"{8:032}.")  # an int version (older savers) counts on


def test_sigkilled_graph_resumes_from_its_last_checkpoint_in_a_new_process(tmp_path: Path) -> None:
    import json
    import signal

    child = [sys.executable, os.path.join(os.path.dirname(__file__), "_langgraph_child.py"), str(tmp_path / "lg"), "t"]
    proc = subprocess.Popen([*child, "run"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    started = -1
    for line in proc.stdout:  # kill it while step 5 runs: steps 0-4 are checkpointed
        started = int(line.split()[1])
        if started == 5:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert started == 5

    out = subprocess.run([*child, "resume"], capture_output=True, text=True, check=True, timeout=60).stdout
    lines = out.splitlines()
    result = json.loads(lines[-1])
    # The state the new process found is the one step 5 was given (or a later one, if
    # more steps were checkpointed before the kill landed).
    assert 5 <= result["before"]["n"] < 40
    assert result["before"]["seen"] == list(range(result["before"]["n"]))
    resumed_from = result["before"]["n"]
    assert lines[0] == f"started {resumed_from}"  # nothing checkpointed ran again
    assert result["final"] == {"n": 40, "seen": list(range(40))}


@pytest.mark.parametrize("payload", [b"\xc1not msgpack", b"\x93\x07\x01\x02", b"\x92\x01\x01"])
def test_a_header_this_saver_did_not_write_is_a_checkpoint_corrupt_error(tmp_path: Path, payload: bytes) -> None:
    from pyactors import Kind, SegmentStore
    from pyactors.errors import CheckpointCorruptError

    with SegmentStore(tmp_path / "lg") as store:
        store.append("lg/t", payload, Kind.CHECKPOINT)
    with SegmentSaver(tmp_path / "lg") as saver, pytest.raises(CheckpointCorruptError, match=r"'t'.*record 1"):
        saver.get_tuple(_cfg("t"))


def test_async_graph_runs_and_resumes_through_the_async_methods(tmp_path: Path) -> None:
    from langgraph.graph import StateGraph

    builder: StateGraph[Any] = StateGraph(int)
    builder.add_node("inc", lambda x: x + 1)
    builder.add_node("double", lambda x: x * 2)
    builder.set_entry_point("inc")
    builder.add_edge("inc", "double")
    builder.set_finish_point("double")
    cfg: Any = {"configurable": {"thread_id": "a"}}

    async def run() -> tuple[Any, Any, int]:
        async with SegmentSaver(tmp_path / "lg") as saver:
            graph = builder.compile(checkpointer=saver, interrupt_before=["double"])
            first = await graph.ainvoke(3, cfg)
            final = await graph.ainvoke(None, cfg)
            history = [s async for s in graph.aget_state_history(cfg)]
            return first, final, len(history)

    first, final, checkpoints = asyncio.run(run())
    assert (first, final) == (4, 8)
    assert checkpoints == 4  # the input, then one per superstep: __start__, inc, double


# -- bounded reads (issue 15) ---------------------------------------------------------------


class CountingStore:
    """A store that counts what the saver asks of it: calls, and records read."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: dict[str, int] = {}
        self.records = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def latest(self, *args: Any, **kwargs: Any) -> Any:
        self._count("latest")
        got = self._store.latest(*args, **kwargs)
        self.records += got is not None
        return got

    def read(self, *args: Any, **kwargs: Any) -> Any:
        self._count("read")
        for record in self._store.read(*args, **kwargs):
            self.records += 1
            yield record

    def take(self) -> tuple[dict[str, int], int]:
        out = (dict(self.calls), self.records)
        self.calls, self.records = {}, 0
        return out


V1 = Path(__file__).parent / "data" / "langgraph_v1"


def _v1() -> Any:
    """tests/data/langgraph_v1/make.py as a module (its `graph` and `STEPS`)."""
    spec = importlib.util.spec_from_file_location("langgraph_v1_make", V1 / "make.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # LangGraph reads its type hints
    spec.loader.exec_module(module)
    return module


def _cfg_run(thread: str, steps: int) -> Any:
    return {"configurable": {"thread_id": thread}, "recursion_limit": steps + 10}


def _loop_thread(path: Path, steps: int) -> None:
    """A thread of `steps` supersteps of the v1 graph (a list growing by one a step).

    LangGraph's ``durability="sync"``: each superstep's writes are stored before its next
    checkpoint, so the layout (and what a read of it costs) does not depend on timing; under
    "async" a background thread decides how many writes come late (see
    `test_the_walk_along_the_headers_lists_what_the_full_index_lists`).
    """
    with SegmentSaver(path) as saver:
        app = _v1().graph(stop=steps).compile(checkpointer=saver)
        got = app.invoke({"n": 0, "log": [], "pad": "p" * 2000}, _cfg_run("t", steps), durability="sync")
        assert got["n"] == steps


def _reads(path: Path, call: Any) -> tuple[dict[str, int], int]:
    """What `call(saver)` asks of the store, on a saver just opened (nothing in memory)."""
    from pyactors import SegmentStore

    with SegmentStore(path) as store:
        counting = CountingStore(store)
        saver = SegmentSaver(store=counting)  # type: ignore[arg-type]
        call(saver)
        return counting.take()


def test_the_newest_checkpoint_and_a_page_of_history_cost_the_same_at_10_and_at_600_supersteps(tmp_path: Path) -> None:
    costs = {}
    for steps in (10, 600):
        path = tmp_path / f"lg-{steps}"
        _loop_thread(path, steps)

        def newest(saver: SegmentSaver, steps: int = steps) -> None:
            got = saver.get_tuple(_cfg("t"))
            assert got is not None and got.checkpoint["channel_values"]["n"] == steps
            assert got.checkpoint["channel_values"]["log"] == list(range(steps))

        def page(saver: SegmentSaver, steps: int = steps) -> None:
            got = list(saver.list(_cfg("t"), limit=5))
            assert [t.checkpoint["channel_values"]["n"] for t in got] == [steps - i for i in range(5)]

        costs[steps] = (_reads(path, newest), _reads(path, page))
    assert costs[10] == costs[600], costs
    (_, records), _ = costs[600]
    assert records <= 6, costs  # the header, its 2-3 values (runs), no history


def test_a_write_to_an_older_checkpoint_is_found_by_a_page_of_history_also_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "lg"
    with SegmentSaver(path) as saver:
        c1 = _put(saver, "t", None, {"n": 1}, {"n": "1"})
        c2 = _put(saver, "t", c1, {"n": 2}, {"n": "2"})
        saver.put_writes(c1, [("n", 10)], task_id="late")  # to c1, after c2
        c3 = _put(saver, "t", c2, {"n": 3}, {"n": "3"})
        listed = {t.config["configurable"]["checkpoint_id"]: t.pending_writes for t in saver.list(_cfg("t"), limit=3)}
    assert listed[c1["configurable"]["checkpoint_id"]] == [("late", "n", 10)]
    with SegmentSaver(path) as saver:
        again = {t.config["configurable"]["checkpoint_id"]: t.pending_writes for t in saver.list(_cfg("t"), limit=3)}
        assert again == listed
        assert [t.config for t in saver.list(_cfg("t"))] == [c3, c2, c1]
        c4 = _put(saver, "t", c3, {"n": 4}, {"n": "4"})  # the next header after a reopen: still not "ordered"
        saver.put_writes(c2, [("n", 20)], task_id="late2")
    with SegmentSaver(path) as saver:
        got = {t.config["configurable"]["checkpoint_id"]: t.pending_writes for t in saver.list(_cfg("t"))}
        assert got[c1["configurable"]["checkpoint_id"]] == [("late", "n", 10)]
        assert got[c2["configurable"]["checkpoint_id"]] == [("late2", "n", 20)]
        assert [t.config for t in saver.list(_cfg("t"), limit=2)] == [c4, c3]


def test_a_store_of_format_1_headers_reads_lists_continues_and_prunes(tmp_path: Path) -> None:
    path = tmp_path / "old"
    shutil.copytree(V1 / "store", path)
    expected = json.loads((V1 / "expected.json").read_text())
    v1 = _v1()
    config = _cfg_run("t1", 100)
    with SegmentSaver(path) as saver:
        app = v1.graph().compile(checkpointer=saver)
        assert app.get_state(config).values == expected["final"]
        history = [
            {"id": h.config["configurable"]["checkpoint_id"], "values": h.values} for h in app.get_state_history(config)
        ]
        assert history == expected["history"]
        # A new run on top of the old headers, then a prune that rewrites the thread.
        longer = v1.graph(stop=20).compile(checkpointer=saver)
        final = longer.invoke({"pad": "q"}, config)
        assert final == {"n": 20, "log": list(range(20)), "pad": "q"}
        after = [h.config["configurable"]["checkpoint_id"] for h in longer.get_state_history(config)]
        assert after[-len(history) :] == [h["id"] for h in history]  # the old checkpoints, under the new ones
        assert len(after) > len(history) + 8
        saver.prune(["t1"], strategy="keep_latest")
    with SegmentSaver(path) as saver:
        assert [t.checkpoint["channel_values"]["n"] for t in saver.list(_cfg("t1"))] == [20]
    assert _reads(path, lambda s: s.get_tuple(_cfg("t1")))[1] <= 6  # after the prune: the fast path


def test_store_and_auth_key_options(tmp_path: Path) -> None:
    from pyactors import AuthenticationError, FileCheckpointer, SegmentStore

    with SegmentStore(tmp_path / "shared") as store:
        saver = SegmentSaver(store=store)
        c1 = _put(saver, "t", None, {"n": 1}, {"n": "1"})
        FileCheckpointer(store=store)  # a workflow checkpointer beside it: wf/ and lg/ streams
        saver.close()
        assert not store.closed  # not its store to close
        assert SegmentSaver(store=store).get_tuple(_cfg("t")).config == c1  # type: ignore[union-attr]
    key = b"k" * 32
    with SegmentSaver(tmp_path / "keyed", auth_key=key) as saver:
        _put(saver, "t", None, {"n": 1}, {"n": "1"})
    with pytest.raises(AuthenticationError):
        SegmentSaver(tmp_path / "keyed")
    with SegmentSaver(tmp_path / "keyed", auth_key=key) as saver:
        assert saver.get_tuple(_cfg("t")) is not None
    with pytest.raises(InvalidArgumentError, match="needs a path or a store"):
        SegmentSaver()


class FanState(TypedDict):
    """The fan-out graph's state (at module level: LangGraph resolves its type hints)."""

    n: int
    log: Annotated[list[str], operator.add]


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_the_walk_along_the_headers_lists_what_the_full_index_lists(tmp_path: Path, durability: str) -> None:
    # A graph with a fan-out (several tasks' writes per superstep) under each of LangGraph's
    # durability modes ("async" saves writes in the background, after the next checkpoint).
    from langgraph.graph import END, StateGraph

    g = StateGraph(FanState)
    g.add_node("a", lambda s: {"n": s["n"] + 1, "log": ["a"]})
    g.add_node("b", lambda s: {"log": ["b"]})
    g.add_node("c", lambda s: {"log": ["c"]})
    g.add_edge("a", "b")
    g.add_edge("a", "c")
    g.add_conditional_edges("b", lambda s: "a" if s["n"] < 8 else END)
    g.set_entry_point("a")
    path = tmp_path / "lg"
    with SegmentSaver(path) as saver:
        app = g.compile(checkpointer=saver)
        app.invoke({"n": 0, "log": []}, {"configurable": {"thread_id": "t"}}, durability=durability)
    with SegmentSaver(path) as saver:
        walked = list(saver.list(_cfg("t")))  # one namespace: along the headers
        indexed = list(saver.list({"configurable": {"thread_id": "t"}}))  # every namespace: the full index
        assert walked == indexed
        assert len(walked) >= (1 if durability == "exit" else 10)  # "exit" saves the last checkpoint only
        assert saver.get_tuple(_cfg("t")) == indexed[0]
        if durability != "exit":
            paged = list(saver.list(_cfg("t"), limit=3, before=indexed[1].config))
            assert paged == indexed[2:5]


def test_threads_of_one_saver_share_its_head_cache_safely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Eight OS threads, each driving its own LangGraph thread through put / put_writes /
    # get_tuple / list, with a head cache of two entries, so evictions interleave with
    # lookups. A stress test: the GIL makes the race it guards against (a lookup's
    # move_to_end after another thread evicted the key) rare, so it passes without the
    # guard too; it checks that evictions under load lose no write and no checkpoint.
    import threading

    import pyactors.langgraph as lg

    monkeypatch.setattr(lg, "_HEADS_CACHED", 2)
    errors: list[BaseException] = []
    with SegmentSaver(tmp_path / "lg") as saver:

        def drive(name: str) -> None:
            try:
                parent = None
                for i in range(40):
                    parent = _put(saver, name, parent, {"n": i}, {"n": f"{i + 1:04}"})
                    saver.put_writes(parent, [("n", i * 10)], task_id=f"task-{i}")
                    got = saver.get_tuple(_cfg(name))
                    assert got is not None and got.checkpoint["channel_values"] == {"n": i}
                    assert got.pending_writes == [(f"task-{i}", "n", i * 10)]
                    assert len(list(saver.list(_cfg(name), limit=3))) == min(3, i + 1)
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=drive, args=(f"t{k}",)) for k in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        assert errors == []
        for k in range(8):
            assert [t.checkpoint["channel_values"]["n"] for t in saver.list(_cfg(f"t{k}"), limit=2)] == [39, 38]
