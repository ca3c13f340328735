"""A store that holds bytes somebody else wrote: replay runs only what the proxy exposes.

The journal of a `PersistentActor` records proxy calls and sets as plain lists (so that
`MsgpackSerializer` can store them). On restore those lists become pykka messages again;
a list the library could not have written (a private or dunder name, an attribute that is
not traversable, a wrong shape) must be refused with `JournalRecordError`, logged, and
never executed, whatever the serializer. Decoding with msgpack runs no code; this makes
replaying what was decoded run none either.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pykka
import pytest

from pyactors import (
    JournalRecordError,
    Kind,
    MsgpackSerializer,
    PersistentActor,
    PickleSerializer,
    SegmentStore,
    SerializationError,
    recover,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from pyactors import Serializer

#: What the private methods below were made to do (they must never be reached by replay).
FIRED: list[str] = []


@pykka.traversable
class Tally:
    """A traversable attribute: its public methods are reachable through the proxy."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, n: int) -> None:
        self.count += n

    def _secret(self) -> None:
        FIRED.append("tally._secret")


class Opaque:
    """A plain attribute: the proxy reads it as a value, never goes through it."""

    def reset(self) -> None:
        FIRED.append("opaque.reset")


class Target(PersistentActor):
    """An actor with public, private, traversable and opaque attributes."""

    snapshot_every = 1

    def __init__(self) -> None:
        super().__init__()
        self.state: dict[str, Any] = {"n": 0, "received": []}
        self.tally = Tally()
        self.opaque = Opaque()
        self.label = "start"

    def on_receive(self, message: Any) -> Any:
        self.state["received"].append(message)
        return None

    def bump(self, n: int = 1) -> None:
        self.state["n"] += n

    def _private(self) -> None:
        FIRED.append("_private")


@pytest.fixture(params=["pickle", "msgpack"])
def serializer(request: pytest.FixtureRequest) -> Serializer:
    return PickleSerializer() if request.param == "pickle" else MsgpackSerializer()


@pytest.fixture
def hostile(store_path: Path, serializer: Serializer) -> Iterator[SegmentStore]:
    FIRED.clear()
    with SegmentStore(store_path, serializer=serializer) as s:
        yield s
    FIRED.clear()


def _journal(store: SegmentStore, *entries: Any) -> None:
    """Append journal entries as an earlier life (or somebody else) left them."""
    for entry in entries:
        store.append("t", store.serializer.dumps(entry), kind=Kind.MESSAGE)


def _start(store: SegmentStore) -> tuple[pykka.ActorRef[Target], dict[str, Any]]:
    ref = Target.start(persistence_id="t", store=store)
    proxy = ref.proxy()
    seen = {
        "state": proxy.state.get(timeout=10),
        "tally": proxy.tally.count.get(timeout=10),
        "label": proxy.label.get(timeout=10),
    }
    return ref, seen


def test_the_shell_command_of_issue_14_is_refused_and_never_runs(
    hostile: SegmentStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flag = tmp_path / "flag"
    # The record of the report: a proxy call through the store's serializer to os.system.
    _journal(hostile, [1, False, ["store", "serializer", "_msgpack", "os", "system"], [f"touch {flag}"], {}])
    _journal(hostile, [1, False, ["bump"], [3], {}])
    with caplog.at_level(logging.ERROR, logger="pyactors.actor"):
        ref, seen = _start(hostile)
    ref.stop()
    assert not flag.exists()
    assert seen["state"]["n"] == 3  # the next entry was replayed
    refused = [r for r in caplog.records if "refused, not replayed" in r.getMessage()]
    assert len(refused) == 1
    assert "journal record #1 of 't'" in refused[0].getMessage()
    assert "'_msgpack' is not exposed by the proxy" in refused[0].getMessage()


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ([1, False, ["_private"], [], {}], "'_private' is not exposed"),
        ([1, False, ["__class__", "__init__"], [], {}], "'__class__' is not exposed"),
        ([1, False, ["bump", "__globals__"], [], {}], "'__globals__' is not exposed"),
        ([1, False, ["tally", "_secret"], [], {}], "'_secret' is not exposed"),
        ([1, False, ["actor_ref", "stop"], [], {}], "'actor_ref' is not exposed"),
        ([1, False, ["opaque", "reset"], [], {}], "'opaque' is not traversable"),
        ([1, False, ["store", "append"], ["x", b"y"], {}], "'store' is not traversable"),
        ([1, False, ["label"], [], {}], "'label' is not a method"),
        ([1, False, ["missing"], [], {}], "'missing' is not a method"),
        ([2, False, ["_private"], None], "'_private' is not exposed"),
        ([2, False, ["opaque", "x"], 1], "'opaque' is not traversable"),
        ([2, False, ["actor_ref"], None], "'actor_ref' is not exposed"),
        ([1, False], "not a tagged journal entry"),
        ("not a list", "not a tagged journal entry"),
        ([9, False, "x"], "not a tagged journal entry"),
        ([[1], False, "x"], "not a tagged journal entry"),
        ([1, "yes", ["bump"], [], {}], "not a tagged journal entry"),
        ([1, False, ["bump"], []], "a tag-1 entry has 5 fields, this one 4"),
        ([0, True, "m", "extra"], "a tag-0 entry has 3 fields, this one 4"),
        ([1, False, [], [], {}], "attribute path is not a list of names"),
        ([1, False, "bump", [], {}], "attribute path is not a list of names"),
        ([1, False, ["bump", 7], [], {}], "attribute path is not a list of names"),
        ([1, False, ["bump"], 5, {}], "arguments are not a list and a dict of names"),
        ([1, False, ["bump"], [], {"1": 2, 3: 4}], "arguments are not a list and a dict of names"),
    ],
)
def test_an_entry_the_proxy_could_not_have_sent_is_refused_logged_and_skipped(
    hostile: SegmentStore, entry: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    _journal(hostile, entry, [1, False, ["bump"], [], {}])
    with caplog.at_level(logging.ERROR, logger="pyactors.actor"):
        ref, seen = _start(hostile)
    ref.stop()
    assert FIRED == []
    assert seen == {"state": {"n": 1, "received": []}, "tally": 0, "label": "start"}
    messages = [r.getMessage() for r in caplog.records if "refused, not replayed" in r.getMessage()]
    assert len(messages) == 1
    assert "journal record #1 of 't'" in messages[0]
    assert reason in messages[0]


def test_a_refused_entry_is_covered_by_the_next_snapshot_and_not_refused_again(
    hostile: SegmentStore, caplog: pytest.LogCaptureFixture
) -> None:
    _journal(hostile, [1, False, ["_private"], [], {}])
    ref, _ = _start(hostile)
    ref.stop()
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="pyactors.actor"):
        ref, seen = _start(hostile)
    ref.stop()
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
    assert seen["state"]["n"] == 0
    # The record itself is kept: nothing accepted is deleted by a refusal.
    assert [r.seq for r in hostile.read("t", kinds=[Kind.MESSAGE])] == [1]


def test_what_the_proxy_exposes_is_replayed(hostile: SegmentStore) -> None:
    _journal(
        hostile,
        [1, False, ["bump"], [2], {}],
        [1, False, ["bump"], [], {"n": 5}],
        [1, False, ["tally", "add"], [4], {}],
        [2, False, ["label"], "set"],
        [2, False, ["tally", "count"], 40],
        [1, False, ["tally", "add"], [2], {}],
        [0, True, "an ask"],
    )
    ref, seen = _start(hostile)
    ref.stop()
    assert seen == {"state": {"n": 7, "received": ["an ask"]}, "tally": 42, "label": "set"}


def test_the_refusal_is_a_typed_error_naming_the_record() -> None:
    error = JournalRecordError("t", 7, "'_x' is not exposed by the proxy")
    assert (error.persistence_id, error.seq, error.reason) == ("t", 7, "'_x' is not exposed by the proxy")
    assert str(error) == "journal record #7 of 't' refused, not replayed: '_x' is not exposed by the proxy"


def test_a_snapshot_too_short_for_its_watermark_is_a_serialization_error(hostile: SegmentStore) -> None:
    hostile.append("t", b"abc", kind=Kind.SNAPSHOT)
    with pytest.raises(SerializationError, match="a snapshot of 3 bytes holds no 8-byte watermark"):
        recover(hostile)
