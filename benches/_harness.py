"""What every benchmark script shares: running its sections and reporting the result."""

from __future__ import annotations

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


def run_sections(
    name: str,
    sections: Mapping[str, Callable[[Any, str], None]],
    cfg: Any,
    *,
    only: Sequence[str] | None,
    json_path: str | None,
    results: list[dict[str, Any]],
    problems: list[str],
    problem: Callable[[str], None],
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
    targets = [r for r in results if r.get("met") is not None]
    met = sum(1 for r in targets if r["met"])
    print(
        f"\ntargets met: {met}/{len(targets)}; problems: {len(problems)}; total {elapsed:.0f} s; "
        f"load average now {os.getloadavg()[0]:.2f}"
    )
    for p in problems:
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
                    "results": results,
                    "problems": problems,
                },
                f,
                indent=2,
            )
    return 1 if problems else 0
