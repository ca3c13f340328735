"""Recovery benchmark: one actor, a whole process, and the import itself, against their floors.

The ``recovery`` area of ``pyactors bench`` (``--only recovery``). Sections:

* ``actor``: one `PersistentActor` restarted (``start`` + a first ``ask``: restart
  requested -> ready) against its state size (1 KB to 100 MB of object-rich pickled
  state, 1,000 journaled messages behind the snapshot) and its journal depth (0 to
  100,000 messages behind a 1 MB snapshot). The floor, alternated with it: unpickling
  the same snapshot payload and calling the same handler directly on the same backlog.
* ``process``: a fresh process restores N actors of ~100 KB each (1 to 1,000) from one
  store: the parent reads ``CLOCK_MONOTONIC`` just before spawning, the child at its
  first line, after its imports, after opening the store, and when every actor has
  answered one ``ask``. The floor child: imports pykka, reads the same pickled states
  from one file, unpickles them, starts as many plain pykka actors and asks each.
* ``imports``: ``python -c "import pyactors"`` vs ``python -c "import pykka"`` (and
  ``python -c pass``), alternated, bytecode cache on.

Children run with bytecode caching on (``PYTHONPYCACHEPREFIX`` in the temporary
directory) after untimed warm-ups, as an installed package would run.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pyactors import SegmentStore
from pyactors.bench._harness import (
    Times,
    alternate,
    child_env,
    compare,
    figure,
    monotonic_ns,
    problem,
    summary,
    target,
)
from pyactors.bench.actors import Seeded, apply, make_state, messages_for

__all__ = ["SECTIONS", "Config", "config"]

_SIZES = {"1KB": 1_000, "100KB": 100_000, "1MB": 1_000_000, "10MB": 10_000_000, "100MB": 100_000_000}


@dataclass
class Config:
    """Sizes of one run."""

    quick: bool
    state_sizes: tuple[str, ...]
    depths: tuple[int, ...]
    actor_runs: int
    actor_counts: tuple[int, ...]
    process_runs: int
    import_runs: int


def config(quick: bool) -> Config:
    """The sizes of a quick or a full run."""
    if quick:
        return Config(
            True, ("1KB", "100KB"), (0, 100), actor_runs=2, actor_counts=(1, 10), process_runs=2, import_runs=3
        )
    return Config(
        False,
        tuple(_SIZES),
        (0, 100, 1_000, 10_000, 100_000),
        actor_runs=5,
        actor_counts=(1, 10, 100, 1000),
        process_runs=3,
        import_runs=21,
    )


_BYTES_PER_ACCOUNT = len(pickle.dumps(make_state(1000, seed=0), protocol=5)) / 1000


def _accounts(nbytes: int) -> int:
    return max(1, round(nbytes / _BYTES_PER_ACCOUNT))


# --------------------------------------------------------------------------- one actor


class Recovering(Seeded):
    """Snapshotted once on first start (its initial state); every other message is journaled."""

    snapshot_on_stop = False

    def on_start(self) -> None:
        first_life = self.state is None
        super().on_start()
        if first_life:
            self.snapshot_now()

    def on_receive(self, message: Any) -> Any:
        if message == "sync":
            return self.state["handled"]
        return apply(self.state, message)


def _one_actor_point(cfg: Config, tmp: str, size_name: str, depth: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(restart, floor) summaries for one state size and journal depth."""
    d = tempfile.mkdtemp(prefix=f"actor-{size_name}-{depth}-", dir=tmp)
    store = SegmentStore(os.path.join(d, "store"), durability="process")
    try:
        ref = Recovering.start(make_state(_accounts(_SIZES[size_name]), seed=5), persistence_id="a", store=store)
        msgs = messages_for(depth)
        for m in msgs:
            ref.tell(m)
        ref.ask("sync")
        ref.stop()
        record = store.latest("a")
        if record is None:
            raise RuntimeError("no snapshot written")
        payload = record.payload[8:]  # the pickled state, after the watermark
        restart, floor = Times(), Times()

        def run_restart() -> None:
            t0 = time.perf_counter_ns()
            again = Recovering.start(persistence_id="a", store=store)
            handled = again.ask("sync")
            restart.ns.append(time.perf_counter_ns() - t0)
            again.stop()
            if handled != depth:
                problem(f"recovery actor {size_name}/{depth}: handled {handled} after restart, expected {depth}")

        def run_floor() -> None:
            t0 = time.perf_counter_ns()
            state = pickle.loads(payload)
            for m in msgs:
                apply(state, m)
            floor.ns.append(time.perf_counter_ns() - t0)

        # 100 MB of object-rich state takes seconds per unpickling: fewer runs there keep the run short.
        alternate([run_restart, run_floor], cfg.actor_runs if _SIZES[size_name] < 100_000_000 else 3)
        a, b = restart.summary(), floor.summary()
        print(
            f"{size_name:>6} {len(payload) / 1e6:>9.3f} {depth:>7} {a['runs']:>4} | {a['median']:>10.2f} "
            f"{a['p99']:>8.2f} | {b['median']:>10.2f} {b['p99']:>8.2f} | {a['median'] / b['median']:>5.2f}x",
            flush=True,
        )
        compare(
            "one actor: restart requested -> ready",
            "ms",
            ("PersistentActor start + ask", a),
            ("floor: unpickle + handler on the backlog", b),
            higher_is_better=False,
            state=size_name,
            state_pickled_bytes=len(payload),
            journaled=depth,
        )
        return a, b
    finally:
        store.close()
        shutil.rmtree(d, ignore_errors=True)


def bench_actor(cfg: Config, tmp: str) -> None:
    print("\n== actor: one PersistentActor restarted, against state size and journal depth (vs its floor) ==")
    print(
        f"{'state':>6} {'pickled MB':>9} {'journal':>7} {'runs':>4} | {'restart ms':>10} {'p99':>8} | "
        f"{'floor ms':>10} {'p99':>8} | ratio"
    )
    depth = 1_000 if not cfg.quick else 100
    for size_name in cfg.state_sizes:
        _one_actor_point(cfg, tmp, size_name, depth)
    size_name = "1MB" if not cfg.quick else "100KB"
    for d in cfg.depths:
        if d != depth:
            _one_actor_point(cfg, tmp, size_name, d)


# --------------------------------------------------------------------------- whole process

_CHILD_PYACTORS = """import time
_now = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # noqa: E731
marks = {"first": _now()}
import json
import sys

import pykka
from pyactors import PersistentActor, SegmentStore

marks["imported"] = _now()


class Restored(PersistentActor):
    snapshot_every = None

    def on_receive(self, message):
        return self.state["handled"]


store = SegmentStore(sys.argv[1])
marks["opened"] = _now()
pids = [f"actor-{i:04}" for i in range(int(sys.argv[2]))]
refs = [Restored.start(persistence_id=pid, store=store) for pid in pids]
answers = pykka.get_all([ref.ask("sync", block=False) for ref in refs], timeout=120)
marks["restored"] = _now()
pykka.ActorRegistry.stop_all()
store.close()
marks["ok"] = answers == [1] * len(pids)
print(json.dumps(marks), flush=True)
"""

_CHILD_FLOOR = """import time
_now = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # noqa: E731
marks = {"first": _now()}
import json
import pickle
import sys

import pykka

marks["imported"] = _now()


class Plain(pykka.ThreadingActor):
    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_receive(self, message):
        return self.state["handled"]


with open(sys.argv[1], "rb") as f:
    payloads = pickle.load(f)
marks["opened"] = _now()
refs = [Plain.start(pickle.loads(p)) for p in payloads]
answers = pykka.get_all([ref.ask("sync", block=False) for ref in refs], timeout=120)
marks["restored"] = _now()
pykka.ActorRegistry.stop_all()
marks["ok"] = answers == [1] * len(payloads)
print(json.dumps(marks), flush=True)
"""

_PROCESS_PHASES = (
    ("interpreter start", "spawn", "first"),
    ("imports", "first", "imported"),
    ("store open", "imported", "opened"),
    ("restore", "opened", "restored"),
)


class _Once(Seeded):
    """An actor's first life: its initial state, one message, a snapshot on stop."""

    def on_receive(self, message: Any) -> Any:
        self.state["handled"] += 1
        return self.state["handled"]


def _child(script: str, args: list[str], env: dict[str, str], cwd: str) -> dict[str, Any] | None:
    spawn = monotonic_ns()
    proc = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )
    if proc.returncode != 0:
        problem(f"recovery process child exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
        return None
    marks: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if not marks.pop("ok"):
        problem(f"recovery process: a child's actors gave wrong answers ({script})")
    marks["spawn"] = spawn
    return marks


def _keep(child: Callable[[], dict[str, Any] | None], samples: list[dict[str, Any]]) -> None:
    marks = child()
    if marks is not None:
        samples.append(marks)


def bench_process(cfg: Config, tmp: str) -> None:
    print("\n== process: a fresh process restores N actors of ~100 KB each (vs a pykka floor child) ==")
    print(
        f"{'actors':>6} {'arm':<9} {'runs':>4} | "
        + " ".join(f"{p:>17}" for p, _, _ in _PROCESS_PHASES)
        + f" | {'spawn->ready':>12} {'p99':>8}"
    )
    env = child_env(tmp)
    d = tempfile.mkdtemp(prefix="process-", dir=tmp)
    scripts = {}
    for name, src in (("pyactors", _CHILD_PYACTORS), ("floor", _CHILD_FLOOR)):
        scripts[name] = os.path.join(d, f"child_{name}.py")
        with open(scripts[name], "w") as script:
            script.write(src)
    try:
        for n in cfg.actor_counts:
            path = os.path.join(d, f"store-{n}")
            pids = [f"actor-{i:04}" for i in range(n)]
            with SegmentStore(path) as store:
                for i, pid in enumerate(pids):
                    ref = _Once.start(make_state(_accounts(100_000), seed=2000 + i), persistence_id=pid, store=store)
                    ref.ask("inc")
                    ref.stop()
                payloads = []
                for pid in pids:
                    record = store.latest(pid)
                    if record is None:
                        raise RuntimeError(f"{pid}: no snapshot")
                    payloads.append(record.payload[8:])
            floor_file = os.path.join(d, f"floor-{n}.pickle")
            with open(floor_file, "wb") as f:
                pickle.dump(payloads, f, protocol=5)
            total = sum(map(len, payloads))
            samples: dict[str, list[dict[str, Any]]] = {"pyactors": [], "floor": []}
            arms: dict[str, Callable[[], dict[str, Any] | None]] = {
                "pyactors": partial(_child, scripts["pyactors"], [path, str(n)], env, d),
                "floor": partial(_child, scripts["floor"], [floor_file], env, d),
            }
            for fn in arms.values():  # warm-up: bytecode cache, page cache
                fn()

            alternate(
                [
                    partial(_keep, arms["pyactors"], samples["pyactors"]),
                    partial(_keep, arms["floor"], samples["floor"]),
                ],
                cfg.process_runs,
            )
            stats: dict[str, dict[str, Any]] = {}
            for name, ss in samples.items():
                if not ss:
                    continue
                cells = []
                for phase, a, b in _PROCESS_PHASES:
                    st = summary([(s[b] - s[a]) / 1e6 for s in ss])
                    figure("whole-process recovery phase", name, "ms", st, phase=phase, actors=n, state_bytes=total)
                    cells.append(f"{st['median']:>17.2f}")
                    stats[f"{name}:{phase}"] = st
                stats[name] = summary([(s["restored"] - s["spawn"]) / 1e6 for s in ss])
                print(
                    f"{n:>6} {name:<9} {len(ss):>4} | {' '.join(cells)} | {stats[name]['median']:>12.1f} "
                    f"{stats[name]['p99']:>8.1f}",
                    flush=True,
                )
            if "pyactors" in stats and "floor" in stats:
                params = {"actors": n, "state_bytes": total}
                compare(
                    "whole-process recovery, spawn -> all ready",
                    "ms",
                    ("pyactors", stats["pyactors"]),
                    ("floor: pykka child", stats["floor"]),
                    higher_is_better=False,
                    **params,
                )
                compare(
                    "whole-process recovery, restore phase",
                    "ms",
                    ("pyactors", stats["pyactors:restore"]),
                    ("floor: unpickle + pykka start + ask", stats["floor:restore"]),
                    higher_is_better=False,
                    **params,
                )
            shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- imports


def bench_imports(cfg: Config, tmp: str) -> None:
    print("\n== imports: python -c 'import pyactors' vs 'import pykka' (fresh interpreters, bytecode cache on) ==")
    env = child_env(tmp)
    commands = {"import pyactors": "import pyactors", "import pykka": "import pykka", "python -c pass": "pass"}
    times = {name: Times() for name in commands}

    def arm(name: str) -> Callable[[], None]:
        def run() -> None:
            t0 = time.perf_counter_ns()
            subprocess.run([sys.executable, "-c", commands[name]], env=env, check=True, cwd=tmp)
            times[name].ns.append(time.perf_counter_ns() - t0)

        return run

    for name in commands:  # warm-up: fills the bytecode cache
        arm(name)()
        times[name].ns.clear()
    alternate([arm(name) for name in commands], cfg.import_runs)
    for name, t in times.items():
        print(f"{name:<18} {t.runs:>4} | median {t.median_ms:>7.1f} ms  p99 {t.p99_ms:>7.1f} ms")
    ratio = compare(
        "interpreter start + import",
        "ms",
        ("import pyactors", times["import pyactors"].summary()),
        ("import pykka", times["import pykka"].summary()),
        higher_is_better=False,
    )
    figure("interpreter start + import", "python -c pass", "ms", times["python -c pass"].summary())
    target(
        "import_time",
        '`python -c "import pyactors"` <= 1.5x `python -c "import pykka"`',
        f"{ratio:.2f}x ({times['import pyactors'].median_ms:.1f} vs {times['import pykka'].median_ms:.1f} ms; "
        f"bare interpreter {statistics.median(times['python -c pass'].ns) / 1e6:.1f} ms; {cfg.import_runs} runs)",
        ratio <= 1.5,
    )


SECTIONS: dict[str, Callable[[Config, str], None]] = {
    "actor": bench_actor,
    "process": bench_process,
    "imports": bench_imports,
}
