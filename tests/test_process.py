"""Process-level supervision (`pyactors.process`, ``pyactors supervise``) with real processes and SIGKILL."""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from pyactors import SegmentStore
from pyactors.cli import main
from pyactors.process import ProcessSupervisor, WorkerSpec, heartbeat

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

WORKER = Path(__file__).with_name("_worker.py")
T = TypeVar("T")


def _wait_for(predicate: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    """Wait (bounded) until `predicate()` is truthy and return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _lines(log: Path, kind: str) -> list[list[str]]:
    """The log lines of `kind` (``start``, ``tick``, ...), split into words."""
    if not log.exists():
        return []
    return [line.split() for line in log.read_text().splitlines() if line.split()[:1] == [kind]]


def _worker(name: str, log: Path, *args: str) -> WorkerSpec:
    return WorkerSpec(name, [sys.executable, str(WORKER), *args], env={"PYACTORS_TEST_LOG": str(log)})


def _records(store: Path, stream: str) -> list[bytes]:
    with SegmentStore(store) as s:
        records = list(s.read(stream))
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    return [r.payload for r in records]


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@contextmanager
def _running(supervisor: ProcessSupervisor) -> Iterator[list[int]]:
    """Run `supervisor` on a thread; stop it (bounded) on exit. Yields the list `run()`'s status lands in."""
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(supervisor.run()), daemon=True)
    thread.start()
    assert supervisor.wait_started(10)
    try:
        yield status
    finally:
        assert supervisor.stop(timeout=15), "run() did not return after stop()"
        thread.join(5)


def test_sigkilled_worker_is_restarted_and_resumes_from_its_segments(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, log = tmp_path / "store", tmp_path / "log"
    sup = ProcessSupervisor(store, [_worker("ticker", log, "tick", "--interval", "0.01")], backoff_initial=0.05)
    with caplog.at_level("INFO", logger="pyactors.process"), _running(sup):
        _wait_for(lambda: len(_lines(log, "tick")) >= 5, "five ticks")
        first = sup.stats("ticker")
        assert first.state == "ready"
        assert first.pid is not None
        assert first.restarts == 0
        os.kill(first.pid, signal.SIGKILL)
        killed_pid = first.pid
        acked = max(int(seq) for _, pid, seq in _lines(log, "tick") if int(pid) == killed_pid)

        start = _wait_for(lambda: [s for s in _lines(log, "start") if int(s[1]) != killed_pid], "the second life")
        _wait_for(lambda: sup.stats("ticker").last_recovery_ms is not None, "the recovery time")
        new_pid = int(start[0][1])
        _wait_for(lambda: len([t for t in _lines(log, "tick") if int(t[1]) == new_pid]) >= 3, "ticks of the new life")
        stats = sup.stats("ticker")

    # The new life found every record its predecessor had acknowledged: it resumed from the segments.
    assert int(start[0][2]) >= acked >= 5
    assert stats.restarts == 1
    assert stats.starts == 2
    assert stats.pid == new_pid
    assert stats.last_reason == "killed by SIGKILL"
    assert stats.last_recovery_ms is not None
    assert stats.last_recovery_ms > 0
    assert stats.p50_recovery_ms == stats.p99_recovery_ms == stats.last_recovery_ms
    assert stats.recovery_ms == (stats.last_recovery_ms,)
    assert _pid_gone(killed_pid)
    restarted = [r.getMessage() for r in caplog.records if "restarted" in r.getMessage()]
    assert len(restarted) == 1
    assert "killed by SIGKILL" in restarted[0]
    assert "ready in" in restarted[0]
    assert sup.stats("ticker").state == "stopped"

    payloads = _records(store, "ticker")
    owners = [int(p.split()[-1]) for p in payloads]
    assert owners[:acked] == [killed_pid] * acked  # nothing acknowledged was lost, seqs are contiguous
    assert new_pid in owners
    for sub in ("heartbeats", "inbox", "inbox/accepted"):
        assert stat.S_IMODE((store / sub).stat().st_mode) == 0o700


def test_inbox_submission_runs_the_submit_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, log = tmp_path / "store", tmp_path / "log"
    monkeypatch.setenv("PYACTORS_TEST_LOG", str(log))  # submission workers inherit the supervisor's environment
    inbox = store / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "early.txt").write_text("dropped before the start")
    sup = ProcessSupervisor(store, on_submit=[sys.executable, str(WORKER), "submit", "{path}"])
    with _running(sup):
        _wait_for(lambda: _lines(log, "submit"), "the early submission")
        # Written in place, in two parts: it must be taken when its writer closes it, not before.
        with (inbox / "job 1.txt").open("w") as f:
            f.write("hello ")
            f.flush()
            time.sleep(0.2)
            f.write("world")
        # Written elsewhere and renamed in.
        staged = tmp_path / "job-2.txt"
        staged.write_text("renamed in")
        staged.rename(inbox / "job-2.txt")
        _wait_for(lambda: len(_lines(log, "submit")) == 3, "three submissions")
        _wait_for(lambda: all(s.state == "done" for s in sup.all_stats().values()), "the submission workers to end")

    accepted = inbox / "accepted"
    runs = dict(line.split(" ", 2)[2].split("\t") for line in log.read_text().splitlines())
    assert runs == {
        str(accepted / "early.txt"): "dropped before the start",
        str(accepted / "job 1.txt"): "hello world",
        str(accepted / "job-2.txt"): "renamed in",
    }
    assert sorted(p.name for p in inbox.iterdir()) == ["accepted"]
    assert sorted(p.name for p in accepted.iterdir()) == ["early.txt", "job 1.txt", "job-2.txt"]
    stats = sup.stats("submit-job_1.txt")
    assert stats.state == "done"
    assert stats.submission == str(accepted / "job 1.txt")
    assert set(sup.all_stats()) == {"submit-early.txt", "submit-job_1.txt", "submit-job-2.txt"}


def test_restart_intensity_gives_up_and_reports_failed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "log"
    sup = ProcessSupervisor(
        tmp_path / "store",
        [_worker("crasher", log, "crash")],
        max_restarts=3,
        period=60,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    assert sup.run() == 1
    stats = sup.stats("crasher")
    assert stats.state == "failed"
    assert stats.restarts == 3
    assert stats.starts == 4
    assert stats.last_reason == "exited with status 3"
    assert stats.pid is None
    assert len(_lines(log, "crash")) == 4
    assert any("giving up" in r.getMessage() for r in caplog.records)


def test_fail_fast_stops_every_worker(tmp_path: Path) -> None:
    log = tmp_path / "log"
    sup = ProcessSupervisor(
        tmp_path / "store",
        [_worker("sleeper", log, "sleep"), _worker("crasher", log, "crash")],
        max_restarts=1,
        backoff_initial=0.01,
        fail_fast=True,
        stop_grace=5,
    )
    assert sup.run() == 1
    assert sup.stats("crasher").state == "failed"
    assert sup.stats("sleeper").state == "stopped"
    sleeper_pid = int(_lines(log, "sleep")[0][1])
    assert _pid_gone(sleeper_pid)


def test_backoff_delays_grow(tmp_path: Path) -> None:
    sup = ProcessSupervisor(
        tmp_path / "store",
        [_worker("crasher", tmp_path / "log", "crash")],
        max_restarts=4,
        backoff_initial=0.1,
        backoff_max=0.3,
    )
    assert sup.run() == 1
    spawns = sup.stats("crasher").spawn_times
    gaps = [b - a for a, b in itertools.pairwise(spawns)]
    assert len(gaps) == 4
    for gap, delay in zip(gaps, [0.1, 0.2, 0.3, 0.3], strict=True):  # doubling, capped at backoff_max
        assert gap >= delay


def test_hung_worker_is_killed_and_restarted(tmp_path: Path) -> None:
    store, log = tmp_path / "store", tmp_path / "log"
    sup = ProcessSupervisor(
        store,
        [_worker("ticker", log, "tick", "--interval", "0.02", "--hang-after", "3")],
        heartbeat_timeout=0.5,
        backoff_initial=0.05,
    )
    with _running(sup):
        hung_pid = int(_wait_for(lambda: _lines(log, "hanging"), "the worker to hang")[0][1])
        _wait_for(lambda: sup.stats("ticker").state == "ready" and sup.stats("ticker").restarts == 1, "the restart")
        stats = sup.stats("ticker")
        assert _pid_gone(hung_pid)  # SIGKILLed, although it never exited by itself
    assert stats.last_reason is not None
    assert stats.last_reason.startswith("hung: no heartbeat for")
    assert stats.last_recovery_ms is not None
    starts = _lines(log, "start")
    assert [int(s[2]) for s in starts[:2]] == [0, 4]  # the new life resumed after the four records of the hung one


def test_worker_without_heartbeat_is_hung_after_the_grace_period(tmp_path: Path) -> None:
    sup = ProcessSupervisor(
        tmp_path / "store",
        [_worker("silent", tmp_path / "log", "sleep")],
        heartbeat_grace=0.3,
        max_restarts=1,
        backoff_initial=0.01,
    )
    assert sup.run() == 1
    stats = sup.stats("silent")
    assert stats.state == "failed"
    assert stats.restarts == 1
    assert stats.last_reason is not None
    assert stats.last_reason.startswith("hung: no heartbeat")
    assert all(_pid_gone(int(words[1])) for words in _lines(tmp_path / "log", "sleep"))


def test_stop_before_run_returns_at_once(tmp_path: Path) -> None:
    sup = ProcessSupervisor(tmp_path / "store", [_worker("never", tmp_path / "log", "sleep")])
    assert sup.stop()
    assert sup.run() == 0
    assert sup.stats("never").state == "stopped"
    assert sup.stats("never").starts == 0


def test_heartbeat_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYACTORS_HEARTBEAT", raising=False)
    assert heartbeat() is False
    path = tmp_path / "beat"
    monkeypatch.setenv("PYACTORS_HEARTBEAT", str(path))
    assert heartbeat() is True
    assert path.read_text().split()[0] == str(os.getpid())
    assert heartbeat(min_interval=60) is False  # too soon after the previous one
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---------------------------------------------------------------------------- the command line


def _cli(*args: str, log: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYACTORS_TEST_LOG": str(log)}
    return subprocess.run(
        [sys.executable, "-m", "pyactors", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_cli_runs_a_worker_to_completion(tmp_path: Path) -> None:
    store, log = tmp_path / "store", tmp_path / "log"
    command = shlex.join([sys.executable, str(WORKER), "tick", "--until", "5", "--interval", "0.01"])
    done = _cli("supervise", str(store), "--worker", f"counter={command}", "--backoff-initial", "0.05", log=log)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no restart, nothing to say
    assert len(_records(store, "counter")) == 5


def test_cli_config_file_and_one_line_per_restart(tmp_path: Path) -> None:
    store, log = tmp_path / "store", tmp_path / "log"
    config = tmp_path / "supervise.toml"
    argv = [sys.executable, str(WORKER), "tick", "--until", "6", "--interval", "0.01", "--crash-after", "2"]
    config.write_text(
        "backoff_initial = 0.05\nmax_restarts = 2\nheartbeat_timeout = 30\n\n"
        "[[worker]]\n"
        'name = "counter"\n'
        f"command = [{', '.join(repr(a) for a in argv)}]\n"
        f'env = {{ PYACTORS_TEST_LOG = "{log}" }}\n'
    )
    done = _cli("supervise", str(store), "--config", str(config), log=log)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "worker 'counter' restarted (exited with status 1): ready in" in lines[0]
    assert [int(s[2]) for s in _lines(log, "start")] == [0, 2]
    assert len(_records(store, "counter")) == 6


def test_cli_sigterm_stops_workers_and_exits_0(tmp_path: Path) -> None:
    log = tmp_path / "log"
    command = shlex.join([sys.executable, str(WORKER), "sleep"])
    env = {**os.environ, "PYACTORS_TEST_LOG": str(log)}
    argv = [sys.executable, "-m", "pyactors", "supervise", str(tmp_path / "store"), "-w", f"s={command}"]
    with subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True) as proc:
        worker_pid = int(_wait_for(lambda: _lines(log, "sleep"), "the worker")[0][1])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert _pid_gone(worker_pid)


def test_a_sigkilled_supervisor_leaves_no_worker_running(tmp_path: Path) -> None:
    log, store = tmp_path / "log", tmp_path / "store"
    ticking = shlex.join([sys.executable, str(WORKER), "tick", "--until", "1000000", "--interval", "0.01"])
    sleeping = shlex.join([sys.executable, str(WORKER), "sleep"])
    env = {**os.environ, "PYACTORS_TEST_LOG": str(log)}
    argv = [sys.executable, "-m", "pyactors", "supervise", str(store), "-w", f"a={ticking}", "-w", f"b={sleeping}"]
    with subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True) as proc:
        pids = {int(line[1]) for kind in ("tick", "sleep") for line in _wait_for(partial(_lines, log, kind), kind)[:1]}
        proc.kill()
        assert proc.wait(timeout=15) == -signal.SIGKILL
    # The kernel kills each worker with its supervisor: none keeps running, none keeps the store locked.
    _wait_for(lambda: all(_pid_gone(pid) for pid in pids), "the workers to die with their supervisor")
    with SegmentStore(store) as s:
        assert s.last_seq("a") > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[[worker]]\nname = "w"\n', "'command' is required"),
        ('[[worker]]\nname = "w"\ncommand = "x"\nnice = 3\n', "unknown key(s) nice"),
        ('max_restarts = "many"\n[[worker]]\nname = "w"\ncommand = ["x"]\n', "max_restarts must be a number"),
        ('[[worker]]\nname = "bad/name"\ncommand = ["x"]\n', "invalid worker name"),
        ("[[worker]\n", "invalid TOML"),
        ('restart = "always"\n', "unknown key 'restart'"),
    ],
)
def test_cli_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    assert main(["supervise", str(tmp_path / "store"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pyactors supervise: error: config {config}"), err
    assert message in err
    assert not (tmp_path / "store").exists()  # nothing was started


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["supervise", str(tmp_path / "s"), "--worker", "no-equals-sign"]) == 2
    assert "expected NAME=COMMAND" in capsys.readouterr().err
    assert main(["supervise", str(tmp_path / "s")]) == 2
    assert "nothing to supervise" in capsys.readouterr().err
    assert main(["supervise", str(tmp_path / "s"), "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["supervise"]) == 2  # argparse: STORE_DIR is required
    assert "STORE_DIR" in capsys.readouterr().err
