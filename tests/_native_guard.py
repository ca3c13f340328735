"""A pytest plugin (loaded by conftest): no skip can hide a missing or broken native build.

Two guards:

* Before any test is collected, the native module must import and work: a store is
  opened, a compressible record appended (zstd, CRC, fdatasync) and read back, and the
  dev build's fault layer (`pyactors._core.FaultFs`) must be there, and it must be the
  only native module beside the package (a stale second build could be the one Python
  imports). Anything else ends the run at once with a non-zero status, naming what is wrong.
* A skip (or xfail) fails the run unless it was made by `skip_for_environment`: the one
  kind of skip allowed is a test that needs what this machine cannot give it (a mount,
  a tool), never one that needs pyactors itself. A plain ``pytest.skip`` fails the run
  even with the same words, and so does `skip_for_environment` called while an
  exception is being handled (an error is never the machine's limit). Skips at
  collection count as well (``pytest.importorskip`` of a module that does not import).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from _pytest.reports import CollectReport, TestReport

ENVIRONMENT = "environment: "
"""The prefix of every skip reason `skip_for_environment` gives."""

_allowed: set[str] = set()
"""The reasons of the skips `skip_for_environment` made: the only ones allowed."""
_hidden: list[str] = []


def skip_for_environment(reason: str) -> NoReturn:
    """Skip the test because this machine lacks something it needs (never pyactors itself).

    Called while an exception is being handled, it fails the test instead: whatever
    raised may be pyactors, and a skip must not hide it.
    """
    handling = sys.exc_info()[1]
    if handling is not None:
        pytest.fail(f"skip_for_environment({reason!r}) while handling {handling!r}: an error is not a skip")
    _allowed.add(ENVIRONMENT + reason)
    pytest.skip(ENVIRONMENT + reason)


def native_smoke_check() -> None:
    """Exercise the native module end to end; raise whatever a broken build raises."""
    from pyactors import Kind, SegmentStore, _core

    if not hasattr(_core, "FaultFs"):
        msg = "pyactors._core lacks FaultFs: the tests need the dev build (make build)"
        raise ImportError(msg)
    # Two builds side by side (say a CPython-specific one left over from before the abi3
    # wheel): Python imports one by its suffix order, maybe the stale one.
    here = Path(_core.__file__ or "").parent
    builds = sorted(p.name for p in here.glob("_core.*") if p.suffix in {".so", ".pyd"})
    if len(builds) > 1:
        msg = f"{len(builds)} native modules in {here} ({', '.join(builds)}): the one imported may be stale"
        raise ImportError(msg)
    payload = b"native smoke check " * 64  # long and repetitive: stored zstd-compressed
    with tempfile.TemporaryDirectory() as d:
        with SegmentStore(d, durability="sync") as store:
            seq = store.append("smoke", payload, Kind.MESSAGE)
        with SegmentStore(d, read_only=True) as store:
            record = store.latest("smoke", Kind.MESSAGE)
            if record is None or record.seq != seq or record.payload != payload:
                msg = f"pyactors._core did not read back what it wrote: {record!r}"
                raise AssertionError(msg)
            if not store.verify().ok:
                msg = "pyactors._core finds its own fresh store damaged"
                raise AssertionError(msg)


def pytest_sessionstart(session: pytest.Session) -> None:
    """End the run before collection if the native module is missing or broken."""
    try:
        native_smoke_check()
    except Exception as exc:  # any failure of the build ends the run, named
        pytest.exit(f"the native module is missing or broken: {type(exc).__name__}: {exc}", returncode=3)


def _reason(report: TestReport | CollectReport) -> str:
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail is not None:
        return f"xfail: {wasxfail}"
    if isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def _note(report: TestReport | CollectReport) -> None:
    if report.skipped:
        reason = _reason(report)
        if reason not in _allowed:
            _hidden.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report: TestReport) -> None:
    """Remember a test's skip that `skip_for_environment` did not make."""
    _note(report)


def pytest_collectreport(report: CollectReport) -> None:
    """Remember a skip at collection (never made by `skip_for_environment`)."""
    _note(report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the skips that fail the run."""
    if _hidden:
        terminalreporter.section("skips that could hide a broken build (each fails the run)", red=True)
        for line in _hidden:
            terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a run that skipped anything `skip_for_environment` did not."""
    if _hidden and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
