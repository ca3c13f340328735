"""A fork server for the crash harness: one process that has imported pyactors forks a child per life.

Starting an interpreter and importing pyactors costs far more than a crash-test life
needs, so the test starts this script once (`ForkServer`) and asks it for children.
The server never opens a store nor starts a thread, so `os.fork()` is safe; each child
is a real process, running `_workload.run_child`, that the test kills with a real
SIGKILL. The child's pipe (its acknowledgements) is handed to the test over a Unix
socket (`SCM_RIGHTS`), so the test reads it directly; the server only forks and reaps.

Run as ``python _forkserver.py FD``, FD being its end of a ``SOCK_SEQPACKET`` socket pair.
Requests and replies are JSON messages:

    {"op": "spawn", "path", "durability", "life", "seed", "drain", "long_write"} -> {"pid"} + the pipe's read end
    {"op": "wait", "pid"} -> {"status"}: the exit code (negative: killed by that signal)
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

SERVER = Path(__file__)


class ForkServer:
    """The test's handle on a fork server process; its output goes to `log`."""

    def __init__(self, log: Path) -> None:
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock.settimeout(120)
        with log.open("ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, str(SERVER), str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        theirs.close()
        self.log = log

    def _request(self, **request: Any) -> tuple[dict[str, Any], list[int]]:
        self._sock.send(json.dumps(request).encode())
        msg, fds, _, _ = socket.recv_fds(self._sock, 4096, 1)
        if not msg:
            raise AssertionError(f"the fork server died: {self.log.read_text()[-3000:]}")
        reply: dict[str, Any] = json.loads(msg)
        return reply, fds

    def spawn(self, path: Path, durability: str, life: int, seed: int, **options: bool) -> tuple[int, int]:
        """Fork a child running life `life` on `path` (`options`: of `run_child`); return its pid and pipe."""
        reply, fds = self._request(op="spawn", path=str(path), durability=durability, life=life, seed=seed, **options)
        return reply["pid"], fds[0]

    def wait(self, pid: int) -> int:
        """Reap child `pid`; return its exit code (``-signal.SIGKILL`` when killed)."""
        reply, _ = self._request(op="wait", pid=pid)
        status: int = reply["status"]
        return status

    def close(self) -> None:
        """Stop the server (it exits when its socket closes)."""
        self._sock.close()
        self._proc.wait(timeout=60)


class Lines:
    """The lines a child wrote to its pipe, read without blocking past a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lines: list[str] = []
        self.eof = False
        self._partial = b""

    def read(self, timeout: float) -> None:
        """Read what arrives within `timeout` seconds (complete lines go to `lines`)."""
        if self.eof or not select.select([self.fd], [], [], max(0.0, timeout))[0]:
            return
        data = os.read(self.fd, 1 << 16)
        if not data:
            self.eof = True
            return
        *complete, self._partial = (self._partial + data).split(b"\n")
        self.lines.extend(line.decode() for line in complete)

    def close(self) -> None:
        """Close the pipe."""
        os.close(self.fd)


def serve(sock: socket.socket) -> None:
    """Answer requests until the test closes its end of the socket."""
    from _workload import run_child

    while True:
        msg = sock.recv(4096)
        if not msg:
            return
        req = json.loads(msg)
        if req["op"] == "wait":
            _, status = os.waitpid(req["pid"], 0)
            sock.send(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode())
            continue
        r, w = os.pipe()
        del req["op"]
        pid = os.fork()
        if pid == 0:
            try:
                sock.close()
                os.close(r)
                run_child(w, **req)
            finally:
                os._exit(4)
        os.close(w)
        socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], [r])
        os.close(r)


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
