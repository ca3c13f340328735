"""Shared fixtures of the pyactors test suite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
