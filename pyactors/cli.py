"""The ``pyactors`` command line (``pyactors COMMAND ...`` or ``python -m pyactors COMMAND ...``).

Commands:
    supervise: Run worker processes on a store directory and keep them alive
        (`pyactors.process.ProcessSupervisor`); see ``docs/SUPERVISION_PROCESS.md``.
    inspect: What a store holds: streams, records by kind, sizes, compression,
        each actor's latest snapshot and backlog.
    verify: Scan every record; list every damaged one (file, offset).
    compact: Reclaim the space of deleted records.
    bench: Run the benchmark suite (`pyactors.bench`; needs the ``bench`` extra for
        the baselines, the plots and the progress bar).

``inspect`` and ``verify`` open the store read-only: they work beside a live writer,
see the store as it was when they opened it, and change nothing (a torn tail is
reported, not truncated). ``compact`` opens it as its writer (stop the process that
uses it first; otherwise it fails with ``StoreLockedError``). They draw a progress
bar on stderr (``--progress``; by default on a terminal for stores of 64 MiB or more).

Each command is one ``_add_<command>`` function that registers its sub-parser
and sets ``handler``, the function that runs it and returns the exit status.

Exit status: 0 success; 1 the command ran and failed (for ``supervise``: a
worker failed); 2 bad usage or a bad configuration file.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tomllib
from typing import TYPE_CHECKING, Any

from pyactors.errors import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pyactors.process import WorkerSpec

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "load_supervise_config", "main"]

EXIT_OK = 0
"""The command succeeded."""
EXIT_FAILED = 1
"""The command ran and failed."""
EXIT_USAGE = 2
"""Bad usage, or a bad configuration file (nothing was started)."""

_SUPERVISE_OPTIONS: dict[str, type] = {
    "max_restarts": int,
    "period": float,
    "backoff_initial": float,
    "backoff_max": float,
    "heartbeat_timeout": float,
    "heartbeat_grace": float,
    "stop_grace": float,
    "fail_fast": bool,
    "exit_when_done": bool,
}
"""The supervisor options a config file or the command line may set, with their types."""

_WORKER_KEYS = frozenset({"name", "command", "env", "cwd"})


def build_parser() -> argparse.ArgumentParser:
    """Build the ``pyactors`` argument parser, one sub-parser per command.

    Returns:
        The parser. ``parse_args`` gives a namespace whose ``handler`` runs the
        chosen command.
    """
    parser = argparse.ArgumentParser(prog="pyactors", description="Durable pykka actors on a Rust segment log.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_supervise(commands)
    _add_store_tools(commands)
    _add_bench(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pyactors`` command line.

    Args:
        argv: The arguments after the program name; None for ``sys.argv[1:]``.

    Returns:
        The exit status (`EXIT_OK`, `EXIT_FAILED`, `EXIT_USAGE`).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def _version() -> str:
    try:
        from pyactors import __version__
    except ImportError:  # pragma: no cover - the native module is missing
        return "unknown"
    return __version__


def _error(command: str, message: str) -> int:
    sys.stderr.write(f"pyactors {command}: error: {message}\n")
    return EXIT_USAGE


# ---------------------------------------------------------------------------- store tools


def _add_store_tools(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_text, handler in (
        ("inspect", "what a store holds: streams, kinds, sizes, compression, snapshots, backlogs", _inspect),
        ("verify", "scan every record and list the damaged ones (exit 1 if any)", _verify),
        ("compact", "reclaim the space of deleted records", _compact),
    ):
        p = commands.add_parser(name, help=help_text, description=help_text)
        p.add_argument("store", metavar="STORE_DIR", help="the store directory")
        p.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")
        p.add_argument(
            "--progress",
            choices=("auto", "always", "never"),
            default="auto",
            help="a progress bar on stderr (auto: on a terminal, for stores of 64 MiB or more)",
        )
        p.add_argument(
            "--auth-key-file",
            metavar="FILE",
            help="the store's auth_key: every byte of FILE (a key is never taken on the command line)",
        )
        if name == "compact":
            p.add_argument(
                "--min-dead-ratio",
                type=float,
                default=0.5,
                metavar="R",
                help="compact sealed segments at least this dead (0-1; default 0.5)",
            )
        p.set_defaults(handler=handler)


def _kind_name(kind: int, stream: str) -> str:
    from pyactors.store import LANGGRAPH_PREFIX, LANGGRAPH_VALUE_KIND, Kind

    if kind == LANGGRAPH_VALUE_KIND and stream.startswith(LANGGRAPH_PREFIX):
        return "lg-value"  # SegmentSaver's channel values and pending writes
    if kind >= 128:  # noqa: PLR2004 - the user range
        return f"user:{kind - 128}"
    if kind == 4:  # noqa: PLR2004 - the core's tombstone kind
        return "tombstone"
    try:
        return Kind(kind).name.lower()
    except ValueError:
        return f"kind:{kind}"  # reserved, written by a newer pyactors


def _run_on_store(
    command: str, args: argparse.Namespace, work: Callable[[Any, _ProgressBar], dict[str, Any]], *, read_only: bool
) -> int:
    """Open the store, run `work` (with a progress callback), print its result; the exit status is its "exit" key."""
    from pyactors.errors import PyActorsError
    from pyactors.store import SegmentStore

    if not os.path.isdir(args.store):
        return _error(command, f"{args.store}: no such store directory")
    key = None
    if args.auth_key_file is not None:
        try:
            with open(args.auth_key_file, "rb") as f:
                key = f.read()
        except OSError as exc:
            return _error(command, f"cannot read the auth key: {exc}")
    bar = _ProgressBar(args.progress, command)
    try:
        with SegmentStore(args.store, read_only=read_only, auth_key=key) as store:
            result = work(store, bar)
    except PyActorsError as exc:
        sys.stderr.write(f"pyactors {command}: {type(exc).__name__}: {exc}\n")
        return EXIT_FAILED
    finally:
        bar.close()
    status = int(result.pop("exit", EXIT_OK))
    if args.json:
        import json

        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(result.pop("text") + "\n")
    return status


PROGRESS_MIN_BYTES = 64 << 20
"""With ``--progress auto``, the bar appears for runs over at least this many bytes."""


class _ProgressBar:
    """A ``progress(done, total)`` callback that draws a rich progress bar on stderr.

    The bar starts at the first call, once the total is known (``auto`` mode shows it
    only on a terminal and for at least `PROGRESS_MIN_BYTES`); `close()` ends it.
    """

    def __init__(self, mode: str, label: str) -> None:
        self.mode = mode
        self.label = label
        self.bar: Any = None
        self.task: Any = None
        self.decided = False

    def __call__(self, done: int, total: int) -> None:
        if not self.decided:
            self.decided = True
            tty = sys.stderr.isatty()
            if self.mode == "always" or (self.mode == "auto" and tty and total >= PROGRESS_MIN_BYTES):
                from rich.console import Console
                from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TimeRemainingColumn

                console = Console(stderr=True, force_terminal=tty or None)
                columns = (BarColumn(), TaskProgressColumn(), DownloadColumn(), TimeRemainingColumn())
                self.bar = Progress(*Progress.get_default_columns()[:1], *columns, console=console)
                self.bar.start()
                self.task = self.bar.add_task(self.label, total=total)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _shown(text: str) -> str:
    """Return `text` as a terminal may print it.

    A stream id or reason with control or format characters (escape sequences, bidi
    overrides: a hostile store) is shown escaped, as a quoted Python literal, never raw.
    """
    return text if text.isprintable() else ascii(text)


def _torn_tail(opened: Any) -> str:
    """The line of text that reports what an open found past the active segment's last record."""
    return (
        f"open: torn tail of {opened.truncated_bytes:,} bytes ({opened.dropped_records} records) after the last "
        "valid record of the active segment, left in place (the writer's next open truncates it)"
    )


def _damage_list(damaged: Any) -> list[dict[str, Any]]:
    return [{"path": d.path, "offset": d.offset, "length": d.length, "reason": d.reason} for d in damaged]


def _inspect(args: argparse.Namespace) -> int:
    def work(store: Any, progress: _ProgressBar) -> dict[str, Any]:
        from pyactors.actor import recover

        report = store.verify(progress)
        actors = {a.persistence_id: a for a in recover(store)}
        streams: dict[str, dict[str, Any]] = {}
        for k in report.kinds:
            entry = streams.setdefault(k.stream, {"stream": k.stream, "kinds": {}})
            entry["kinds"][_kind_name(k.kind, k.stream)] = {
                "live": k.live,
                "dead": k.dead,
                "stored_bytes": k.stored_bytes,
                "raw_bytes": k.raw_bytes,
                "compression_ratio": round(k.compression_ratio, 3),
            }
        for name, entry in streams.items():
            actor = actors.get(name)
            entry["latest_snapshot"] = (
                None
                if actor is None or actor.snapshot_seq is None
                else {"seq": actor.snapshot_seq, "time": actor.snapshot_time, "watermark": actor.watermark}
            )
            entry["backlog"] = None if actor is None else actor.backlog
        opened = store.open_report
        stored = sum(k.stored_bytes for k in report.kinds)
        raw = sum(k.raw_bytes for k in report.kinds)
        lines = [
            f"{store.path}: {report.segments} segments, {report.bytes:,} bytes, {report.records:,} records, "
            f"{len(streams)} streams, payloads {raw:,} B raw / {stored:,} B stored "
            f"({raw / stored if stored else 1:.2f}x)",
            _torn_tail(opened) if opened.truncated_bytes else "open: no torn tail",
            f"open: rebuilt indexes {len(opened.rebuilt_indexes)}",
        ]
        lines.append(
            f"{'stream':<32} {'kind':<12} {'live':>8} {'dead':>8} {'stored':>12} {'ratio':>6}  snapshot/backlog"
        )
        for entry in streams.values():
            snap = entry["latest_snapshot"]
            extra = (
                "" if entry["backlog"] is None else f"  seq {snap['seq'] if snap else '-'}, backlog {entry['backlog']}"
            )
            for i, (kind, k) in enumerate(entry["kinds"].items()):
                lines.append(
                    f"{_shown(entry['stream']) if i == 0 else '':<32} {kind:<12} {k['live']:>8,} {k['dead']:>8,} "
                    f"{k['stored_bytes']:>12,} {k['compression_ratio']:>5.2f}x{extra if i == 0 else ''}"
                )
        lines.extend(f"DAMAGED {d.path} at {d.offset}: {_shown(d.reason)}" for d in report.damaged)
        return {
            "path": store.path,
            "segments": report.segments,
            "bytes": report.bytes,
            "records": report.records,
            "open_report": {
                "truncated_bytes": opened.truncated_bytes,
                "dropped_records": opened.dropped_records,
                "rebuilt_indexes": list(opened.rebuilt_indexes),
            },
            "streams": list(streams.values()),
            "damaged": _damage_list(report.damaged),
            "text": "\n".join(lines),
            "exit": EXIT_OK if report.ok else EXIT_FAILED,
        }

    return _run_on_store("inspect", args, work, read_only=True)


def _verify(args: argparse.Namespace) -> int:
    def work(store: Any, progress: _ProgressBar) -> dict[str, Any]:
        report = store.verify(progress)
        opened = store.open_report
        text = [f"{store.path}: {report.segments} segments, {report.records:,} valid records, {report.bytes:,} bytes"]
        if opened.truncated_bytes:  # a crash's cut write: not damage, but shown
            text.append(_torn_tail(opened))
        text += [f"DAMAGED {d.path} at byte {d.offset} ({d.length} bytes): {_shown(d.reason)}" for d in report.damaged]
        text.append("ok" if report.ok else f"{len(report.damaged)} damaged range(s)")
        return {
            "path": store.path,
            "ok": report.ok,
            "segments": report.segments,
            "records": report.records,
            "bytes": report.bytes,
            "torn_tail": {"bytes": opened.truncated_bytes, "records": opened.dropped_records},
            "damaged": _damage_list(report.damaged),
            "text": "\n".join(text),
            "exit": EXIT_OK if report.ok else EXIT_FAILED,
        }

    return _run_on_store("verify", args, work, read_only=True)


def _compact(args: argparse.Namespace) -> int:
    def work(store: Any, progress: _ProgressBar) -> dict[str, Any]:
        r = store.compact(args.min_dead_ratio, progress)
        return {
            "path": store.path,
            "segments_removed": r.segments_removed,
            "records_copied": r.records_copied,
            "bytes_before": r.bytes_before,
            "bytes_after": r.bytes_after,
            "text": f"{store.path}: removed {r.segments_removed} segments, copied {r.records_copied} records, "
            f"{r.bytes_before:,} -> {r.bytes_after:,} bytes",
        }

    return _run_on_store("compact", args, work, read_only=False)


# ---------------------------------------------------------------------------- bench


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pyactors.bench import add_arguments

    help_text = "run the benchmark suite; write results.json, REPORT.md and plots"
    p = commands.add_parser("bench", help=help_text, description=help_text)
    add_arguments(p)
    p.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    from pyactors.bench import run_parsed

    return run_parsed(args)


# ---------------------------------------------------------------------------- supervise


def _add_supervise(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "supervise",
        help="run worker processes on a store and restart those that die",
        description=(
            "Run worker processes on STORE_DIR and restart those that die (non-zero exit, signal, or a "
            "stale heartbeat), with exponential backoff and a restart intensity limit. Files dropped into "
            "STORE_DIR/inbox/ run the --on-submit command. Prints one line per restart to stderr. "
            "Exit status: 0 when every worker ended with status 0 (or on SIGTERM/SIGINT), 1 when a worker "
            "failed, 2 on a usage or configuration error."
        ),
    )
    p.add_argument("store", metavar="STORE_DIR", help="the store directory (created if missing)")
    p.add_argument(
        "--worker",
        "-w",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="a worker: its name and its command line (split like a shell does, not run by one); repeatable",
    )
    p.add_argument("--config", "-c", metavar="FILE.toml", help="workers and options from a TOML file")
    p.add_argument(
        "--on-submit",
        metavar="COMMAND",
        help="command run for each file dropped into STORE_DIR/inbox/; {path} is replaced by the accepted file's path",
    )
    p.add_argument("--max-restarts", type=int, metavar="N", help="restarts allowed per worker within --period (5)")
    p.add_argument("--period", type=float, metavar="S", help="restart intensity window in seconds (60)")
    p.add_argument("--backoff-initial", type=float, metavar="S", help="delay before a first restart (0.1)")
    p.add_argument("--backoff-max", type=float, metavar="S", help="largest restart delay; it doubles up to this (10)")
    p.add_argument(
        "--heartbeat-timeout",
        type=float,
        metavar="S",
        help="a worker that sent a heartbeat and then none for S seconds is hung: killed and restarted (off)",
    )
    p.add_argument(
        "--heartbeat-grace",
        type=float,
        metavar="S",
        help="a worker that sends no heartbeat within S seconds of its start is hung (off)",
    )
    p.add_argument("--stop-grace", type=float, metavar="S", help="seconds between SIGTERM and SIGKILL on stop (5)")
    p.add_argument(
        "--fail-fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stop everything when a worker exceeds its restart intensity",
    )
    p.add_argument(
        "--exit-when-done",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="exit once every worker is done (default: yes, unless --on-submit is given)",
    )
    p.add_argument("--verbose", "-v", action="count", default=0, help="log starts and exits too (-vv: debug)")
    p.set_defaults(handler=_run_supervise)


def _as_command(value: object, where: str) -> list[str]:
    """A command given as a string (split with shlex) or a list of strings."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            msg = f"{where}: cannot split {value!r}: {exc}"
            raise InvalidArgumentError(msg) from exc
    elif isinstance(value, list) and all(isinstance(a, str) for a in value):
        argv = list(value)
    else:
        msg = f"{where}: a command must be a string or a list of strings, got {value!r}"
        raise InvalidArgumentError(msg)
    if not argv:
        msg = f"{where}: empty command"
        raise InvalidArgumentError(msg)
    return argv


def _check_option(key: str, value: object, where: str) -> object:
    expected = _SUPERVISE_OPTIONS[key]
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        msg = f"{where}: {key} must be {'a boolean' if expected is bool else 'a number'}, got {value!r}"
        raise InvalidArgumentError(msg)
    return float(value) if expected is float else value  # type: ignore[arg-type]


def load_supervise_config(path: str) -> tuple[list[WorkerSpec], dict[str, Any]]:
    """Read a ``pyactors supervise`` TOML configuration file.

    The file holds supervisor options at the top level (``max_restarts``,
    ``period``, ``backoff_initial``, ``backoff_max``, ``heartbeat_timeout``,
    ``heartbeat_grace``, ``stop_grace``, ``fail_fast``, ``exit_when_done``,
    ``on_submit``) and one ``[[worker]]`` table per worker with ``name``,
    ``command`` (a list of strings, or a string split with shlex), and optional
    ``env`` (a table of strings) and ``cwd`` (relative to the file's folder).

    Args:
        path: The file.

    Returns:
        ``(workers, options)``: the worker specs, and the options found, as
        `ProcessSupervisor` keyword arguments (``on_submit`` as an argv list).

    Raises:
        InvalidArgumentError: The file cannot be read, is not valid TOML, or
            holds an unknown key or a value of the wrong type.
    """
    where = f"config {path}"
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        msg = f"{where}: cannot read: {exc.strerror or exc}"
        raise InvalidArgumentError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{where}: invalid TOML: {exc}"
        raise InvalidArgumentError(msg) from exc
    options: dict[str, Any] = {}
    workers: list[WorkerSpec] = []
    base = os.path.dirname(os.path.abspath(path))
    for key, value in data.items():
        if key in _SUPERVISE_OPTIONS:
            options[key] = _check_option(key, value, where)
        elif key == "on_submit":
            options[key] = _as_command(value, f"{where}: on_submit")
        elif key == "worker":
            if not isinstance(value, list):
                msg = f"{where}: 'worker' must be an array of tables ([[worker]])"
                raise InvalidArgumentError(msg)
            for i, table in enumerate(value, 1):
                workers.append(_worker_from_table(table, f"{where}: worker #{i}", base))
        else:
            known = ", ".join(sorted([*_SUPERVISE_OPTIONS, "on_submit", "worker"]))
            msg = f"{where}: unknown key {key!r} (known: {known})"
            raise InvalidArgumentError(msg)
    return workers, options


def _worker_from_table(table: object, where: str, base: str) -> WorkerSpec:
    from pyactors.process import WorkerSpec

    if not isinstance(table, dict):
        msg = f"{where}: must be a table"
        raise InvalidArgumentError(msg)
    unknown = set(table) - _WORKER_KEYS
    if unknown:
        msg = f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_WORKER_KEYS))})"
        raise InvalidArgumentError(msg)
    name = table.get("name")
    if not isinstance(name, str):
        msg = f"{where}: 'name' (a string) is required"
        raise InvalidArgumentError(msg)
    where = f"{where} ({name})"
    if "command" not in table:
        msg = f"{where}: 'command' is required"
        raise InvalidArgumentError(msg)
    argv = _as_command(table["command"], where)
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        msg = f"{where}: 'env' must be a table of strings"
        raise InvalidArgumentError(msg)
    cwd = table.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        msg = f"{where}: 'cwd' must be a string"
        raise InvalidArgumentError(msg)
    try:
        return WorkerSpec(name, argv, env, None if cwd is None else os.path.join(base, cwd))
    except InvalidArgumentError as exc:
        msg = f"{where}: {exc}"
        raise InvalidArgumentError(msg) from exc


def _worker_from_arg(text: str) -> WorkerSpec:
    from pyactors.process import WorkerSpec

    name, sep, command = text.partition("=")
    if not sep or not name:
        msg = f"--worker {text!r}: expected NAME=COMMAND"
        raise InvalidArgumentError(msg)
    return WorkerSpec(name, _as_command(command, f"--worker {name}"))


def _run_supervise(args: argparse.Namespace) -> int:
    from pyactors.process import ProcessSupervisor

    try:
        workers: list[WorkerSpec] = []
        options: dict[str, Any] = {}
        if args.config is not None:
            workers, options = load_supervise_config(args.config)
        workers.extend(_worker_from_arg(text) for text in args.worker)
        for key in _SUPERVISE_OPTIONS:
            value = getattr(args, key)
            if value is not None:
                options[key] = value
        if args.on_submit is not None:
            options["on_submit"] = _as_command(args.on_submit, "--on-submit")
        if not workers and "on_submit" not in options:
            msg = "nothing to supervise: give --worker, --on-submit, or a --config with [[worker]] tables"
            raise InvalidArgumentError(msg)
        supervisor = ProcessSupervisor(args.store, workers, **options)
    except InvalidArgumentError as exc:
        return _error("supervise", str(exc))

    log = logging.getLogger("pyactors")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s pyactors: %(message)s"))
    previous_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING)
    try:
        status = supervisor.run()
    except OSError as exc:
        sys.stderr.write(f"pyactors supervise: error: {exc}\n")
        return EXIT_FAILED
    finally:
        log.removeHandler(handler)
        log.setLevel(previous_level)
    return EXIT_OK if status == 0 else EXIT_FAILED
