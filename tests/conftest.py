"""Shared fixtures of the pyactors test suite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pykka
import pytest

# Imported at module level on purpose: if the native module is missing, the whole
# run fails at collection instead of skipping anything.
from pyactors import SegmentStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

# The helper modules hold assertions too: give them pytest's detailed messages.
pytest.register_assert_rewrite("_util", "_segfile")


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
