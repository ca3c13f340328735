"""Segment-store benchmark: `SegmentStore` side by side with its baselines.

The ``store`` area of ``pyactors bench`` (``--only store``). Every comparison
alternates the contender and its baselines round by round (order rotated every
round) so that drift hits all, and prints the run count, median, p99 and the ratio
of the medians, with the targets and "met"/"MISSED".

Comparisons:

* appends/s and MB/s for 100 B, 1 KB and 64 KB semi-compressible payloads under
  each durability policy, one append per call and batched (``append_many``),
  against a pure-Python writer with the same record framing: per record a reused
  ``zstandard.ZstdCompressor`` (level 3), ``zlib.crc32`` over header + payload,
  ``struct.pack`` of the header and one ``os.writev`` to an ``O_APPEND`` fd
  (batched: one ``os.writev`` per batch). Durability: process = nothing more,
  sync = ``os.fdatasync`` after each append (batched: after each batch), group = a
  background thread fdatasyncing every 5 ms. And sqlite3 in WAL mode, one table
  ``(stream, seq, kind, payload)``, payloads stored as they are: process =
  ``synchronous=OFF``, group = ``NORMAL`` (WAL: synced at checkpoints), sync =
  ``FULL``; single = one autocommitted INSERT per record, batched = one transaction
  of ``executemany`` per batch.
* ``sync`` with 8 (and 16, 32) threads appending at once vs one thread (pyactors
  only), with the appends covered by each fdatasync.
* opening a store holding 1 GB (``--quick``: 128 MB) in sealed segments.
* restoring the latest 100 KB snapshot of each of 100 streams after open
  (``latest_many``) vs decompressing the same 100 zstd frames with ``zstandard``.
* auth: a store with an ``auth_key`` (HMAC-SHA256 per record) vs one without,
  appends (single and batched, ``process``) and reads of 100 B and 1 KB records.

Throughput rows: one sample per round (records / round time); "p99" is the slow
tail, i.e. the rate at the 99th percentile of the per-record round time. MB/s
counts raw (uncompressed) payload bytes.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import sqlite3
import statistics
import struct
import tempfile
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import zstandard

from pyactors import Durability, Kind, SegmentStore
from pyactors.bench._harness import NS, Rate, Times, compare, figure, percentile, problem, target, verdict

__all__ = ["SECTIONS", "Config", "PyWriter", "SqliteWriter", "config", "payload_pool", "semi_compressible"]

BATCH = 100
STREAMS = [f"actor-{i}" for i in range(16)]
SIZES = {"100B": 100, "1KB": 1024, "64KB": 64 * 1024}
POLICIES: tuple[Durability, ...] = ("process", "group", "sync")
GROUP_COMMIT_MS = 5.0
LEVEL = 3

# Record framing, little endian (docs/FORMAT.md):
# { crc32c u32 | body_len u32 | offset u64 | seq u64 | timestamp_us i64
#   | kind u8 | flags u8 | stream_len u16 | raw_len u32 | stream | payload }
_HEAD = struct.Struct("<IQQqBBHI")  # body_len .. raw_len: 36 bytes
_CRC = struct.Struct("<I")
_BODY_FIXED = 32  # bytes counted by body_len before the stream id
_FLAG_ZSTD = 1


# --------------------------------------------------------------------------- baseline


class PyWriter:
    """The pure-Python writer: the store's record framing, written with os calls.

    Args:
        path: The file to append to (created, mode 0600).
        durability: ``"process"``, ``"group"`` or ``"sync"``.
        group_commit_ms: Under ``"group"``, the flusher thread's period.
    """

    def __init__(self, path: str, durability: str, group_commit_ms: float = GROUP_COMMIT_MS) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.durability = durability
        self.cctx = zstandard.ZstdCompressor(level=LEVEL)
        self.seqs: dict[str, int] = {}
        self.offset = 0
        self._dirty = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if durability == "group":
            self._flusher = threading.Thread(target=self._flush_loop, args=(group_commit_ms / 1000,), daemon=True)
            self._flusher.start()

    def _flush_loop(self, period: float) -> None:
        while not self._stop.wait(period):
            if self._dirty:
                self._dirty = False
                os.fdatasync(self.fd)

    def _frame(self, stream: str, payload: bytes, kind: int) -> tuple[bytes, bytes, bytes]:
        data = self.cctx.compress(payload)
        sid = stream.encode()
        seq = self.seqs.get(stream, 0) + 1
        self.seqs[stream] = seq
        head = (
            _HEAD.pack(
                _BODY_FIXED + len(sid) + len(data),
                self.offset,
                seq,
                time.time_ns() // 1000,
                kind,
                _FLAG_ZSTD,
                len(sid),
                len(payload),
            )
            + sid
        )
        crc = zlib.crc32(data, zlib.crc32(head))
        self.offset += 4 + len(head) + len(data)
        return _CRC.pack(crc), head, data

    def append(self, stream: str, payload: bytes, kind: int = Kind.MESSAGE) -> int:
        """Append one record; return its sequence number."""
        parts = self._frame(stream, payload, kind)
        os.writev(self.fd, parts)
        if self.durability == "sync":
            os.fdatasync(self.fd)
        elif self.durability == "group":
            self._dirty = True
        return self.seqs[stream]

    def append_many(self, records: Sequence[tuple[str, bytes]]) -> None:
        """Append a batch in one write (and under ``sync`` one fdatasync)."""
        parts: list[bytes] = []
        for stream, payload in records:
            parts.extend(self._frame(stream, payload, Kind.MESSAGE))
        os.writev(self.fd, parts)
        if self.durability == "sync":
            os.fdatasync(self.fd)
        elif self.durability == "group":
            self._dirty = True

    def close(self) -> None:
        """Stop the flusher, fdatasync and close."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        os.fdatasync(self.fd)
        os.close(self.fd)


_SQLITE_SYNC = {"process": "OFF", "group": "NORMAL", "sync": "FULL"}


class SqliteWriter:
    """The sqlite3 baseline: WAL mode, the ``synchronous`` setting matching `durability`.

    Args:
        path: The database file.
        durability: ``"process"`` (``OFF``), ``"group"`` (``NORMAL``) or ``"sync"`` (``FULL``).
    """

    def __init__(self, path: str, durability: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={_SQLITE_SYNC[durability]}")
        self.conn.execute("CREATE TABLE log (stream TEXT, seq INTEGER, kind INTEGER, payload BLOB)")
        self.seqs: dict[str, int] = {}
        self._insert = "INSERT INTO log VALUES (?, ?, ?, ?)"

    def _row(self, stream: str, payload: bytes) -> tuple[str, int, int, bytes]:
        seq = self.seqs.get(stream, 0) + 1
        self.seqs[stream] = seq
        return (stream, seq, int(Kind.MESSAGE), payload)

    def append(self, stream: str, payload: bytes) -> None:
        """One record in its own (autocommitted) transaction."""
        self.conn.execute(self._insert, self._row(stream, payload))

    def append_many(self, records: Sequence[tuple[str, bytes]]) -> None:
        """A batch in one transaction."""
        self.conn.execute("BEGIN")
        self.conn.executemany(self._insert, [self._row(s, p) for s, p in records])
        self.conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


# --------------------------------------------------------------------------- payloads

_WORDS = [
    "actor",
    "mailbox",
    "snapshot",
    "stream",
    "segment",
    "offset",
    "checkpoint",
    "workflow",
    "thread",
    "node",
    "state",
    "message",
    "durable",
    "recovery",
    "replay",
    "supervisor",
    "restart",
    "counter",
    "ledger",
    "account",
    "balance",
    "order",
    "invoice",
    "customer",
    "shipment",
    "queue",
    "event",
    "handler",
    "timeout",
    "retry",
    "commit",
    "journal",
]


def _doc(rng: random.Random, i: int) -> bytes:
    """One pickled dict: the kind of thing actors persist."""
    return pickle.dumps(
        {
            "id": i,
            "user": f"user-{rng.randrange(10_000)}",
            "event": rng.choice(_WORDS),
            "ts": 1.7e9 + rng.random() * 1e6,
            "amount": round(rng.random() * 1000, 2),
            "tags": rng.sample(_WORDS, 3),
            "ref": rng.randbytes(8).hex(),
            "note": " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(4, 16))),
        },
        protocol=5,
    )


def semi_compressible(size: int, seed: int) -> bytes:
    """`size` bytes of concatenated pickled dicts (zstd ratio about 2-3x)."""
    rng = random.Random(seed)
    out = bytearray()
    i = 0
    while len(out) < size:
        out += _doc(rng, i)
        i += 1
    return bytes(out[:size])


def payload_pool(size: int, n: int = 32, seed: int = 0) -> list[bytes]:
    """`n` distinct semi-compressible payloads of `size` bytes."""
    return [semi_compressible(size, seed * 1000 + k) for k in range(n)]


# --------------------------------------------------------------------------- output


def fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


APPEND_HEADER = (
    f"{'size':<5} {'policy':<8} {'mode':<7} {'runs':>4} | "
    f"{'pyactors rec/s':>14} {'MB/s':>7} {'p99 rec/s':>9} | "
    f"{'python rec/s':>12} {'p99':>7} | {'sqlite rec/s':>12} {'p99':>7} | {'vs py':>6} {'vs sqlite':>9}  target"
)


def record_append_row(
    size: str, nbytes: int, policy: str, mode: str, a: Rate, b: Rate, c: Rate, goal: float | None
) -> None:
    params = {"size": size, "payload_bytes": nbytes, "policy": policy, "mode": mode}
    ratio = compare(
        "append",
        "rec/s",
        ("pyactors", a.summary()),
        ("pure-Python writer", b.summary()),
        higher_is_better=True,
        **params,
    )
    ratio_sq = compare(
        "append", "rec/s", ("pyactors", a.summary()), ("sqlite3 WAL", c.summary()), higher_is_better=True, **params
    )
    figure("append MB/s", "pyactors", "MB/s", a.summary(nbytes / 1e6), **params)
    figure("append MB/s", "pure-Python writer", "MB/s", b.summary(nbytes / 1e6), **params)
    figure("append MB/s", "sqlite3 WAL", "MB/s", c.summary(nbytes / 1e6), **params)
    print(
        f"{size:<5} {policy:<8} {mode:<7} {a.runs:>4} | "
        f"{fmt_rate(a.median):>14} {a.median * nbytes / 1e6:>7.1f} {fmt_rate(a.p99):>9} | "
        f"{fmt_rate(b.median):>12} {fmt_rate(b.p99):>7} | {fmt_rate(c.median):>12} {fmt_rate(c.p99):>7} | "
        f"{ratio:>5.2f}x {ratio_sq:>8.2f}x",
        flush=True,
    )
    if goal is not None:
        target(
            f"append_{size}_{policy}_{mode}",
            f"{mode} appends of {size} records under `{policy}`: >= {goal:g}x the pure-Python writer",
            f"{ratio:.2f}x ({fmt_rate(a.median)} vs {fmt_rate(b.median)} rec/s, {a.runs} runs)",
            ratio >= goal,
        )


# --------------------------------------------------------------------------- harness


@dataclass
class Config:
    """Sizes of one run."""

    quick: bool
    sizes: tuple[str, ...]
    rounds: int
    round_s: float
    max_round_bytes: int
    thread_counts: tuple[int, ...]
    thread_rounds: int
    open_bytes: int
    open_runs: int
    restore_streams: int
    restore_rounds: int


def calibrate(run: Callable[[int], int | None], unit_bytes: int, cfg: Config, start: int) -> int:
    """Pick a per-round count so that a round takes about `cfg.round_s` (bytes bounded)."""
    n = start
    for _ in range(2):
        t0 = time.perf_counter_ns()
        run(n)
        dt = max(time.perf_counter_ns() - t0, 1)
        want = int(n * cfg.round_s * NS / dt)
        n = max(want, 1)
    return max(1, min(n, cfg.max_round_bytes // unit_bytes))


def alternate(
    arms: Sequence[tuple[Callable[[int], int | None], int]],
    rounds: int,
    samples: Sequence[Rate],
    records_per_unit: int,
) -> None:
    """Run each arm `rounds` times, order rotated every round.

    An arm may return its own elapsed nanoseconds (to exclude set-up); else the
    call is timed.
    """
    k = len(arms)
    for r in range(rounds):
        for j in range(k):
            idx = (r + j) % k
            run, n = arms[idx]
            t0 = time.perf_counter_ns()
            own = run(n)
            elapsed = time.perf_counter_ns() - t0 if own is None else own
            samples[idx].add(n * records_per_unit, elapsed)


def bench_appends(cfg: Config, tmp: str) -> None:
    print("\n== appends: SegmentStore vs pure-Python writer (same framing, same durability) ==")
    print(f"   batched = append_many / one write of {BATCH} records; {len(STREAMS)} streams round robin")
    print(APPEND_HEADER, flush=True)
    for size_name in cfg.sizes:
        nbytes = SIZES[size_name]
        pool = payload_pool(nbytes, seed=nbytes)
        ratio = sum(len(p) for p in pool) / sum(len(zstandard.ZstdCompressor(level=LEVEL).compress(p)) for p in pool)
        print(f"   ({size_name} payloads: zstd level {LEVEL} ratio {ratio:.2f}x)", flush=True)
        for policy in POLICIES:
            for mode in ("single", "batched"):
                try:
                    one_append_comparison(cfg, tmp, size_name, nbytes, pool, policy, mode)
                except Exception as exc:  # report and go on with the other rows
                    problem(f"append {size_name} {policy} {mode}: {type(exc).__name__}: {exc}")
                    traceback.print_exc()


def one_append_comparison(
    cfg: Config, tmp: str, size_name: str, nbytes: int, pool: list[bytes], policy: Durability, mode: str
) -> None:
    d = tempfile.mkdtemp(prefix=f"append-{size_name}-{policy}-{mode}-", dir=tmp)
    store = SegmentStore(os.path.join(d, "store"), durability=policy, group_commit_ms=GROUP_COMMIT_MS)
    writer = PyWriter(os.path.join(d, "python.log"), policy)
    sqlite = SqliteWriter(os.path.join(d, "sqlite.db"), policy)
    # Items are built outside the timed loops (on first use at a size), shared by both arms.
    items_cache: list[tuple[str, bytes]] = []

    def items(n: int) -> list[tuple[str, bytes]]:
        nonlocal items_cache
        if n > len(items_cache):
            items_cache = [(STREAMS[i % len(STREAMS)], pool[i % len(pool)]) for i in range(n)]
        return items_cache

    store_count = 0
    try:
        runs: list[Callable[[int], None]]
        if mode == "single":

            def single(append: Callable[[str, bytes], object]) -> Callable[[int], None]:
                def run(n: int) -> None:
                    its = items(n)
                    for i in range(n):
                        s, p = its[i]
                        append(s, p)

                return run

            runs = [single(w.append) for w in (store, writer, sqlite)]
            unit, start = 1, 20 if policy == "sync" or nbytes > 4096 else 200
            prepare: Callable[[int], object] = items
        else:
            batches: list[list[tuple[str, bytes]]] = []

            def get_batches(n: int) -> list[list[tuple[str, bytes]]]:
                nonlocal batches
                if n > len(batches):
                    its = items(n * BATCH)
                    batches = [its[j * BATCH : (j + 1) * BATCH] for j in range(n)]
                return batches

            def batched(append_many: Callable[[list[tuple[str, bytes]]], object]) -> Callable[[int], None]:
                def run(n: int) -> None:
                    bs = get_batches(n)
                    for j in range(n):
                        append_many(bs[j])

                return run

            runs = [batched(w.append_many) for w in (store, writer, sqlite)]
            unit, start = BATCH, 2 if policy == "sync" or nbytes > 4096 else 10
            prepare = get_batches
        store_run, run_python, run_sqlite = runs

        def run_store(n: int) -> None:
            nonlocal store_count
            store_run(n)
            store_count += n * unit

        n_store = calibrate(run_store, unit * nbytes, cfg, start)
        n_python = calibrate(run_python, unit * nbytes, cfg, start)
        n_sqlite = calibrate(run_sqlite, unit * nbytes, cfg, start)
        prepare(max(n_store, n_python, n_sqlite))  # build the inputs before any timed round
        a, b, c = Rate(), Rate(), Rate()
        alternate([(run_store, n_store), (run_python, n_python), (run_sqlite, n_sqlite)], cfg.rounds, [a, b, c], unit)
        goal = None
        if size_name == "100B" and policy == "process" and mode == "batched":
            goal = 10.0
        record_append_row(size_name, nbytes, policy, mode, a, b, c, goal)
        got = sum(store.last_seq(s) for s in STREAMS)
        if got != store_count:
            problem(f"append {size_name} {policy} {mode}: sum of last_seq = {got}, appended {store_count}")
    finally:
        store.close()
        writer.close()
        sqlite.close()
        shutil.rmtree(d, ignore_errors=True)


def bench_threads(cfg: Config, tmp: str) -> None:
    print("\n== sync: N threads appending at once vs 1 thread (pyactors only, 100 B records) ==")
    pool = payload_pool(100, seed=7)
    d = tempfile.mkdtemp(prefix="threads-", dir=tmp)
    store = SegmentStore(os.path.join(d, "store"), durability="sync")
    counts = cfg.thread_counts
    total = {"n": 0}
    syncs = dict.fromkeys(counts, 0)
    appended = dict.fromkeys(counts, 0)
    try:

        def make_run(threads_n: int) -> Callable[[int], int]:
            def run(n: int) -> int:
                per = max(1, n // threads_n)
                barrier = threading.Barrier(threads_n + 1)
                errors: list[BaseException] = []

                def worker(k: int) -> None:
                    stream = f"t{k}"
                    append = store.append
                    barrier.wait()
                    try:
                        for i in range(per):
                            append(stream, pool[(i + k) % len(pool)])
                    except BaseException as exc:
                        errors.append(exc)

                ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads_n)]
                for t in ts:
                    t.start()
                syncs_before = store.stats()["syncs"]
                barrier.wait()
                t0 = time.perf_counter_ns()
                for t in ts:
                    t.join()
                elapsed = time.perf_counter_ns() - t0
                if errors:
                    raise errors[0]
                syncs[threads_n] += store.stats()["syncs"] - syncs_before
                appended[threads_n] += per * threads_n
                total["n"] += per * threads_n
                return elapsed  # from the barrier release: thread start-up excluded

            return run

        runs = {k: make_run(k) for k in counts}
        sizes = {k: max(k, calibrate(runs[k], 100, cfg, 20 * k) // k * k) for k in counts}
        rates = {k: Rate() for k in counts}
        alternate([(runs[k], sizes[k]) for k in counts], cfg.thread_rounds, [rates[k] for k in counts], 1)
        one = rates[1]
        print(
            f"{'arm':<22} {'runs':>4} | {'median rec/s':>12} {'p99 rec/s':>10}"
            f" {'vs 1 thread':>11} {'per fdatasync':>13}"
        )
        for k in counts:
            r = rates[k]
            label = f"{k} thread{'s' if k > 1 else ''}, sync"
            per_sync = appended[k] / max(1, syncs[k])
            print(
                f"{label:<22} {r.runs:>4} | {fmt_rate(r.median):>12} {fmt_rate(r.p99):>10}"
                f" {r.median / one.median:>10.2f}x {per_sync:>13.1f}"
            )
        ratio = rates[8].median / one.median
        ok = ratio >= 5.0
        print(f"ratio 8 threads / 1 thread: {ratio:.2f}x   (issue 2: >= 5x {verdict(ok)})", flush=True)
        for k in counts[1:]:
            compare(
                "sync appends, N threads vs 1",
                "rec/s",
                (f"{k} threads", rates[k].summary()),
                ("1 thread", one.summary()),
                higher_is_better=True,
                appends_per_fdatasync=appended[k] / max(1, syncs[k]),
            )
        got = sum(store.last_seq(f"t{k}") for k in range(max(counts)))
        if got != total["n"]:
            problem(f"sync threads: sum of last_seq = {got}, appended {total['n']}")
    finally:
        store.close()
        shutil.rmtree(d, ignore_errors=True)


def _seg_files(path: str) -> list[tuple[str, int]]:
    return sorted((e.name, e.stat().st_size) for e in os.scandir(path) if e.name.endswith(".seg"))


def bench_open(cfg: Config, tmp: str) -> None:
    target_mb = cfg.open_bytes // 2**20
    print(f"\n== open: SegmentStore(path) + close() on a store of {target_mb} MiB in sealed segments ==")
    d = tempfile.mkdtemp(prefix="open-", dir=tmp)
    path = os.path.join(d, "store")
    try:
        rng = random.Random(1)
        pool = [rng.randbytes(64 * 1024) for _ in range(64)]  # incompressible
        streams = [f"actor-{i:03}" for i in range(100)]
        t0 = time.perf_counter_ns()
        appended = 0
        with SegmentStore(path, durability="process", segment_bytes=64 * 2**20) as store:
            # Append until the sealed segments (every file but the newest) hold the
            # target: the active segment has then just rolled and is nearly empty.
            while sum(s for _, s in _seg_files(path)[:-1]) < cfg.open_bytes:
                store.append_many([(streams[(appended + k) % 100], pool[(appended + k) % 64]) for k in range(4)])
                appended += 4
        build_s = (time.perf_counter_ns() - t0) / NS
        segs = _seg_files(path)
        sealed = sum(s for _, s in segs[:-1])
        idx = [e.name for e in os.scandir(path) if e.name.endswith(".idx")]
        print(
            f"   built in {build_s:.1f} s: {appended} records of 64 KiB, {len(segs)} segment files "
            f"({sealed / 2**20:.0f} MiB sealed, active {segs[-1][1] / 1024:.0f} KiB), {len(idx)} index files",
            flush=True,
        )
        wall = Times()
        own: list[float] = []
        reports = []
        for _ in range(3):  # warm the page cache and any one-off work
            SegmentStore(path).close()
        for _ in range(cfg.open_runs):
            t0 = time.perf_counter_ns()
            s = SegmentStore(path)
            s.close()
            wall.ns.append(time.perf_counter_ns() - t0)
            own.append(s.open_report.elapsed_ms)
            reports.append(s.open_report)
        ok = wall.median_ms < 20.0
        rep = reports[-1]
        print(f"{'arm':<36} {'runs':>4} | {'median ms':>9} {'p99 ms':>8}")
        print(
            f"{'open + close (wall)':<36} {wall.runs:>4} | {wall.median_ms:>9.2f} {wall.p99_ms:>8.2f}"
            f"   target < 20 ms {verdict(ok)}"
        )
        print(
            f"{'open_report.elapsed_ms (store own)':<36} {len(own):>4} | "
            f"{statistics.median(own):>9.2f} {percentile(own, 99):>8.2f}"
        )
        print(
            f"   open report: segments={rep.segments} records={rep.records} truncated_bytes={rep.truncated_bytes} "
            f"dropped={rep.dropped_records} damaged={len(rep.damaged)} rebuilt_indexes={len(rep.rebuilt_indexes)}",
            flush=True,
        )
        if rep.records != appended:
            problem(f"open: open_report.records = {rep.records}, appended {appended}")
        if rep.truncated_bytes or rep.dropped_records or rep.damaged or rep.rebuilt_indexes:
            problem(f"open: clean store reported repairs: {rep}")
        figure(
            "open + close",
            "SegmentStore",
            "ms",
            wall.summary(),
            store_bytes=sum(s for _, s in segs),
            segments=len(segs),
            records=appended,
        )
    finally:
        shutil.rmtree(d, ignore_errors=True)


def bench_restore(cfg: Config, tmp: str) -> None:
    n = cfg.restore_streams
    print(f"\n== restore: latest 100 KB snapshot of each of {n} streams, after open ==")
    d = tempfile.mkdtemp(prefix="restore-", dir=tmp)
    path = os.path.join(d, "store")
    try:
        streams = [f"actor-{i:03}" for i in range(n)]
        latest: dict[str, bytes] = {}
        with SegmentStore(path, segment_bytes=4 * 2**20) as store:
            for version in range(3):
                for i, s in enumerate(streams):
                    store.append(s, semi_compressible(300, seed=i * 10 + version))
                    snap = semi_compressible(100 * 1000, seed=100_000 + i * 10 + version)
                    store.append(s, snap, kind=Kind.SNAPSHOT)
                    latest[s] = snap
        payloads = [latest[s] for s in streams]
        frames = [zstandard.ZstdCompressor(level=LEVEL).compress(p) for p in payloads]
        raw_mb = sum(map(len, payloads)) / 1e6
        print(
            f"   {len(_seg_files(path))} segments of 4 MiB; 3 snapshot versions per stream; "
            f"{raw_mb:.1f} MB raw, {sum(map(len, frames)) / 1e6:.1f} MB compressed",
            flush=True,
        )
        # Correctness once, outside timing.
        with SegmentStore(path) as store:
            got = store.latest_many(streams)
        bad = [s for s in streams if (rec := got[s]) is None or rec.payload != latest[s]]
        if bad:
            problem(f"restore: latest_many returned wrong/missing payloads for {len(bad)} streams, e.g. {bad[:3]}")

        a, b = Times(), Times()

        def run_store() -> int:
            store = SegmentStore(path)  # open: not timed
            try:
                t0 = time.perf_counter_ns()
                store.latest_many(streams)
                return time.perf_counter_ns() - t0
            finally:
                store.close()

        def run_zstd() -> int:
            t0 = time.perf_counter_ns()
            dctx = zstandard.ZstdDecompressor()
            for f in frames:
                dctx.decompress(f)
            return time.perf_counter_ns() - t0

        run_store()
        run_zstd()
        for r in range(cfg.restore_rounds):
            if r % 2 == 0:
                a.ns.append(run_store())
                b.ns.append(run_zstd())
            else:
                b.ns.append(run_zstd())
                a.ns.append(run_store())
        ratio = a.median_ms / b.median_ms
        ok = ratio <= 1.3
        print(f"{'arm':<40} {'runs':>4} | {'median ms':>9} {'p99 ms':>8} {'MB/s':>7}")
        for name, t in (("store.latest_many(100 streams)", a), ("zstandard decompress loop (1 dctx)", b)):
            print(f"{name:<40} {t.runs:>4} | {t.median_ms:>9.2f} {t.p99_ms:>8.2f} {raw_mb / (t.median_ms / 1e3):>7.0f}")
        print(f"ratio latest_many / zstandard loop: {ratio:.2f}x   (issue 2: <= 1.3x {verdict(ok)})", flush=True)
        compare(
            f"latest snapshot of {n} streams",
            "ms",
            ("store.latest_many", a.summary()),
            ("zstandard decompress loop", b.summary()),
            higher_is_better=False,
            snapshot_bytes=100_000,
        )
    finally:
        shutil.rmtree(d, ignore_errors=True)


AUTH_KEY = b"bench key: 32 bytes, not secret."


def _auth_arms(store: SegmentStore, pool: list[bytes]) -> dict[str, Callable[[int], None]]:
    """The timed operations of the auth section on one store: n appends, n batches, n reads."""
    batch = [(STREAMS[i % len(STREAMS)], pool[i % len(pool)]) for i in range(BATCH)]

    def append(n: int) -> None:
        for i in range(n):
            store.append(STREAMS[i % len(STREAMS)], pool[i % len(pool)])

    def append_many(n: int) -> None:
        for _ in range(n):
            store.append_many(batch)

    def read(n: int) -> None:
        for _ in range(n):
            for _record in store.read("read"):
                pass

    return {"append": append, "append_many": append_many, "read": read}


def bench_auth(cfg: Config, tmp: str) -> None:
    """A store with an ``auth_key`` (HMAC-SHA256 per record) vs one without, same operations."""
    print("\n== auth: SegmentStore(auth_key=...) vs no key (process durability) ==")
    print(
        f"{'size':<5} {'op':<14} {'runs':>4} | {'keyed rec/s':>11} {'p99':>7} | {'plain rec/s':>11} {'p99':>7} | ratio"
    )
    reads = 2000
    for size_name, nbytes in (("100B", 100), ("1KB", 1024)):
        pool = payload_pool(nbytes, seed=nbytes + 1)
        d = tempfile.mkdtemp(prefix=f"auth-{size_name}-", dir=tmp)
        stores = [SegmentStore(os.path.join(d, "keyed"), auth_key=AUTH_KEY), SegmentStore(os.path.join(d, "plain"))]
        try:
            for s in stores:
                s.append_many([("read", pool[i % len(pool)]) for i in range(reads)])
            keyed, plain = (_auth_arms(s, pool) for s in stores)
            for op, unit, start in (("append", 1, 200), ("append_many", BATCH, 10), ("read", reads, 1)):
                n = min(calibrate(arms[op], unit * nbytes, cfg, start) for arms in (keyed, plain))
                a, b = Rate(), Rate()
                alternate([(keyed[op], n), (plain[op], n)], cfg.rounds, [a, b], unit)
                ratio = compare(
                    f"{op} with auth_key",
                    "records/s",
                    ("keyed store", a.summary()),
                    ("no key", b.summary()),
                    higher_is_better=True,
                    record_bytes=nbytes,
                )
                print(
                    f"{size_name:<5} {op:<14} {a.runs:>4} | {fmt_rate(a.median):>11} {fmt_rate(a.p99):>7} | "
                    f"{fmt_rate(b.median):>11} {fmt_rate(b.p99):>7} | {ratio:.2f}x",
                    flush=True,
                )
        finally:
            for s in stores:
                s.close()
            shutil.rmtree(d, ignore_errors=True)


SECTIONS: dict[str, Callable[[Config, str], None]] = {
    "appends": bench_appends,
    "threads": bench_threads,
    "open": bench_open,
    "restore": bench_restore,
    "auth": bench_auth,
}


def config(quick: bool) -> Config:
    """The sizes of a quick or a full run."""
    if quick:
        return Config(
            True,
            sizes=("100B", "1KB"),
            rounds=3,
            round_s=0.02,
            max_round_bytes=4 * 2**20,
            thread_counts=(1, 8),
            thread_rounds=3,
            open_bytes=16 * 2**20,
            open_runs=10,
            restore_streams=20,
            restore_rounds=5,
        )
    return Config(
        False,
        sizes=tuple(SIZES),
        rounds=15,
        round_s=0.15,
        max_round_bytes=32 * 2**20,
        thread_counts=(1, 8, 16, 32),
        thread_rounds=11,
        open_bytes=2**30,
        open_runs=50,
        restore_streams=100,
        restore_rounds=30,
    )
