"""The benchmark suite: ``pyactors bench [--quick] [--check] [--out DIR] [--only AREA[.SECTION]]``.

Every comparison runs its baseline side by side in the same run, alternating runs so
that drift hits both; figures are medians and p99 over a stated number of runs. The
run writes ``results.json`` (schema: docs/BENCHMARKS.md), ``REPORT.md`` (a table per
area, ratios against each baseline, the targets table) and PNG plots into the output
folder.

Areas (one module each): ``store`` (appends vs a pure-Python writer and sqlite3, open,
snapshot restore), ``actors`` (message throughput vs plain pykka, a 10-actor pipeline,
ask latency, restart, restore), ``recovery`` (one actor against state size and journal
depth, a whole process against the number of actors, ``import pyactors`` vs ``import
pykka``), ``workflow`` (checkpoint cost, fresh-process recovery and disk footprint vs
LangGraph's savers), ``langgraph`` (LangGraph graphs on ``SegmentSaver`` vs LangGraph's
own savers: checkpoint cost at equal crash safety, fresh-process recovery).

Exit status: 0; 1 if a section misbehaved, if the run measured nothing (it says why:
every area it was to run was skipped), or, with ``--check``, if a target was missed;
2 if ``--only`` names no area or section of the suite.

The baselines, the plots and the progress bar need the ``bench`` extra
(``pip install 'pyactors-durable[bench]'``); an area whose baseline package is missing is
reported as skipped, with the reason. ``import pyactors`` never imports this package.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import shutil
import tempfile
import time
import traceback
from typing import TYPE_CHECKING, Any

from pyactors.bench._harness import RESULTS, problem, skip

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["AREAS", "add_arguments", "main", "run", "run_parsed"]

AREAS: dict[str, str] = {
    "store": "pyactors.bench.store",
    "actors": "pyactors.bench.actors",
    "recovery": "pyactors.bench.recovery",
    "workflow": "pyactors.bench.workflow",
    "langgraph": "pyactors.bench.langgraph",
}
"""Area name -> the module that measures it (``SECTIONS`` and ``config(quick)``)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the suite's options (``--quick``, ``--check``, ``--out``, ``--only``) to `parser`."""
    parser.add_argument("--quick", action="store_true", help="small sizes, few runs (under a minute)")
    parser.add_argument("--check", action="store_true", help="exit 1 if any target is missed")
    parser.add_argument("--out", metavar="DIR", default="bench-out", help="output folder (default: bench-out)")
    parser.add_argument(
        "--only",
        metavar="AREA[.SECTION]",
        action="append",
        help=f"run only this area or section (repeatable); areas: {', '.join(AREAS)}",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite from the command line; return the exit status (1 if anything misbehaved)."""
    parser = argparse.ArgumentParser(prog="pyactors bench", description=(__doc__ or "").split("\n\n")[0])
    add_arguments(parser)
    return run_parsed(parser.parse_args(argv))


def run_parsed(args: argparse.Namespace) -> int:
    """`run` with the options `add_arguments` added to a parser, as parsed; return the exit status."""
    return run(quick=args.quick, out=args.out, only=args.only, progress=not args.no_progress, check=args.check)


def _wanted(only: Sequence[str] | None, area: str, section: str | None = None) -> bool:
    if not only:
        return True
    if section is None:
        return any(o == area or o.startswith(f"{area}.") for o in only)
    return area in only or f"{area}.{section}" in only


@contextlib.contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A progress bar over the sections (rich), or one line per section without rich."""
    try:
        if not enabled:
            raise ImportError
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        done = {"n": 0}

        def line(name: str) -> None:
            done["n"] += 1
            print(f"\n[{done['n']}/{total}] {name}", flush=True)

        yield line
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("bench", total=total)
        first = {"yes": True}

        def step(name: str) -> None:
            if not first["yes"]:
                bar.advance(task)
            first["yes"] = False
            bar.update(task, description=name)

        yield step
        bar.update(task, completed=total, description="done")


def _unknown(only: Sequence[str], sections: dict[str, list[str]]) -> list[str]:
    """The `only` entries that name no area, or no section of an area whose sections are known."""
    bad = []
    for o in only:
        area, _, section = o.partition(".")
        if area not in AREAS or (section and area in sections and section not in sections[area]):
            bad.append(o)
    return bad


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence these loggers below CRITICAL while the sections run, then restore their levels.

    Some sections crash actors on purpose: their tracebacks stay off the output, and a
    caller in the same process (a test, an embedding program) keeps its logging as it was.
    """
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def run(*, quick: bool, out: str, only: Sequence[str] | None = None, progress: bool = True, check: bool = False) -> int:
    """Run the suite and write ``results.json``, ``REPORT.md`` and the plots into `out`.

    Args:
        quick: Small sizes and few runs (under a minute on a 2-core machine).
        out: The output folder (created if missing).
        only: Run only these areas (``"store"``) or sections (``"store.appends"``).
        progress: Show a progress bar (needs ``rich``).
        check: A missed target fails the run.

    Returns:
        0; 1 if a section misbehaved (a wrong result or an exception), if nothing was
        measured (every area to run was skipped), or, with `check`, if a target was
        missed; 2 if `only` names no area or section of the suite (nothing runs).
    """
    from pyactors.bench import report

    RESULTS.clear()
    if only and (bad := _unknown(only, {})):
        print(f"pyactors bench: --only {', '.join(bad)}: no such area (areas: {', '.join(AREAS)})", flush=True)
        return 2
    os.makedirs(out, exist_ok=True)
    started = time.time()
    load_before = os.getloadavg()
    plan: list[tuple[str, str, Callable[[Any, str], None], Any]] = []
    sections: dict[str, list[str]] = {}
    for area, module_name in AREAS.items():
        if not _wanted(only, area):
            continue
        RESULTS.area = area
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only a baseline package may be missing: pyactors itself (its native core
            # above all) missing or broken fails the run instead of reading as skipped.
            if exc.name is None or exc.name.partition(".")[0] == "pyactors":
                raise
            install = "pip install 'pyactors-durable[bench]'"
            skip(f"every {area} comparison", f"{exc.name} is not installed ({install})")
            continue
        cfg = module.config(quick)
        sections[area] = list(module.SECTIONS)
        plan.extend((area, section, fn, cfg) for section, fn in module.SECTIONS.items() if _wanted(only, area, section))
    if only and (bad := _unknown(only, sections)):
        known = "; ".join(f"{a}: {', '.join(names)}" for a, names in sections.items())
        print(f"pyactors bench: --only {', '.join(bad)}: no such section ({known})", flush=True)
        return 2
    print(f"pyactors bench ({'quick' if quick else 'full'}): {len(plan)} sections -> {out}", flush=True)
    tmp = tempfile.mkdtemp(prefix="pyactors-bench-")
    try:
        with _progress(len(plan), progress) as step, _quiet("pykka", "pyactors"):
            for area, section, fn, cfg in plan:
                RESULTS.area = area
                step(f"{area}.{section}")
                t0 = time.perf_counter()
                try:
                    fn(cfg, tmp)
                except Exception as exc:  # a section that raises is a problem of the run, not a crash
                    problem(f"{area}.{section}: {type(exc).__name__}: {exc}")
                    traceback.print_exc()
                    import pykka

                    pykka.ActorRegistry.stop_all()
                RESULTS.sections[f"{area}.{section}"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta = report.run_info(quick=quick, started=started, load_before=load_before)
    files = report.write(out, meta)
    print("\ntime per section (s): " + ", ".join(f"{k} {v:.1f}" for k, v in RESULTS.sections.items()))
    met = sum(1 for t in RESULTS.targets if t["met"])
    print(
        f"targets met: {met}/{len(RESULTS.targets)}; problems: {len(RESULTS.problems)}; "
        f"skipped: {len(RESULTS.skipped)}; total {meta['elapsed_s']:.0f} s; wrote {', '.join(files)}"
    )
    for p in RESULTS.problems:
        print(f"  problem: {p}")
    failed = bool(RESULTS.problems)
    if not RESULTS.figures:
        reasons = "; ".join(f"{s['area']}: {s['reason']}" for s in RESULTS.skipped) or "no section ran"
        print(f"measured nothing ({reasons})")
        failed = True
    missed = [t for t in RESULTS.targets if not t["met"]]
    if check and missed:
        listed = "; ".join(f"{t['goal']} ({t['measured']})" for t in missed)
        print(f"--check: {len(missed)} target(s) missed: {listed}")
        failed = True
    return 1 if failed else 0
