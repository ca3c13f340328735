"""The demo (``make demo``) runs end to end: kill -9 of the worker, restart, resume, exit status 0."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def test_demo_recovers_from_sigkill(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pyactors.demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert "SIGKILL" in out
    assert "restarted by the ProcessSupervisor" in out
    assert "resumes report-1" in out
    assert "- only the node(s) in flight at the kill" in out  # normally parse_b, parse_c
    assert "recovery: spawn -> " in out and "next node running" in out
    assert "worker 'flow' restarted (killed by SIGKILL): ready in" in out
    assert "equals an uninterrupted run's final state" in out
    assert out.rstrip().splitlines()[-1].startswith("OK: ")
    # The side file (kept with --dir) shows every node finishing, in two lives.
    log = (tmp_path / "demo" / "store" / "nodes.log").read_text().splitlines()
    assert {line.split()[3] for line in log if line.startswith("end ")} == {
        "fetch",
        "parse_a",
        "parse_b",
        "parse_c",
        "merge",
        "report",
    }
    assert len({line.split()[1] for line in log}) == 2
