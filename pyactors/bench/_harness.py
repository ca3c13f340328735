"""What every area of the suite shares: statistics, alternating runs, and the run's results.

A figure is one arm's samples summarised (run count, median, p99, min, max); a
comparison is a contender's figure against a baseline's from the same run, with the
ratio of the medians; a target is one line of the issue's targets table, met or
missed. Everything lands in `RESULTS`, which the suite turns into ``results.json``
and ``REPORT.md`` (schema: docs/BENCHMARKS.md).
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "NS",
    "RESULTS",
    "Rate",
    "Results",
    "Times",
    "alternate",
    "child_env",
    "compare",
    "figure",
    "monotonic_ns",
    "percentile",
    "problem",
    "skip",
    "summary",
    "target",
    "verdict",
]

NS = 1_000_000_000


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `values`, with linear interpolation."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: Sequence[float], *, higher_is_better: bool = False) -> dict[str, Any]:
    """Run count, median, p99, min and max of `values`.

    p99 is the slow tail: the 99th percentile of a time, the 1st percentile of a rate
    (``higher_is_better``).
    """
    return {
        "runs": len(values),
        "median": statistics.median(values),
        "p99": percentile(values, 1 if higher_is_better else 99),
        "min": min(values),
        "max": max(values),
    }


@dataclass
class Rate:
    """Throughput samples: items and nanoseconds per round."""

    records: list[int] = field(default_factory=list)
    ns: list[int] = field(default_factory=list)

    def add(self, records: int, ns: int) -> None:
        """One round: `records` items in `ns` nanoseconds."""
        self.records.append(records)
        self.ns.append(max(ns, 1))

    @property
    def runs(self) -> int:
        """Rounds so far."""
        return len(self.ns)

    def per_s(self) -> list[float]:
        """Items per second, one value per round."""
        return [r * NS / t for r, t in zip(self.records, self.ns, strict=True)]

    @property
    def median(self) -> float:
        """Median items per second."""
        return statistics.median(self.per_s())

    @property
    def p99(self) -> float:
        """Slow tail: the rate at the 99th percentile of time per item."""
        per_rec = [t / r for r, t in zip(self.records, self.ns, strict=True)]
        return NS / percentile(per_rec, 99)

    def summary(self, scale: float = 1.0) -> dict[str, Any]:
        """`summary` of the per-round rates times `scale` (e.g. bytes per item for MB/s)."""
        out = summary([x * scale for x in self.per_s()], higher_is_better=True)
        out["p99"] = self.p99 * scale
        return out


@dataclass
class Times:
    """Latency samples in nanoseconds."""

    ns: list[int] = field(default_factory=list)

    @property
    def runs(self) -> int:
        """Samples so far."""
        return len(self.ns)

    @property
    def median_ms(self) -> float:
        """Median in milliseconds."""
        return statistics.median(self.ns) / 1e6

    @property
    def p99_ms(self) -> float:
        """99th percentile in milliseconds."""
        return percentile(self.ns, 99) / 1e6

    def summary(self) -> dict[str, Any]:
        """`summary` in milliseconds."""
        return summary([x / 1e6 for x in self.ns])


@dataclass
class Results:
    """Everything one run of the suite found (see docs/BENCHMARKS.md for the schema)."""

    figures: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sections: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each ``area.section``."""
    area: str = ""
    """The area running now (set by the suite)."""

    def clear(self) -> None:
        """Forget everything (a new run)."""
        self.__init__()  # type: ignore[misc]


RESULTS = Results()
"""The results of the run in progress."""


def problem(msg: str) -> None:
    """Record (and print) misbehaviour seen during the run: the run exits 1 if there is any."""
    RESULTS.problems.append(msg)
    print(f"  !! {msg}", flush=True)


def skip(what: str, reason: str) -> None:
    """Record a comparison that did not run, and why."""
    RESULTS.skipped.append({"area": RESULTS.area, "what": what, "reason": reason})
    print(f"  -- skipped {what}: {reason}", flush=True)


def figure(name: str, arm: str, unit: str, stats: dict[str, Any], **params: Any) -> dict[str, Any]:
    """Record one arm's figure (`stats` from `summary`); return it."""
    fig = {"area": RESULTS.area, "name": name, "arm": arm, "unit": unit, "params": params, **stats}
    RESULTS.figures.append(fig)
    return fig


def compare(
    name: str,
    unit: str,
    contender: tuple[str, dict[str, Any]],
    baseline: tuple[str, dict[str, Any]],
    *,
    higher_is_better: bool,
    **params: Any,
) -> float:
    """Record both figures and their comparison; return the ratio contender / baseline of the medians."""
    a = figure(name, contender[0], unit, contender[1], **params)
    b = figure(name, baseline[0], unit, baseline[1], **params)
    ratio = a["median"] / b["median"] if b["median"] else math.inf
    RESULTS.comparisons.append(
        {
            "area": RESULTS.area,
            "name": name,
            "unit": unit,
            "params": params,
            "contender": a,
            "baseline": b,
            "ratio": ratio,
            "higher_is_better": higher_is_better,
        }
    )
    return ratio


def verdict(ok: bool | None) -> str:
    """The word for a target's outcome: "met", "MISSED", or "" when there is no target."""
    return "" if ok is None else ("met" if ok else "MISSED")


def target(key: str, goal: str, measured: str, met: bool, note: str = "") -> None:
    """Record one line of the targets table (and print it)."""
    RESULTS.targets.append(
        {"key": key, "area": RESULTS.area, "goal": goal, "measured": measured, "met": met, "note": note}
    )
    print(f"target {goal}: {measured} {verdict(met)}", flush=True)


def alternate(arms: Sequence[Callable[[], None]], rounds: int) -> None:
    """Run each arm `rounds` times, order rotated every round, so that drift hits every arm.

    A full garbage collection (not timed) before each arm: every arm starts with the
    same collector state instead of paying for the garbage of the one before it.
    """
    k = len(arms)
    for r in range(rounds):
        for j in range(k):
            gc.collect()
            arms[(r + j) % k]()


def child_env(tmp: str) -> dict[str, str]:
    """The environment of a timed child process: bytecode cache on (in `tmp`), as an installed package runs."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
    return env


def monotonic_ns() -> int:
    """``CLOCK_MONOTONIC`` (system-wide on Linux): comparable between a parent and its children."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)
