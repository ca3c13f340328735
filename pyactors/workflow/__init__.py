"""Workflows: graphs of node actors run in supersteps, checkpointed after each.

See ``docs/WORKFLOWS.md``. The public names are re-exported from `pyactors`.
"""

from __future__ import annotations

from pyactors.workflow._checkpoint import (
    Checkpointer,
    FileCheckpointer,
    Head,
    MemoryCheckpointer,
    NodeError,
    Snapshot,
)
from pyactors.workflow._graph import END, Workflow
from pyactors.workflow._record import CheckpointRecord
from pyactors.workflow._runner import DEFAULT_RECURSION_LIMIT, CompiledWorkflow, unfinished

__all__ = [
    "DEFAULT_RECURSION_LIMIT",
    "END",
    "CheckpointRecord",
    "Checkpointer",
    "CompiledWorkflow",
    "FileCheckpointer",
    "Head",
    "MemoryCheckpointer",
    "NodeError",
    "Snapshot",
    "Workflow",
    "unfinished",
]
