"""Shared fixtures of the pyactors test suite."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

import pykka
import pytest

# Imported at module level on purpose: if the native module is missing, the whole
# run fails at collection instead of skipping anything; `_native_guard` also fails a
# build that imports but does not work, and any skip whose reason is not the machine's.
from pyactors import SegmentStore

pytest_plugins = ["_native_guard"]

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from pyactors.workflow import FileCheckpointer, MemoryCheckpointer

# The helper modules hold assertions too: give them pytest's detailed messages.
pytest.register_assert_rewrite("_util", "_segfile", "_workflows", "_faults")


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A store directory that does not exist yet."""
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path) -> Iterator[SegmentStore]:
    """An open store with the default options, closed after the test."""
    with SegmentStore(store_path) as s:
        yield s


@pytest.fixture
def open_store(store_path: Path) -> Iterator[Callable[..., SegmentStore]]:
    """A factory opening `store_path` with options; every store it opened is closed after the test."""
    opened: list[SegmentStore] = []

    def factory(path: Path | None = None, **options: Any) -> SegmentStore:
        s = SegmentStore(store_path if path is None else path, **options)
        opened.append(s)
        return s

    yield factory
    for s in opened:
        s.close()


# -- actors ----------------------------------------------------------------------------
# The actor tests use these instead of `store`/`open_store`: their teardown stops every
# pykka actor (and so every supervisor and persistent actor) *before* closing the store,
# so that a snapshot on stop never meets a closed store and no actor thread outlives
# its test.


@pytest.fixture
def _clear_events() -> Iterator[None]:
    """Empty the actors' event log (`_actors.EVENTS`) before and after the test."""
    from _actors import EVENTS

    EVENTS.clear()
    yield
    EVENTS.clear()


@pytest.fixture
def _gc_disabled() -> Iterator[None]:
    """No automatic garbage collection during the test: what is freed is freed by refcount."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def _stop_all() -> Iterator[None]:
    """Stop every pykka actor after the test (for tests that start actors without a store)."""
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def actor_store(store_path: Path) -> Iterator[SegmentStore]:
    """An open store for actors; every actor is stopped, then the store closed, after the test."""
    with SegmentStore(store_path) as s:
        try:
            yield s
        finally:
            pykka.ActorRegistry.stop_all()


@pytest.fixture
def open_actor_store(store_path: Path) -> Iterator[Callable[..., SegmentStore]]:
    """`open_store` for actors: every actor is stopped before the stores it opened are closed."""
    opened: list[SegmentStore] = []

    def factory(path: Path | None = None, **options: Any) -> SegmentStore:
        s = SegmentStore(store_path if path is None else path, **options)
        opened.append(s)
        return s

    try:
        yield factory
    finally:
        pykka.ActorRegistry.stop_all()
        for s in opened:
            s.close()


# -- workflows -------------------------------------------------------------------------
# The workflow modules are imported inside the fixtures, so that a broken workflow
# package fails the workflow tests, not the collection of every other test.


@pytest.fixture
def checkpoint_path(tmp_path: Path) -> Path:
    """The directory of a `FileCheckpointer`'s store (does not exist yet)."""
    return tmp_path / "checkpoints"


@pytest.fixture
def _workflow_reset() -> Iterator[None]:
    """Forget the calls, spans, failures and gates of `_workflows`; stop every actor after the test."""
    import _workflows

    _workflows.reset()
    try:
        yield
    finally:
        for gate in list(_workflows.GATES.values()):
            gate.set()
        pykka.ActorRegistry.stop_all()
        _workflows.reset()


@pytest.fixture
def file_checkpointer(checkpoint_path: Path, _workflow_reset: None) -> Iterator[FileCheckpointer]:
    """A `FileCheckpointer` on `checkpoint_path`, closed after the test (after every actor stopped)."""
    from pyactors import FileCheckpointer

    with FileCheckpointer(checkpoint_path) as cp:
        try:
            yield cp
        finally:
            pykka.ActorRegistry.stop_all()


@pytest.fixture(params=["file", "memory"])
def checkpointer(
    request: pytest.FixtureRequest, checkpoint_path: Path, _workflow_reset: None
) -> Iterator[FileCheckpointer | MemoryCheckpointer]:
    """Each checkpointer in turn: a `FileCheckpointer` on `checkpoint_path`, a `MemoryCheckpointer`."""
    from pyactors import FileCheckpointer, MemoryCheckpointer

    cp = FileCheckpointer(checkpoint_path) if request.param == "file" else MemoryCheckpointer()
    try:
        yield cp
    finally:
        pykka.ActorRegistry.stop_all()
        cp.close()
