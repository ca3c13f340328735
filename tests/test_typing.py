"""The typed API as a user's type checker sees it: a user script under ``mypy --strict`` (issue 19).

Refs keep the actor class (`PersistentActor.start`, `Supervisor.spawn`), `Supervisor.start`
takes typed options (a misspelt strategy is a type error), and `py.typed` ships, so a
user's own code is checked against these signatures.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

USER_SCRIPT = textwrap.dedent(
    """
    from pyactors import PersistentActor, SegmentStore, Supervisor

    class Counter(PersistentActor):
        def count(self) -> int:
            return 1

    store = SegmentStore("x")
    ref = Counter.start(persistence_id="c", store=store)
    reveal_type(ref)
    reveal_type(ref.proxy())
    sup = Supervisor.start(store=store, strategy="one_for_one", max_restarts=3, period=5.0)
    reveal_type(sup)
    child = sup.spawn(Counter, persistence_id="c2")
    reveal_type(child)
    reveal_type(child.proxy())
    Supervisor.start(strategy="one_for_two")
    Supervisor.start(store=store, max_restart=3)
    """
)

EXPECTED = [
    ('Revealed type is "pykka._ref.ActorRef[user.Counter]"', 10),
    ('Revealed type is "pykka._proxy.ActorProxy[user.Counter]"', 11),
    ('Revealed type is "pyactors.supervisor.SupervisorRef"', 13),
    ('Revealed type is "pyactors.supervisor.SupervisedRef[user.Counter]"', 15),
    ('Revealed type is "pykka._proxy.ActorProxy[user.Counter]"', 16),
    ('Argument "strategy" to "start" of "Supervisor" has incompatible type "Literal[\'one_for_two\']"', 17),
    ('Unexpected keyword argument "max_restart" for "start" of "Supervisor"', 18),
]


def test_a_user_script_under_mypy_strict_keeps_the_actor_class_and_refuses_bad_options(tmp_path: Path) -> None:
    (tmp_path / "user.py").write_text(USER_SCRIPT)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = out.stdout.splitlines()
    for text, line in EXPECTED:
        assert any(f"user.py:{line}:" in got and text in got for got in lines), (text, line, out.stdout)
    errors = [got for got in lines if ": error:" in got]
    assert len(errors) == 2, out.stdout  # the two bad calls, nothing else in the script
