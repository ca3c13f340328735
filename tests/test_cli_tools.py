"""`pyactors inspect`, `verify` and `compact`: real processes on real store directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from _segfile import crc32c, frames, segment_files

from pyactors import Kind, SegmentStore

if TYPE_CHECKING:
    from pathlib import Path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyactors", *args], capture_output=True, text=True, timeout=60, check=False
    )


def _store(path: Path) -> None:
    with SegmentStore(path, segment_bytes=4096) as store:
        for i in range(40):
            store.append("actor-1", b"message %d " % i * 40)  # compressible, above compress_min_bytes
        store.append("actor-1", (8).to_bytes(8, "little") + b"state", kind=Kind.SNAPSHOT)
        for _ in range(30):
            store.append("junk", os.urandom(300))
        store.delete_stream("junk")


def test_inspect_reports_streams_kinds_sizes_compression_snapshot_and_backlog(tmp_path: Path) -> None:
    _store(tmp_path / "s")
    out = _cli("inspect", str(tmp_path / "s"), "--json")
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    streams = {s["stream"]: s for s in report["streams"]}
    actor = streams["actor-1"]
    assert actor["kinds"]["message"]["live"] == 40
    assert actor["kinds"]["snapshot"]["live"] == 1
    assert actor["kinds"]["message"]["compression_ratio"] > 1
    assert actor["latest_snapshot"]["watermark"] == 8
    assert actor["backlog"] == 32  # messages 9..40 come after the snapshot's watermark
    assert streams["junk"]["kinds"]["message"] == {**streams["junk"]["kinds"]["message"], "live": 0, "dead": 30}
    text = _cli("inspect", str(tmp_path / "s"))
    assert "actor-1" in text.stdout and "backlog 32" in text.stdout


def test_verify_exits_1_and_names_file_and_offset_of_damage(tmp_path: Path) -> None:
    _store(tmp_path / "s")
    assert _cli("verify", str(tmp_path / "s")).returncode == 0
    sealed = segment_files(tmp_path / "s")[0]
    data = bytearray(sealed.read_bytes())
    data[100] ^= 0xFF
    sealed.write_bytes(bytes(data))
    out = _cli("verify", str(tmp_path / "s"), "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert not report["ok"]
    assert [d["path"] for d in report["damaged"]] == [str(sealed)]


def test_compact_makes_the_bytes_on_disk_go_down(tmp_path: Path) -> None:
    _store(tmp_path / "s")
    out = _cli("compact", str(tmp_path / "s"), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["segments_removed"] > 0
    assert report["bytes_after"] < report["bytes_before"]


def test_inspect_and_verify_read_a_store_in_use_and_compact_refuses_it(tmp_path: Path) -> None:
    out = _cli("verify", str(tmp_path / "nope"))
    assert out.returncode == 2
    assert "no such store directory" in out.stderr
    with SegmentStore(tmp_path / "s") as live:
        live.append("actor-1", b"seen by the tools")
        inspected = _cli("inspect", str(tmp_path / "s"), "--json")
        verified = _cli("verify", str(tmp_path / "s"), "--json")
        compacted = _cli("compact", str(tmp_path / "s"))
        assert live.append("actor-1", b"the writer carries on") == 2
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["streams"][0]["kinds"]["message"]["live"] == 1
    assert verified.returncode == 0 and json.loads(verified.stdout)["records"] == 1
    assert compacted.returncode == 1
    assert "StoreLockedError" in compacted.stderr


def test_tools_open_a_keyed_store_with_auth_key_file_and_verify_reports_tampering(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(b"sixteen-byte-key and then some")
    with SegmentStore(tmp_path / "s", segment_bytes=4096, auth_key=key_file.read_bytes()) as store:
        for i in range(60):
            store.append("a", b"record %d " % i * 10)
    out = _cli("verify", str(tmp_path / "s"))
    assert out.returncode == 1
    assert "AuthenticationError" in out.stderr and "auth_key" in out.stderr
    assert _cli("verify", str(tmp_path / "s"), "--auth-key-file", str(key_file)).returncode == 0
    sealed = segment_files(tmp_path / "s")[0]
    data = bytearray(sealed.read_bytes())
    frame = frames(bytes(data))[1]
    data[frame.payload_pos] ^= 1
    data[frame.pos : frame.pos + 4] = crc32c(bytes(data[frame.pos + 4 : frame.end])).to_bytes(4, "little")
    sealed.write_bytes(bytes(data))
    out = _cli("verify", str(tmp_path / "s"), "--auth-key-file", str(key_file), "--json")
    assert out.returncode == 1
    assert [(d["path"], d["offset"]) for d in json.loads(out.stdout)["damaged"]] == [(str(sealed), frame.pos)]


def test_progress_bar_is_drawn_on_stderr_when_asked_and_never_pollutes_stdout(tmp_path: Path) -> None:
    _store(tmp_path / "s")
    for command in ("verify", "compact", "inspect"):
        out = _cli(command, str(tmp_path / "s"), "--json", "--progress", "always")
        assert out.returncode == 0, out.stderr
        assert command in out.stderr and "100%" in out.stderr, out.stderr
        json.loads(out.stdout)  # the bar is on stderr only
    size = sum(p.stat().st_size for p in segment_files(tmp_path / "s"))
    assert (
        f"{size / 1000:.1f}/{size / 1000:.1f} kB" in _cli("verify", str(tmp_path / "s"), "--progress", "always").stderr
    )
    # auto: not a terminal here, so no bar; never: no bar.
    for mode in ("auto", "never"):
        out = _cli("verify", str(tmp_path / "s"), "--progress", mode)
        assert out.returncode == 0
        assert out.stderr == ""


def test_verify_and_inspect_show_a_torn_tail_and_leave_it_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with SegmentStore(path) as store:
        for i in range(5):
            store.append("a", b"record %d " % i * 30)
    active = segment_files(path)[-1]
    data = active.read_bytes()
    last = frames(data)[-1]
    active.write_bytes(data[: last.end - 3])  # a crash's cut write: the last record lacks 3 bytes
    cut = last.end - 3 - last.pos
    out = _cli("verify", str(path), "--json")
    assert out.returncode == 0, out.stderr  # a torn tail is not damage
    assert json.loads(out.stdout)["torn_tail"] == {"bytes": cut, "records": 1}
    text = _cli("verify", str(path)).stdout
    assert f"torn tail of {cut:,} bytes (1 records)" in text
    assert text.rstrip().endswith("ok")
    assert f"torn tail of {cut:,} bytes" in _cli("inspect", str(path)).stdout
    assert active.read_bytes() == data[: last.end - 3]  # read-only: nothing repaired


def test_inspect_escapes_stream_ids_a_terminal_would_act_on(tmp_path: Path) -> None:
    path = tmp_path / "s"
    hostile = ["\x1b[2J\x1b[31mred", "right\u202eleft", "bell\a"]
    with SegmentStore(path) as store:
        for stream in [*hostile, "plain-id"]:
            store.append(stream, b"x")
    out = _cli("inspect", str(path))
    assert out.returncode == 0, out.stderr
    assert not any(c in out.stdout for c in "\x1b\u202e\a")
    for stream in hostile:
        assert ascii(stream) in out.stdout
    assert "plain-id" in out.stdout and "'plain-id'" not in out.stdout
    # JSON escapes them by itself and gives them back exactly.
    report = json.loads(_cli("inspect", str(path), "--json").stdout)
    assert sorted(s["stream"] for s in report["streams"]) == sorted([*hostile, "plain-id"])
