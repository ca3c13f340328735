"""What every benchmark script shares: running its sections and reporting the result."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

RESULTS: list[dict[str, Any]] = []
"""Every figure of this run (one benchmark script per process), written by --json."""
PROBLEMS: list[str] = []
"""Misbehaviour seen during the run: the run exits 1 if there is any."""


def problem(msg: str) -> None:
    """Record (and print) a problem of the run."""
    PROBLEMS.append(msg)
    print(f"  !! {msg}", flush=True)


def parse_args(doc: str, sections: Sequence[str], quick_help: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """The options every benchmark takes: --quick, --json PATH, --only SECTION."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--only", choices=sorted(sections), action="append", help="run only these sections")
    return parser.parse_args(argv)


def run_sections(
    name: str,
    sections: Mapping[str, Callable[[Any, str], None]],
    cfg: Any,
    *,
    only: Sequence[str] | None,
    json_path: str | None,
    extra: Mapping[str, Any] | None = None,
    after_error: Callable[[], None] | None = None,
) -> int:
    """Run the chosen sections in a scratch directory, print the targets met, write JSON.

    A section that raises is a problem (reported, and the run exits 1), not a crash
    of the whole benchmark. Returns the exit status.
    """
    started = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix=f"pyactors-{name}-")
    try:
        for section, fn in sections.items():
            if only and section not in only:
                continue
            try:
                fn(cfg, tmp)
            except Exception as exc:
                problem(f"{section}: {type(exc).__name__}: {exc}")
                traceback.print_exc()
                if after_error is not None:
                    after_error()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    targets = [r for r in RESULTS if r.get("met") is not None]
    met = sum(1 for r in targets if r["met"])
    print(
        f"\ntargets met: {met}/{len(targets)}; problems: {len(PROBLEMS)}; total {elapsed:.0f} s; "
        f"load average now {os.getloadavg()[0]:.2f}"
    )
    for p in PROBLEMS:
        print(f"  problem: {p}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(
                {
                    "bench": name,
                    "quick": cfg.quick,
                    "config": asdict(cfg),
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "threads_at_end": threading.active_count(),
                    "elapsed_s": elapsed,
                    **(extra or {}),
                    "results": RESULTS,
                    "problems": PROBLEMS,
                },
                f,
                indent=2,
            )
    return 1 if PROBLEMS else 0
