"""Write a run's results: ``results.json``, ``REPORT.md`` and the PNG plots (matplotlib).

The schema of ``results.json`` is in docs/BENCHMARKS.md; `SCHEMA_VERSION` changes when
it does.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import time
from importlib import metadata
from typing import TYPE_CHECKING, Any

from pyactors.bench._harness import RESULTS

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["SCHEMA_VERSION", "run_info", "write"]

SCHEMA_VERSION = 1
"""The version of the ``results.json`` layout."""

_DISTRIBUTIONS = (
    "pyactors-durable",
    "pykka",
    "zstandard",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "matplotlib",
    "rich",
)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def run_info(*, quick: bool, started: float, load_before: tuple[float, float, float]) -> dict[str, Any]:
    """The run's metadata: mode, times, machine, versions."""
    return {
        "schema": SCHEMA_VERSION,
        "quick": quick,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "elapsed_s": time.time() - started,
        "machine": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "system": platform.system(),
            "release": platform.release(),
            "load_average_before": load_before[0],
            "load_average_after": os.getloadavg()[0],
        },
        "versions": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            **{d: _version(d) for d in _DISTRIBUTIONS},
        },
    }


def write(out: str, meta: dict[str, Any]) -> list[str]:
    """Write ``results.json``, ``REPORT.md`` and the plots into `out`; return the file names written."""
    doc = {
        **meta,
        "sections_s": RESULTS.sections,
        "figures": RESULTS.figures,
        "comparisons": RESULTS.comparisons,
        "targets": RESULTS.targets,
        "skipped": RESULTS.skipped,
        "problems": RESULTS.problems,
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(doc, f, indent=2)
    plots = _plots(out, doc)
    with open(os.path.join(out, "REPORT.md"), "w") as f:
        f.write(markdown(doc, plots))
    return ["results.json", "REPORT.md", *plots]


# --------------------------------------------------------------------------- REPORT.md


def _num(x: float) -> str:
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e6:
        return f"{x / 1e6:.2f} M"
    if a >= 1e4:
        return f"{x / 1e3:.1f} k"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items()) or "-"


def markdown(doc: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The report: run info, the targets table, a comparison table per area, other figures, plots."""
    v = doc["versions"]
    m = doc["machine"]
    lines = [
        "# pyactors benchmark report",
        "",
        f"Run of {doc['started']} ({'quick' if doc['quick'] else 'full'}, {doc['elapsed_s']:.0f} s); "
        f"{m['cpus']} CPUs {m['machine']}, load average {m['load_average_before']:.2f} before, "
        f"{m['load_average_after']:.2f} after.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        "",
        "Every comparison ran its baseline side by side in the same run, alternating runs so drift hits both. "
        "Figures are medians and p99 (the slow tail) over the stated number of runs; ratio = contender median / "
        "baseline median.",
        "",
        "## Targets",
        "",
    ]
    if doc["targets"]:
        lines += ["| target | measured | result | note |", "|---|---|---|---|"]
        for t in doc["targets"]:
            lines.append(
                f"| {t['goal']} | {t['measured']} | {'MET' if t['met'] else '**MISSED**'} | {t.get('note', '')} |"
            )
    else:
        lines.append("No target was measured in this run.")
    if doc["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- {s['area']}: {s['what']} — {s['reason']}" for s in doc["skipped"]]
    if doc["problems"]:
        lines += ["", "## Problems", ""]
        lines += [f"- {p}" for p in doc["problems"]]
    areas = list(dict.fromkeys([c["area"] for c in doc["comparisons"]] + [f["area"] for f in doc["figures"]]))
    compared = {id(c[k]) for c in doc["comparisons"] for k in ("contender", "baseline")}
    for area in areas:
        lines += ["", f"## {area}", ""]
        comps = [c for c in doc["comparisons"] if c["area"] == area]
        if comps:
            lines += [
                "| measure | parameters | unit | contender | median | p99 | runs | baseline | median | p99 | runs "
                "| ratio |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for c in comps:
                a, b = c["contender"], c["baseline"]
                lines.append(
                    f"| {c['name']} | {_params(c['params'])} | {c['unit']} | {a['arm']} | {_num(a['median'])} | "
                    f"{_num(a['p99'])} | {a['runs']} | {b['arm']} | {_num(b['median'])} | {_num(b['p99'])} | "
                    f"{b['runs']} | {c['ratio']:.2f}x |"
                )
        others = [f for f in doc["figures"] if f["area"] == area and id(f) not in compared]
        if others:
            lines += ["", "| figure | parameters | arm | unit | median | p99 | min | max | runs |", "|---|" * 9]
            lines[-1] = "|---|---|---|---|---|---|---|---|---|"
            for f in others:
                lines.append(
                    f"| {f['name']} | {_params(f['params'])} | {f['arm']} | {f['unit']} | {_num(f['median'])} | "
                    f"{_num(f['p99'])} | {_num(f['min'])} | {_num(f['max'])} | {f['runs']} |"
                )
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p}]({p})" for p in plots]
    lines += ["", "## Time per section (s)", "", ", ".join(f"{k} {s:.1f}" for k, s in doc["sections_s"].items())]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots


def _series(doc: dict[str, Any], name: str, x_key: str, x_of: Any = None) -> dict[str, list[tuple[Any, float]]]:
    """Arm -> [(x, median)] of the figures called `name`, x = params[x_key] (mapped by `x_of`)."""
    out: dict[str, list[tuple[Any, float]]] = {}
    for f in doc["figures"]:
        if f["name"] == name and x_key in f["params"]:
            x = f["params"][x_key]
            out.setdefault(f["arm"], []).append((x_of(x) if x_of else x, f["median"]))
    return {arm: sorted(set(pts)) for arm, pts in out.items()}


def _plots(out: str, doc: dict[str, Any]) -> list[str]:
    """Draw what the run measured; return the PNG names (none if matplotlib is missing)."""
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        RESULTS.skipped.append({"area": "report", "what": "plots", "reason": "matplotlib is not installed"})
        doc["skipped"] = RESULTS.skipped
        return []
    written: list[str] = []

    def line(
        fname: str,
        title: str,
        xlabel: str,
        ylabel: str,
        series: dict[str, list[tuple[Any, float]]],
        *,
        logx: bool = True,
        logy: bool = True,
    ) -> None:
        series = {k: v for k, v in series.items() if v}
        if not series:
            return
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for label, pts in series.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        if logx:
            ax.set_xscale("symlog" if any(p[0] == 0 for pts in series.values() for p in pts) else "log")
        if logy:
            ax.set_yscale("log")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, fname), dpi=100)
        plt.close(fig)
        written.append(fname)

    # The size sweep shares one journal depth, the depth sweep one state size: the most common of each.
    restart = [f for f in doc["figures"] if f["name"] == "one actor: restart requested -> ready"]
    depths = [f["params"]["journaled"] for f in restart]
    sizes = [f["params"]["state"] for f in restart]
    depth = max(set(depths), key=depths.count) if depths else None
    common = max(set(sizes), key=sizes.count) if sizes else None
    by_size: dict[str, list[tuple[Any, float]]] = {}
    depth_pts: dict[str, list[tuple[Any, float]]] = {}
    for f in restart:
        if f["params"]["journaled"] == depth:
            by_size.setdefault(f["arm"], []).append((f["params"]["state_pickled_bytes"], f["median"]))
        if f["params"]["state"] == common:
            depth_pts.setdefault(f["arm"], []).append((f["params"]["journaled"], f["median"]))
    line(
        "recovery_actor_state.png",
        f"One actor ({depth} journaled): restart -> ready vs state size",
        "pickled state (bytes)",
        "ms (median)",
        {k: sorted(set(v)) for k, v in by_size.items()},
    )
    line(
        "recovery_actor_journal.png",
        f"One actor ({common} state): restart -> ready vs journal depth",
        "journaled messages behind the snapshot",
        "ms (median)",
        {k: sorted(set(v)) for k, v in depth_pts.items()},
    )
    line(
        "recovery_process.png",
        "Whole process: spawn -> all actors ready",
        "actors (~100 KB each)",
        "ms (median)",
        _series(doc, "whole-process recovery, spawn -> all ready", "actors"),
    )
    line(
        "recovery_workflow.png",
        "Workflow: fresh process spawn -> next node running",
        "state blob (bytes)",
        "ms (median)",
        _series(doc, "workflow recovery, spawn -> next node running", "blob_bytes"),
    )
    line(
        "checkpoint_cost.png",
        "Checkpoint cost per superstep vs state size",
        "state blob (bytes)",
        "ms (median)",
        _series(doc, "checkpoint cost per superstep", "blob_bytes"),
    )
    line(
        "checkpoint_change.png",
        "Checkpoint cost per superstep vs size of each node's change",
        "bytes written by each node",
        "ms (median)",
        _series(doc, "checkpoint cost per superstep, by size of the change", "change_bytes"),
    )
    for policy in ("process", "sync"):
        pts: dict[str, list[tuple[Any, float]]] = {}
        for f in doc["figures"]:
            if f["name"] == "append" and f["params"]["policy"] == policy:
                label = f"{f['arm']}, {f['params']['mode']}"
                pts.setdefault(label, []).append((f["params"]["payload_bytes"], f["median"]))
        line(
            f"append_{policy}.png",
            f"Append throughput under '{policy}'",
            "record size (bytes)",
            "records/s (median)",
            {k: sorted(set(v)) for k, v in pts.items()},
        )
    foot = [c for c in doc["comparisons"] if c["name"] == "disk bytes per checkpoint"]
    if foot:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        xs = range(len(foot))
        ax.bar([x - 0.2 for x in xs], [c["contender"]["median"] for c in foot], 0.4, label="pyactors FileCheckpointer")
        ax.bar([x + 0.2 for x in xs], [c["baseline"]["median"] for c in foot], 0.4, label="LangGraph SqliteSaver")
        ax.set_xticks(list(xs), [c["params"]["workload"] for c in foot])
        ax.set_yscale("log")
        ax.set(title="Disk bytes per checkpoint", ylabel="bytes (median)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "footprint.png"), dpi=100)
        plt.close(fig)
        written.append("footprint.png")
    return written
