"""Replay every committed fuzz input through the atheris target's checks.

``tests/data/fuzz/store/`` holds the inputs the atheris target crashed with (named after
the bug) and a small seed; the Rust target ``open_dir`` reads the same format, so its
inputs under ``tests/data/fuzz/open_dir/`` are replayed here too, through the Python path.
"""

from __future__ import annotations

from pathlib import Path

import fuzz_store
import pytest
from fuzz_store import check, check_journal, unpack
from seeds import JOURNAL_SEEDS

from pyactors import MsgpackSerializer

DATA = Path(__file__).parent.parent / "data" / "fuzz"
INPUTS = sorted((DATA / "store").iterdir()) + sorted((DATA / "open_dir").iterdir())


def test_there_are_inputs_to_replay() -> None:
    assert any(p.parent.name == "store" for p in INPUTS)


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_fuzz_input_passes_the_store_checks(path: Path) -> None:
    check(path.read_bytes())


def test_unpack_reads_the_documented_layout() -> None:
    data = bytes([0]) + bytes([0]) + (7).to_bytes(8, "little") + (3).to_bytes(2, "little") + b"abc"
    data += bytes([1]) + (7).to_bytes(8, "little") + (9).to_bytes(2, "little") + b"xy"  # cut short
    assert unpack(data) == [("00000000000000000007.seg", b"abc"), ("00000000000000000007.idx", b"xy")]


@pytest.mark.parametrize("entry", JOURNAL_SEEDS, ids=repr)
def test_journal_seeds_pass_the_replay_checks(entry: object) -> None:
    check_journal(MsgpackSerializer().dumps(entry))


def test_the_journal_check_catches_replay_that_lets_a_private_call_through(monkeypatch: pytest.MonkeyPatch) -> None:
    # The property can fail: with replay's refusal switched off, the private call runs.
    monkeypatch.setattr(fuzz_store, "_refusal", lambda _actor, _message: None)
    with pytest.raises((AssertionError, fuzz_store._Reached)):
        check_journal(MsgpackSerializer().dumps([1, False, ["inner", "_secret"], [], {}]))
