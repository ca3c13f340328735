"""Actor benchmark: `PersistentActor` and `Supervisor` side by side with their floors.

The ``actors`` area of ``pyactors bench`` (``--only actors``). As in the ``store``
area, every comparison alternates the contender and its baseline round by round
(order rotated every round) so that drift hits both, and prints the run count,
median, p99 and the ratio of the medians, with the targets and "met"/"MISSED".

Comparisons:

* ``tell``: messages/s of a `PersistentActor` under each durability policy (default
  snapshot policy: every 1,000 messages) vs a plain ``pykka.ThreadingActor`` doing the
  same work in ``on_receive``. A round tells N messages, then asks once and waits for
  the reply (so every message was handled). Target: ``process`` >= 0.7x plain pykka.
* ``pipeline``: 10 `PersistentActor`s in a line (``process``), each handling a message
  and telling it to the next, the last counting; a round tells N messages to the first
  and waits until the last has seen them all. Baseline: the same pipeline of plain
  pykka actors.
* ``ask``: round-trip latency of one ``ask`` (actor idle, caller waiting), both.
* ``restart``: a crashed actor holding a ~1 MB object-rich state (its snapshot) with
  1,000 journaled messages behind that snapshot. Measured two ways: the `Supervisor`'s
  own recovery time (``stats().last_ms``: failure detected -> restored, journal replayed,
  ready), and ``PersistentActor.start()`` + a first ``ask`` timed by the caller. The
  supervisor's restart runs twice: on a default store (the snapshot comes from the
  store's latest-record cache) and on one opened with ``cache_bytes=0`` (read from the
  segment and decompressed, as after a process restart). The floor: ``pickle.loads`` of
  the snapshot payload plus calling `BigBank.on_receive` directly on the 1,000 messages.
  Target: supervisor restart (default store) <= 1.3x the floor.
* ``restore``: a whole-process restore: start 1,000 (``--quick``: 20) `PersistentActor`s with ~100 KB states
  on an existing (open) store and get an answer from each, vs the floor: unpickling the
  same state payloads, starting as many plain pykka actors with them and asking each.
  Target: <= 1.3x.

Before each arm of each round a full ``gc.collect()`` runs, untimed. Throughput rows:
one sample per round; "p99" is the slow tail (the rate at the 99th
percentile of time per message). Latency rows: one sample per operation.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import statistics
import tempfile
import threading
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from pyactors import Durability, PersistentActor, SegmentStore, Supervisor
from pyactors.bench._harness import NS, Rate, Times, alternate, compare, problem, target, verdict
from pyactors.bench.store import fmt_rate
from pyactors.errors import ActorCrashedError

__all__ = ["SECTIONS", "Config", "apply", "config", "make_state", "messages_for"]

POLICIES: tuple[Durability, ...] = ("process", "group", "sync")
GROUP_COMMIT_MS = 5.0
JOURNALED = 1_000  # messages behind the snapshot in the restart benchmark
PIPELINE = 10

# --------------------------------------------------------------------------- the work

_WORDS = [
    "actor",
    "mailbox",
    "snapshot",
    "stream",
    "segment",
    "ledger",
    "account",
    "order",
    "invoice",
    "retry",
    "customer",
    "shipment",
    "balance",
    "journal",
    "recovery",
    "replay",
]


def make_state(n_accounts: int, seed: int) -> dict[str, Any]:
    """An object-rich state: one small dict per account (the record shape of bench_store)."""
    rng = random.Random(seed)
    return {
        "accounts": {
            i: {
                "id": i,
                "user": f"user-{rng.randrange(10_000)}",
                "event": rng.choice(_WORDS),
                "ts": 1.7e9 + rng.random() * 1e6,
                "balance": round(rng.random() * 1000, 2),
                "tags": rng.sample(_WORDS, 3),
                "ref": rng.randbytes(8).hex(),
                "note": " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(4, 16))),
                "history": [],
            }
            for i in range(n_accounts)
        },
        "handled": 0,
    }


def apply(state: dict[str, Any], message: tuple[str, int, float]) -> int:
    """The handler's work, shared by every arm: a deposit into one account."""
    _, account, amount = message
    acct = state["accounts"][account % len(state["accounts"])]
    acct["balance"] += amount
    acct["history"].append(amount)
    if len(acct["history"]) > 8:
        del acct["history"][0]
    state["handled"] += 1
    handled: int = state["handled"]
    return handled


def messages_for(n: int) -> list[tuple[str, int, float]]:
    return [("deposit", i * 7919, 1.25) for i in range(n)]


# --------------------------------------------------------------------------- actors

_CRASHED: set[str] = set()


class Bank(PersistentActor):
    """The persistent contender (tell/ask benchmarks): state built on first start."""

    n_accounts = 64

    def on_start(self) -> None:
        if self.state is None:
            self.state = make_state(self.n_accounts, seed=1)

    def on_receive(self, message: Any) -> Any:
        if message == "sync":
            return self.state["handled"]
        return apply(self.state, message)


class PlainBank(pykka.ThreadingActor):
    """The baseline: the same work in a plain pykka actor."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.state = state if state is not None else make_state(Bank.n_accounts, seed=1)

    def on_receive(self, message: Any) -> Any:
        if message == "sync":
            return self.state["handled"]
        return apply(self.state, message)


class BigBank(PersistentActor):
    """A ~1 MB state, snapshotted once on first start; no other snapshot by policy."""

    snapshot_every = None
    snapshot_on_stop = False
    n_accounts = 6_000

    def on_start(self) -> None:
        if self.state is None:
            self.state = make_state(self.n_accounts, seed=2)
            self.snapshot_now()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, tuple) and message[0] == "crash":
            if message[1] not in _CRASHED:
                _CRASHED.add(message[1])
                raise RuntimeError("crash for the restart benchmark")
            return None
        if message == "sync":
            return self.state["handled"]
        return apply(self.state, message)


class Seeded(PersistentActor):
    """A persistent actor whose first life starts from `initial`; later lives restore."""

    snapshot_every = None

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.initial = initial

    def on_start(self) -> None:
        if self.state is None:
            self.state = self.initial


class Restored(Seeded):
    """The whole-process restore contender: ~100 KB state, answers `sync`."""

    n_accounts = 600

    def on_receive(self, message: Any) -> Any:
        return self.state["handled"]


class PlainRestored(pykka.ThreadingActor):
    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        self.state = state

    def on_receive(self, message: Any) -> Any:
        return self.state["handled"]


# --------------------------------------------------------------------------- output


@dataclass
class Config:
    """Sizes of one run."""

    quick: bool
    rounds: int
    round_s: float
    ask_rounds: int
    asks_per_round: int
    restart_rounds: int
    restore_actors: int
    restore_rounds: int


def calibrate(run: Callable[[int], int], round_s: float, start: int) -> int:
    """A per-round message count so that a round takes about `round_s`."""
    n = start
    for _ in range(2):
        dt = max(run(n), 1)
        n = max(1, int(n * round_s * NS / dt))
    return n


# --------------------------------------------------------------------------- tell + ask


def _tell_round(ref: pykka.ActorRef[Any], msgs: list[tuple[str, int, float]]) -> int:
    tell = ref.tell
    t0 = time.perf_counter_ns()
    for m in msgs:
        tell(m)
    ref.ask("sync")
    return time.perf_counter_ns() - t0


def bench_tell(cfg: Config, tmp: str) -> None:
    print("\n== tell: PersistentActor (each durability policy) vs plain pykka ThreadingActor, same work ==")
    print(f"   a round: N tells, then one ask (all handled); {os.cpu_count()} CPUs")
    print(
        f"{'arm':<28} {'runs':>4} | {'median msg/s':>12} {'p99 msg/s':>10} | "
        f"{'pykka msg/s':>11} {'p99 msg/s':>10} | {'ratio':>6}  target"
    )
    plain = PlainBank.start()
    pool = messages_for(200_000)
    try:
        for policy in POLICIES:
            try:
                one_tell_comparison(cfg, tmp, policy, plain, pool)
            except Exception as exc:  # report and go on with the other policies
                problem(f"tell {policy}: {type(exc).__name__}: {exc}")
                traceback.print_exc()
    finally:
        plain.stop()


def one_tell_comparison(
    cfg: Config, tmp: str, policy: Durability, plain: pykka.ActorRef[Any], pool: list[tuple[str, int, float]]
) -> None:
    d = tempfile.mkdtemp(prefix=f"tell-{policy}-", dir=tmp)
    store = SegmentStore(os.path.join(d, "store"), durability=policy, group_commit_ms=GROUP_COMMIT_MS)
    ref = Bank.start(persistence_id="bank", store=store)
    told = 0
    try:

        def run_p(n: int) -> int:
            nonlocal told
            told += n
            return _tell_round(ref, pool[:n])

        def run_b(n: int) -> int:
            return _tell_round(plain, pool[:n])

        n_p = min(calibrate(run_p, cfg.round_s, 50 if policy == "sync" else 2000), len(pool))
        n_b = min(calibrate(run_b, cfg.round_s, 2000), len(pool))
        a, b = Rate(), Rate()
        alternate([lambda: a.add(n_p, run_p(n_p)), lambda: b.add(n_b, run_b(n_b))], cfg.rounds)
        ratio = a.median / b.median
        goal = 0.7 if policy == "process" else None
        ok = None if goal is None else ratio >= goal
        tgt = f"(issue 3: >= {goal:g}x {verdict(ok)})" if goal is not None else ""
        label = f"PersistentActor, {policy}"
        print(
            f"{label:<28} {a.runs:>4} | {fmt_rate(a.median):>12} {fmt_rate(a.p99):>10} | "
            f"{fmt_rate(b.median):>11} {fmt_rate(b.p99):>10} | {ratio:>5.2f}x  {tgt}",
            flush=True,
        )
        compare(
            "tell throughput",
            "msg/s",
            ("PersistentActor", a.summary()),
            ("plain pykka", b.summary()),
            higher_is_better=True,
            policy=policy,
        )
        handled = ref.ask("sync")
        if handled != told:
            problem(f"tell {policy}: actor handled {handled} of {told} messages")
    finally:
        ref.stop()
        store.close()
        shutil.rmtree(d, ignore_errors=True)


def bench_ask(cfg: Config, tmp: str) -> None:
    print("\n== ask: round-trip latency of one ask (idle actor), PersistentActor vs plain pykka ==")
    print(f"{'arm':<28} {'runs':>6} | {'median us':>9} {'p99 us':>8} | {'vs pykka':>8}")
    plain = PlainBank.start()
    stores: list[SegmentStore] = []
    refs: dict[str, pykka.ActorRef[Any]] = {"pykka ThreadingActor": plain}
    dirs: list[str] = []
    try:
        for policy in POLICIES:
            d = tempfile.mkdtemp(prefix=f"ask-{policy}-", dir=tmp)
            dirs.append(d)
            store = SegmentStore(os.path.join(d, "store"), durability=policy, group_commit_ms=GROUP_COMMIT_MS)
            stores.append(store)
            refs[f"PersistentActor, {policy}"] = Bank.start(persistence_id="bank", store=store)
        times = {name: Times() for name in refs}
        msg = ("deposit", 1, 1.0)

        def arm(name: str) -> Callable[[], None]:
            ref, t = refs[name], times[name]
            per = cfg.asks_per_round if "sync" not in name else max(10, cfg.asks_per_round // 10)

            def run() -> None:
                ask = ref.ask
                for _ in range(per):
                    t0 = time.perf_counter_ns()
                    ask(msg)
                    t.ns.append(time.perf_counter_ns() - t0)

            return run

        for ref in refs.values():  # warm-up
            ref.ask(msg)
        alternate([arm(name) for name in refs], cfg.ask_rounds)
        base = times["pykka ThreadingActor"]
        for name, t in times.items():
            print(
                f"{name:<28} {t.runs:>6} | {t.median_ms * 1000:>9.1f} {t.p99_ms * 1000:>8.1f} | "
                f"{t.median_ms / base.median_ms:>7.2f}x",
                flush=True,
            )
            if name != "pykka ThreadingActor":
                compare(
                    "ask round trip", "ms", (name, t.summary()), ("plain pykka", base.summary()), higher_is_better=False
                )
    finally:
        pykka.ActorRegistry.stop_all()
        for s in stores:
            s.close()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- pipeline


class Stage(PersistentActor):
    """One persistent stage of the pipeline: the handler's work, then tell the next stage."""

    def __init__(self, next_stage: pykka.ActorRef[Any] | None, done: Callable[[int], None]) -> None:
        super().__init__()
        self.next_stage = next_stage
        self.done = done

    def on_start(self) -> None:
        if self.state is None:
            self.state = make_state(64, seed=3)

    def on_receive(self, message: Any) -> Any:
        handled = apply(self.state, message)
        if self.next_stage is not None:
            self.next_stage.tell(message)
        else:
            self.done(handled)
        return None


class PlainStage(pykka.ThreadingActor):
    """The same stage as a plain pykka actor."""

    def __init__(self, next_stage: pykka.ActorRef[Any] | None, done: Callable[[int], None]) -> None:
        super().__init__()
        self.next_stage = next_stage
        self.done = done
        self.state = make_state(64, seed=3)

    def on_receive(self, message: Any) -> Any:
        handled = apply(self.state, message)
        if self.next_stage is not None:
            self.next_stage.tell(message)
        else:
            self.done(handled)
        return None


class _Pipeline:
    """`PIPELINE` stages in a line; `run(n)` tells n messages to the first and waits for the last."""

    def __init__(self, make: Callable[[pykka.ActorRef[Any] | None, Callable[[int], None], int], Any]) -> None:
        self.reached = 0
        self.want = 0
        self.event = threading.Event()
        head: pykka.ActorRef[Any] | None = None
        self.refs = []
        for k in reversed(range(PIPELINE)):
            head = make(head, self._done, k)
            self.refs.append(head)
        assert head is not None
        self.head = head

    def _done(self, handled: int) -> None:
        self.reached = handled
        if handled >= self.want:
            self.event.set()

    def run(self, msgs: list[tuple[str, int, float]]) -> int:
        self.event.clear()
        self.want = self.reached + len(msgs)
        tell = self.head.tell
        t0 = time.perf_counter_ns()
        for m in msgs:
            tell(m)
        if not self.event.wait(120):
            raise TimeoutError(f"pipeline: the last stage reached {self.reached} of {self.want}")
        return time.perf_counter_ns() - t0

    def stop(self) -> None:
        for ref in reversed(self.refs):
            ref.stop()


def bench_pipeline(cfg: Config, tmp: str) -> None:
    print(f"\n== pipeline: {PIPELINE} actors in a line, end to end; PersistentActor (process) vs plain pykka ==")
    store = SegmentStore(os.path.join(tmp, "pipeline"), durability="process")
    persistent = _Pipeline(lambda nxt, done, k: Stage.start(nxt, done, persistence_id=f"stage-{k}", store=store))
    plain = _Pipeline(lambda nxt, done, k: PlainStage.start(nxt, done))
    pool = messages_for(100_000)
    try:
        n_p = min(calibrate(lambda n: persistent.run(pool[:n]), cfg.round_s, 500), len(pool))
        n_b = min(calibrate(lambda n: plain.run(pool[:n]), cfg.round_s, 500), len(pool))
        a, b = Rate(), Rate()
        alternate(
            [lambda: a.add(n_p, persistent.run(pool[:n_p])), lambda: b.add(n_b, plain.run(pool[:n_b]))], cfg.rounds
        )
        ratio = compare(
            "pipeline throughput",
            "msg/s",
            (f"{PIPELINE} PersistentActors", a.summary()),
            (f"{PIPELINE} plain pykka actors", b.summary()),
            higher_is_better=True,
            policy="process",
        )
        print(f"{'arm':<28} {'runs':>4} | {'median msg/s':>12} {'p99 msg/s':>10}")
        for name, r in (("PersistentActor pipeline", a), ("plain pykka pipeline", b)):
            print(f"{name:<28} {r.runs:>4} | {fmt_rate(r.median):>12} {fmt_rate(r.p99):>10}")
        print(f"ratio: {ratio:.2f}x", flush=True)
    finally:
        persistent.stop()
        plain.stop()
        store.close()


# --------------------------------------------------------------------------- restart


def _crashed_big_bank(store: SegmentStore, pid: str, sup: Any = None) -> pykka.ActorRef[Any]:
    """A BigBank with its snapshot and `JOURNALED` messages behind it, then crashed."""
    ref = sup.spawn(BigBank, persistence_id=pid) if sup is not None else BigBank.start(persistence_id=pid, store=store)
    for m in messages_for(JOURNALED):
        ref.tell(m)
    ref.tell(("crash", pid))
    return ref


def bench_restart(cfg: Config, tmp: str) -> None:
    print(f"\n== restart: crashed actor, ~1 MB object-rich snapshot + {JOURNALED} journaled messages behind it ==")
    d = tempfile.mkdtemp(prefix="restart-", dir=tmp)
    store = SegmentStore(os.path.join(d, "store"), durability="process")
    sup = Supervisor.start(store=store, max_restarts=10**6, period=1.0)
    # The same restart on a store without its latest-record cache: the snapshot is read
    # from the segment and decompressed, as after a process restart.
    uncached = SegmentStore(os.path.join(d, "uncached"), durability="process", cache_bytes=0)
    sup_uncached = Supervisor.start(store=uncached, max_restarts=10**6, period=1.0)
    sup_ms: list[float] = []
    uncached_ms: list[float] = []
    start_ns = Times()
    floor_ns = Times()
    counter = {"n": 0}
    payload_size = {"raw": 0}
    try:

        def supervised(on: Any, st: SegmentStore, out: list[float]) -> Callable[[], None]:
            def run() -> None:
                counter["n"] += 1
                pid = f"sup-{counter['n']}"
                ref = _crashed_big_bank(st, pid, on)
                # Wait blocked, not polling: a poll every millisecond would take the GIL
                # from the restart it measures. An ask that reached the crashing life
                # fails; the next one waits for the new life, which answers once ready.
                try:
                    handled = ref.ask("sync", timeout=60)
                except ActorCrashedError:
                    handled = ref.ask("sync", timeout=60)
                last_ms = on.stats()[pid].last_ms  # its report came before that answer
                if last_ms is None:
                    raise TimeoutError(f"{pid} answered but did not report a restart")
                out.append(last_ms)
                if handled != JOURNALED:  # the snapshot's state + the replayed journal
                    problem(f"restart: supervised actor handled {handled}, expected {JOURNALED} (replayed)")
                ref.stop()

            return run

        def run_start() -> None:
            counter["n"] += 1
            pid = f"own-{counter['n']}"
            ref = _crashed_big_bank(store, pid)
            ref.actor_stopped.wait(60)
            t0 = time.perf_counter_ns()
            again = BigBank.start(persistence_id=pid, store=store)
            handled = again.ask("sync")
            start_ns.ns.append(time.perf_counter_ns() - t0)
            if handled != JOURNALED:
                problem(f"restart: restored actor handled {handled}, expected {JOURNALED} (replayed)")
            again.stop()

        snap_payload: dict[str, bytes] = {}
        msgs = messages_for(JOURNALED)

        def run_floor() -> None:
            if not snap_payload:
                record = store.latest("own-1")  # written by the warm-up
                assert record is not None
                snap_payload["p"] = record.payload[8:]  # the pickled state, after the watermark
                payload_size["raw"] = len(record.payload)
            t0 = time.perf_counter_ns()
            # The floor: unpickle, then the actor's on_receive called directly
            # (on a stand-in holding the state) for each journaled message.
            holder = types.SimpleNamespace(state=pickle.loads(snap_payload["p"]))
            for m in msgs:
                BigBank.on_receive(holder, m)  # type: ignore[arg-type]
            floor_ns.ns.append(time.perf_counter_ns() - t0)

        run_start()  # warm-up, and a snapshot for the floor
        start_ns.ns.clear()
        alternate(
            [supervised(sup, store, sup_ms), supervised(sup_uncached, uncached, uncached_ms), run_start, run_floor],
            cfg.restart_rounds,
        )
        sup_t = Times([int(ms * 1e6) for ms in sup_ms])
        uncached_t = Times([int(ms * 1e6) for ms in uncached_ms])
        ratio = sup_t.median_ms / floor_ns.median_ms
        ok = ratio <= 1.3
        print(f"   snapshot payload {payload_size['raw'] / 1e6:.2f} MB pickled, {BigBank.n_accounts} accounts")
        print(f"{'arm':<52} {'runs':>4} | {'median ms':>9} {'p99 ms':>8} | {'vs floor':>8}")
        rows = (
            ("Supervisor restart (stats: failure -> ready)", sup_t),
            ("  same, store with cache_bytes=0 (snapshot from disk)", uncached_t),
            ("PersistentActor.start() + first ask (caller)", start_ns),
            ("floor: pickle.loads + on_receive on 1,000 messages", floor_ns),
        )
        for name, t in rows:
            print(
                f"{name:<52} {t.runs:>4} | {t.median_ms:>9.2f} {t.p99_ms:>8.2f} | "
                f"{t.median_ms / floor_ns.median_ms:>7.2f}x",
                flush=True,
            )
        print(f"ratio supervisor restart / floor: {ratio:.2f}x   target <= 1.3x {verdict(ok)}", flush=True)
        params = {"snapshot_bytes": payload_size["raw"], "journaled": JOURNALED}
        for arm, t in (
            ("Supervisor restart", sup_t),
            ("Supervisor restart, cache_bytes=0", uncached_t),
            ("PersistentActor.start + ask", start_ns),
        ):
            compare(
                "restart, 1 MB state + 1,000 journaled",
                "ms",
                (arm, t.summary()),
                ("floor: unpickle + handler", floor_ns.summary()),
                higher_is_better=False,
                **params,
            )
        target(
            "restart_1mb_1000",
            "one actor, 1 MB state + 1,000 journaled messages: restart <= 1.3x its floor",
            f"{ratio:.2f}x ({sup_t.median_ms:.1f} vs {floor_ns.median_ms:.1f} ms, {sup_t.runs} runs)",
            ok,
        )
    finally:
        sup.stop()
        sup_uncached.stop()
        pykka.ActorRegistry.stop_all()
        store.close()
        uncached.close()
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- restore


def bench_restore(cfg: Config, tmp: str) -> None:
    n = cfg.restore_actors
    print(f"\n== restore: start {n} PersistentActors with ~100 KB states and ask each ==")
    d = tempfile.mkdtemp(prefix="restore-", dir=tmp)
    path = os.path.join(d, "store")
    pids = [f"actor-{i:04}" for i in range(n)]
    try:
        with SegmentStore(path) as store:
            for i, pid in enumerate(pids):  # each actor's first life: one message, a snapshot on stop
                ref = Restored.start(make_state(Restored.n_accounts, seed=1000 + i), persistence_id=pid, store=store)
                ref.ask("sync")
                ref.stop()
            payloads = [store.latest(pid).payload[8:] for pid in pids]  # type: ignore[union-attr]  # state after the watermark
        size = statistics.mean(map(len, payloads))
        print(f"   {n} snapshots of {size / 1e3:.0f} KB pickled (mean); store opened outside the timing")
        store = SegmentStore(path)
        a, b = Times(), Times()
        try:

            def run_persistent() -> None:
                t0 = time.perf_counter_ns()
                refs = [Restored.start(persistence_id=pid, store=store) for pid in pids]
                answers = [ref.ask("sync", block=False) for ref in refs]
                got = pykka.get_all(answers, timeout=60)
                a.ns.append(time.perf_counter_ns() - t0)
                for ref in refs:
                    ref.stop(block=False)
                pykka.ActorRegistry.stop_all()
                if list(got) != [0] * n:
                    problem(f"restore: unexpected answers {list(got)[:3]}")

            def run_floor() -> None:
                t0 = time.perf_counter_ns()
                states = [pickle.loads(p) for p in payloads]
                refs = [PlainRestored.start(state) for state in states]
                answers = [ref.ask("sync", block=False) for ref in refs]
                pykka.get_all(answers, timeout=60)
                b.ns.append(time.perf_counter_ns() - t0)
                pykka.ActorRegistry.stop_all()

            run_persistent()
            run_floor()
            a.ns.clear()
            b.ns.clear()
            alternate([run_persistent, run_floor], cfg.restore_rounds)
        finally:
            pykka.ActorRegistry.stop_all()
            store.close()
        ratio = a.median_ms / b.median_ms
        ok = ratio <= 1.3
        print(f"{'arm':<52} {'runs':>4} | {'median ms':>9} {'p99 ms':>8}")
        for name, t in (
            (f"{n} x PersistentActor.start + ask", a),
            (f"floor: {n} x pickle.loads + pykka start + ask", b),
        ):
            print(f"{name:<52} {t.runs:>4} | {t.median_ms:>9.2f} {t.p99_ms:>8.2f}", flush=True)
        print(f"ratio restore / floor: {ratio:.2f}x   target <= 1.3x {verdict(ok)}", flush=True)
        compare(
            "whole-process restore",
            "ms",
            (f"{n} x PersistentActor.start + ask", a.summary()),
            ("floor: unpickle + pykka start + ask", b.summary()),
            higher_is_better=False,
            actors=n,
            snapshot_bytes_mean=size,
        )
        target(
            "restore_actors",
            f"{n:,} actors, 100 KB each: whole-process restore <= 1.3x its floor",
            f"{ratio:.2f}x ({a.median_ms:.0f} vs {b.median_ms:.0f} ms, {a.runs} runs)",
            ok,
        )
    finally:
        shutil.rmtree(d, ignore_errors=True)


SECTIONS: dict[str, Callable[[Config, str], None]] = {
    "tell": bench_tell,
    "pipeline": bench_pipeline,
    "ask": bench_ask,
    "restart": bench_restart,
    "restore": bench_restore,
}


def config(quick: bool) -> Config:
    """The sizes of a quick or a full run."""
    if quick:
        return Config(
            True,
            rounds=3,
            round_s=0.03,
            ask_rounds=3,
            asks_per_round=100,
            restart_rounds=3,
            restore_actors=20,
            restore_rounds=3,
        )
    return Config(
        False,
        rounds=15,
        round_s=0.2,
        ask_rounds=11,
        asks_per_round=1000,
        restart_rounds=21,
        restore_actors=1000,
        restore_rounds=5,
    )
