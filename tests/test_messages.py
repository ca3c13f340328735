"""The errors a newcomer meets (issue 19): each says what happened in the user's words and what to do.

Also the namespaces of one store: actors' persistence ids cannot take the prefixes of
workflow threads (``wf/``) or LangGraph threads (``lg/``), so none writes into another's.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pykka
import pytest

from pyactors import (
    END,
    CheckpointNotFoundError,
    FileCheckpointer,
    InvalidArgumentError,
    MemoryCheckpointer,
    PersistentActor,
    SegmentStore,
    StoreIOError,
    Workflow,
)
from pyactors.store import LANGGRAPH_PREFIX, LANGGRAPH_VALUE_KIND, RESERVED_PREFIXES, WORKFLOW_PREFIX, Kind

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from pyactors import Checkpointer


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def _one_node() -> Workflow:
    wf = Workflow("one")
    wf.add_node("a", lambda s: {"x": s["x"] + 1})
    wf.set_entry_point("a")
    wf.add_edge("a", END)
    return wf


@pytest.fixture(params=["memory", "file"])
def checkpointer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Checkpointer]:
    cp: Checkpointer = MemoryCheckpointer() if request.param == "memory" else FileCheckpointer(tmp_path / "s")
    with cp:
        yield cp


def test_resuming_an_unknown_thread_says_how_to_start_one(checkpointer: Checkpointer) -> None:
    app = _one_node().compile(checkpointer=checkpointer)
    with pytest.raises(CheckpointNotFoundError) as info:
        app.resume("nope")
    assert str(info.value) == "no workflow thread 'nope' to continue: invoke(input, thread_id='nope') starts it"


def test_a_langgraph_style_config_as_thread_id_says_where_the_id_is(checkpointer: Checkpointer) -> None:
    app = _one_node().compile(checkpointer=checkpointer)
    config: Any = {"configurable": {"thread_id": "t"}}
    with pytest.raises(InvalidArgumentError, match=r"pass thread_id=config\['configurable'\]\['thread_id'\]"):
        app.invoke({"x": 0}, config)
    assert app.invoke({"x": 0}, thread_id="t") == {"x": 1}


@pytest.mark.parametrize(
    ("thread_id", "says"),
    [
        ("t" * 253, "thread id must be 1 to 252 UTF-8 bytes, got 253"),
        ("é" * 127, "thread id must be 1 to 252 UTF-8 bytes, got 254"),
        ("", "thread id must be 1 to 252 UTF-8 bytes, got 0"),
        (7, "thread id must be a str of 1 to 252 UTF-8 bytes, got int 7"),
        ("\udc80", "thread id must be valid UTF-8 text"),
    ],
)
def test_a_thread_id_out_of_its_limits_reports_its_own_limit(
    checkpointer: Checkpointer, thread_id: Any, says: str
) -> None:
    # The same in memory and on disk (the internal `wf/` prefix takes 3 of the 255 bytes).
    app = _one_node().compile(checkpointer=checkpointer)
    with pytest.raises(InvalidArgumentError, match="^" + says):
        app.invoke({"x": 0}, thread_id=thread_id)
    with pytest.raises(InvalidArgumentError, match="^" + says):
        app.get_state(thread_id)
    assert app.invoke({"x": 0}, thread_id="t" * 252) == {"x": 1}


class Named(PersistentActor):
    """An actor with nothing of its own."""


@pytest.mark.parametrize("prefix", RESERVED_PREFIXES)
def test_a_persistence_id_cannot_take_a_workflow_or_langgraph_prefix(store: SegmentStore, prefix: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"starts with '{prefix}', the prefix of the store's"):
        Named.start(persistence_id=prefix + "t1", store=store)
    assert store.streams() == []  # nothing written into the thread's stream


def test_an_actor_a_workflow_thread_and_a_langgraph_thread_of_one_name_keep_apart(store: SegmentStore) -> None:
    ref = Named.start(persistence_id="t1", store=store)
    ref.ask("hello")
    ref.stop()
    app = _one_node().compile(checkpointer=FileCheckpointer(store=store))
    assert app.invoke({"x": 0}, thread_id="t1") == {"x": 1}
    assert sorted(store.streams()) == sorted(["t1", WORKFLOW_PREFIX + "t1"])
    assert [s.state for s in app.get_history("t1")] == [{"x": 1}, {"x": 0}]


def test_a_persistence_id_too_long_reports_the_limit(store: SegmentStore) -> None:
    with pytest.raises(InvalidArgumentError, match=r"^Named's persistence id must be 1 to 255 UTF-8 bytes, got 256$"):
        Named.start(persistence_id="a" * 256, store=store)


def test_a_misspelt_start_keyword_is_a_type_error_naming_it(store: SegmentStore) -> None:
    class Defaulted(PersistentActor):
        persistence_id = "the-default"

    with pytest.raises(
        TypeError, match=r"unexpected keyword argument 'persistance_id' \(did you mean persistence_id=\?\)"
    ):
        Defaulted.start(persistance_id="counter-1", store=store)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes no positional arguments, got 1"):
        Defaulted.start(5, store=store)
    assert store.streams() == []  # the class default stream was not touched


def test_forgetting_super_init_says_so(store: SegmentStore) -> None:
    class Forgetful(PersistentActor):
        def __init__(self) -> None:
            self.count = 0

    with pytest.raises(TypeError, match=r"^Forgetful.__init__ must call super\(\).__init__\(\)"):
        Forgetful.start(persistence_id="f", store=store)


def test_opening_a_store_on_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    for read_only in (False, True):
        with pytest.raises(StoreIOError, match="is a file, not a store directory") as info:
            SegmentStore(path, read_only=read_only)
        assert info.value.errno == errno.ENOTDIR
    assert path.read_text() == "mine"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyactors", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_inspecting_an_empty_directory_says_it_is_not_a_store(tmp_path: Path) -> None:
    out = _cli("inspect", str(tmp_path))
    assert out.returncode == 1
    assert f"{tmp_path} is not a pyactors store: it holds no segment file" in out.stderr


def test_inspect_names_segment_savers_values(tmp_path: Path) -> None:
    # Written as SegmentSaver lays a thread out (no LangGraph needed for the names).
    with SegmentStore(tmp_path / "s") as store:
        store.append_many(
            [
                (LANGGRAPH_PREFIX + "t", b"value", LANGGRAPH_VALUE_KIND),
                (LANGGRAPH_PREFIX + "t", b"header", Kind.CHECKPOINT),
                ("mine", b"user record", LANGGRAPH_VALUE_KIND),
            ]
        )
    report = json.loads(_cli("inspect", str(tmp_path / "s"), "--json").stdout)
    kinds = {s["stream"]: sorted(s["kinds"]) for s in report["streams"]}
    assert kinds == {"lg/t": ["checkpoint", "lg-value"], "mine": ["user:16"]}
