"""`pyactors.langgraph.SegmentSaver`: LangGraph's conformance suite, reopening, pruning, costs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from pyactors.errors import InvalidArgumentError, StoreLockedError
from pyactors.langgraph import SegmentSaver

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


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
