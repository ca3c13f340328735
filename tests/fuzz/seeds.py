"""Write seed corpora for the fuzz targets from real stores (run by ``make fuzz``).

Usage: ``python tests/fuzz/seeds.py OUT_DIR``. Creates ``OUT_DIR/<target>/`` for the
cargo fuzz targets ``decode``, ``roundtrip`` and ``open_dir`` and the atheris target
``store``: small stores made by `SegmentStore` (several sealed segments with their index
files, compressed and raw payloads, tombstones, a compaction) packed in the format that
``fuzz_store.unpack`` reads, plus their segment and index files one by one, and each
store again with its active segment's header zeroed (a lost first page: damage that a
strict open refuses and a tolerant one skips), and actor journal entries as msgpack
(`JOURNAL_SEEDS`: what the library writes and what replay must refuse).
"""

from __future__ import annotations

import hashlib
import struct
import sys
import tempfile
from pathlib import Path

from pyactors import Kind, MsgpackSerializer, SegmentStore

__all__ = ["JOURNAL_SEEDS", "main", "pack", "stores", "zero_active_header"]

#: Journal entries (see `pyactors.actor`): proxy calls and sets through public,
#: traversable, private and dunder paths, and entries of the wrong shape.
JOURNAL_SEEDS: list[object] = [
    [0, True, "an ask"],
    [1, False, ["ok"], [1, "two"], {"k": 3}],
    [1, False, ["inner", "ok"], [], {}],
    [1, True, ["inner", "_secret"], [], {}],
    [1, False, ["_private"], [], {}],
    [1, False, ["__class__", "__init__"], [], {}],
    [1, False, ["plain", "__reduce__"], [], {}],
    [2, False, ["label"], "y"],
    [2, False, ["inner", "count"], 7],
    [2, False, ["__dict__"], {}],
    [1, False],
    [7, False, ["ok"], [], {}],
]

_MAX_FILE = 0xFFFF


def pack(files: list[tuple[str, bytes]], *, fix_checksums: bool) -> bytes:
    """Pack (segment or index file name, bytes) pairs for ``open_dir`` and ``store``."""
    out = bytearray([1 if fix_checksums else 0])
    for name, content in files:
        base, suffix = name.split(".")
        out += struct.pack("<BQH", 1 if suffix == "idx" else 0, int(base), len(content))
        out += content
    return bytes(out)


def stores(root: Path) -> list[list[tuple[str, bytes]]]:
    """A few small stores, each as its list of (file name, bytes)."""
    made = []
    for n, (records, payload_len) in enumerate([(3, 20), (40, 90), (60, 400), (25, 3000)]):
        path = root / f"s{n}"
        with SegmentStore(path, segment_bytes=4096) as store:
            for i in range(records):
                stream = f"actor-{i % 3}" if n % 2 else f"wf/thread-{i % 2}"
                payload = (f"{i}:".encode() * payload_len)[:payload_len]
                store.append(stream, payload, kind=Kind.SNAPSHOT if i % 5 == 4 else Kind.MESSAGE)
            if records > 10:
                store.prune(stream, Kind.MESSAGE, keep_last=2)
                store.delete_stream("actor-0" if n % 2 else "wf/thread-0")
                store.compact(0.5)
        files = [(p.name, p.read_bytes()) for p in sorted(path.iterdir()) if p.suffix in (".seg", ".idx")]
        made.append([(name, content) for name, content in files if len(content) <= _MAX_FILE])
    return made


def zero_active_header(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """`files` with the active segment's (the last file's) 32-byte header zeroed."""
    *rest, (name, content) = files
    return [*rest, (name, bytes(32) + content[32:])]


def main() -> None:
    """Write the corpora under the directory given on the command line."""
    out = Path(sys.argv[1])
    corpora = {name: out / name for name in ("decode", "roundtrip", "open_dir", "store")}
    for d in corpora.values():
        d.mkdir(parents=True, exist_ok=True)

    def put(target: str, data: bytes) -> None:
        (corpora[target] / hashlib.sha1(data).hexdigest()).write_bytes(data)

    with tempfile.TemporaryDirectory() as tmp:
        for files in stores(Path(tmp)):
            for fix in (False, True):
                put("open_dir", pack(files, fix_checksums=fix))
            put("store", pack(files, fix_checksums=False))
            put("store", pack(files[-1:], fix_checksums=False))  # the active segment alone
            zeroed = zero_active_header(files)
            put("open_dir", pack(zeroed, fix_checksums=False))
            put("open_dir", pack(zeroed[-1:], fix_checksums=False))
            for _, content in files:
                put("decode", content)
                put("decode", content[32:])  # records at offset 0
    for entry in JOURNAL_SEEDS:
        put("store", MsgpackSerializer().dumps(entry))
    for i in range(8):
        put("roundtrip", bytes(range(i * 16, i * 16 + 40)) + b"stream-" + bytes([i]) * (i * 40))


if __name__ == "__main__":
    main()
