"""Bad arguments and hostile payload sizes: typed errors, nothing written, no panic.

Every out-of-range option or argument is `InvalidArgumentError` naming the argument;
a zstd bomb in a store costs a bounded amount of memory (checked in a child process
under an address-space limit, by its peak RSS: a count, not a time).
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import zstandard
from _segfile import RECORD_HEADER, crc32c, frames, segment_files

from pyactors import InvalidArgumentError, Kind, SegmentStore, _core

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

HUGE = 2**70


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("group_commit_ms", 1e300),
        ("group_commit_ms", math.nan),
        ("group_commit_ms", math.inf),
        ("group_commit_ms", -1.0),
        ("group_commit_ms", 0),
        ("group_commit_ms", 2**2000),
        ("group_commit_ms", 1e-300),
        ("segment_bytes", HUGE),
        ("segment_bytes", -1),
        ("segment_bytes", 10),
        ("cache_bytes", HUGE),
        ("cache_bytes", -1),
        ("compression_level", HUGE),
        ("compression_level", 0),
        ("compress_min_bytes", -1),
    ],
)
def test_an_out_of_range_option_is_invalid_argument_naming_it(tmp_path: Path, option: str, value: float) -> None:
    # The message names the option, the values it takes and the one given.
    with pytest.raises(InvalidArgumentError, match=rf"^{option} must be .+, got "):
        SegmentStore(tmp_path / "s", durability="group", **{option: value})
    # The error is raised before the store is touched: a good open takes the lock.
    SegmentStore(tmp_path / "s").close()


@pytest.mark.parametrize("serializer", [5, "pickle", object()])
def test_a_serializer_that_is_not_one_is_refused_before_the_store_is_opened(tmp_path: Path, serializer: Any) -> None:
    with pytest.raises(InvalidArgumentError, match=r"^serializer must have name, dumps and loads"):
        SegmentStore(tmp_path / "s", serializer=serializer)
    assert not (tmp_path / "s").exists()


def _calls(store: SegmentStore) -> list[tuple[str, Callable[[], object]]]:
    return [
        ("kind", lambda: store.append("a", b"x", kind=HUGE)),
        ("kind", lambda: store.append("a", b"x", kind=-1)),
        ("kind", lambda: store.append_many([("a", b"x"), ("a", b"y", HUGE)])),
        ("each record", lambda: store.append_many([("a", b"x"), ("a",)])),  # type: ignore[list-item]
        ("each record", lambda: store.append_many([("a", b"x", 2, 3)])),  # type: ignore[list-item]
        ("kind", lambda: store.latest("a", HUGE)),
        ("kind", lambda: store.latest_many(["a"], HUGE)),
        ("after_seq", lambda: list(store.read("a", after_seq=HUGE))),
        ("after_seq", lambda: list(store.read("a", after_seq=-1))),
        ("kind", lambda: list(store.read("a", kinds=[HUGE]))),
        ("limit", lambda: list(store.read("a", limit=HUGE))),
        ("limit", lambda: list(store.read("a", limit=-1))),
        ("after_seq", lambda: store.read_payloads("a", after_seq=HUGE)),
        ("after_seq", lambda: store.count("a", after_seq=-5)),
        ("keep_last", lambda: store.prune("a", Kind.MESSAGE, HUGE)),
        ("keep_last", lambda: store.prune("a", Kind.MESSAGE, -1)),
        ("kind", lambda: store.prune("a", HUGE, 1)),
        ("head", lambda: store.latest("a", head=-1)),
        ("min_dead_ratio", lambda: store.compact(2**2000)),
        ("min_dead_ratio", lambda: store.compact(math.nan)),
    ]


def test_every_bad_argument_is_invalid_argument_naming_it_and_nothing_is_written(tmp_path: Path) -> None:
    with SegmentStore(tmp_path / "s") as store:
        store.append("a", b"kept")
        size = sum(p.stat().st_size for p in segment_files(tmp_path / "s"))
        for name, call in _calls(store):
            with pytest.raises(InvalidArgumentError, match=rf"\b{name} must be .+, got "):
                call()
        assert [r.payload for r in store.read("a")] == [b"kept"]
        assert store.last_seq("a") == 1
        assert sum(p.stat().st_size for p in segment_files(tmp_path / "s")) == size


def test_latest_head_and_count_read_only_what_is_asked(tmp_path: Path) -> None:
    with SegmentStore(tmp_path / "s") as store:
        payload = b"12345678" + bytes(range(256)) * 40
        store.append("a", payload, kind=Kind.SNAPSHOT)
        store.append("a", b"tiny", kind=Kind.SNAPSHOT, compress=False)
        store.append("a", b"m")
        store.append("a", b"m")
        head = store.latest("a", head=2)
        assert head is not None and (head.seq, head.payload) == (2, b"ti")
        store.prune("a", Kind.SNAPSHOT, 0)
        store.append("a", payload, kind=Kind.SNAPSHOT)
        for _ in range(2):  # from the file, then (after a full `latest`) from the cache
            head = store.latest("a", head=8)
            assert head is not None and (head.seq, head.payload) == (5, b"12345678")
            assert store.latest("a") == store.latest("a", head=len(payload) + 100)
        assert store.count("a") == 3
        assert store.count("a", after_seq=3, kinds=[Kind.MESSAGE]) == 1
        assert store.count("nobody") == 0


# A child process under an address-space limit `headroom` bytes above what it maps once
# the store is open; it prints what each step gave and its peak RSS growth (bytes).
_CHILD = """
import json, resource, sys
from pyactors import SegmentStore
from pyactors.actor import recover

path, headroom = sys.argv[1], int(sys.argv[2])
store = SegmentStore(path, read_only=True)
def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + headroom, resource.RLIM_INFINITY))
out = {}
def step(name, call):
    try:
        out[name] = call()
    except Exception as exc:
        out[name] = type(exc).__name__
step("recover", lambda: [(a.persistence_id, a.watermark, a.backlog) for a in recover(store)])
step("head", lambda: store.latest("bomb", head=8).payload.hex())
step("latest", lambda: len(store.latest("bomb").payload))
step("read", lambda: [len(r.payload) for r in store.read("bomb")])
out["rss_growth"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
print(json.dumps(out))
"""

_HEADROOM = 256 << 20


def _zeros_frame(n: int) -> bytes:
    """One zstd frame of `n` zero bytes (recording its size), made a MiB at a time."""
    packer = zstandard.ZstdCompressor(level=3).compressobj(size=n)
    chunk = bytes(1 << 20)
    parts = [packer.compress(chunk[: min(len(chunk), n - at)]) for at in range(0, n, len(chunk))]
    return b"".join([*parts, packer.flush()])


def _bomb_store(path: Path, payload: bytes, raw_len: int) -> None:
    """A store whose stream "bomb" holds one snapshot: `payload` stored as a zstd frame
    whose record header says `raw_len`, its CRC valid (crafted in place of a real one)."""
    with SegmentStore(path) as store:
        store.append("bomb", b"12345678", kind=Kind.SNAPSHOT, compress=False)
    seg = segment_files(path)[-1]
    data = seg.read_bytes()
    (f,) = frames(data)
    stream = f.stream.encode()
    body = RECORD_HEADER.pack(0, 0, f.offset, f.seq, f.timestamp_us, f.kind, _core.FLAG_ZSTD, len(stream), raw_len)[8:]
    body += stream + payload
    framed = struct.pack("<I", len(body)) + body
    seg.write_bytes(data[: f.pos] + struct.pack("<I", crc32c(framed)) + framed)


def _run_child(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(_HEADROOM)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "PanicException" not in done.stderr, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_gigabyte_snapshot_bomb_is_inspected_in_bounded_memory_and_a_full_read_is_memory_error(
    tmp_path: Path,
) -> None:
    raw_len = 1 << 30  # honest: the frame and the header both say 1 GiB of zeros
    _bomb_store(tmp_path / "s", _zeros_frame(raw_len), raw_len)
    out = _run_child(tmp_path / "s")
    assert out["recover"] == [["bomb", 0, 0]]
    assert out["head"] == "00" * 8
    # 1 GiB cannot be had under the limit: MemoryError, not an abort or PanicException.
    assert out["latest"] == "MemoryError"
    assert out["read"] == "MemoryError"
    assert out["rss_growth"] < 64 << 20, out


@pytest.mark.parametrize("trailing", [False, True], ids=["frame-says-300MB", "second-frame-300MB"])
def test_a_bomb_behind_a_small_raw_len_is_corrupt_segment_in_bounded_memory(tmp_path: Path, trailing: bool) -> None:
    bomb = _zeros_frame(300 << 20)
    # Either the frame's own size disagrees with raw_len, or a 16-byte frame that agrees
    # is followed by the bomb: decoding into exactly raw_len bytes stops at the 17th.
    payload = _zeros_frame(16) + bomb if trailing else bomb
    _bomb_store(tmp_path / "s", payload, 16)
    out = _run_child(tmp_path / "s")
    assert out["latest"] == "CorruptSegmentError"
    assert out["read"] == "CorruptSegmentError"
    assert out["rss_growth"] < 64 << 20, out


def test_a_snapshot_python_cannot_copy_is_memory_error(tmp_path: Path) -> None:
    # 160 MiB fit under the limit once (decompressed by the core) but not twice (the
    # `bytes` handed to Python): the second allocation fails, MemoryError, no panic.
    raw_len = 160 << 20
    _bomb_store(tmp_path / "s", _zeros_frame(raw_len), raw_len)
    out = _run_child(tmp_path / "s")
    assert out["head"] == "00" * 8
    assert out["latest"] == "MemoryError"
    assert out["read"] == "MemoryError"


# `pyactors inspect` run under an address-space limit by this middle process, which
# then reports the exit status, the output and the peak RSS of its only child.
_INSPECT = """
import json, resource, subprocess, sys
path, limit = sys.argv[1], int(sys.argv[2])
cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
done = subprocess.run([sys.executable, "-m", "pyactors", "inspect", path, "--json"],
                      capture_output=True, text=True, preexec_fn=cap)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr[-3000:], "peak": peak}))
"""


def test_pyactors_inspect_of_a_bomb_store_under_an_address_space_limit(tmp_path: Path) -> None:
    raw_len = 1 << 30
    _bomb_store(tmp_path / "s", _zeros_frame(raw_len), raw_len)
    limit = 2 << 30  # a 1 GiB decompression (twice: bytes for Python) cannot fit
    done = subprocess.run(
        [sys.executable, "-c", _INSPECT, str(tmp_path / "s"), str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["rc"] == 0, result["err"]
    (stream,) = json.loads(result["out"])["streams"]
    assert stream["latest_snapshot"]["watermark"] == 0
    assert stream["backlog"] == 0
    # The watermark's 8 bytes were decompressed, not the snapshot's 1 GiB.
    assert result["peak"] < 256 << 20, result["peak"]


def _fuzz_store() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_store", Path(__file__).parent / "fuzz" / "fuzz_store.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_atheris_targets_argument_check_sees_only_invalid_argument_errors() -> None:
    check_arguments = _fuzz_store().check_arguments
    rng = random.Random(14)
    for _ in range(150):
        check_arguments(rng.randbytes(24))
