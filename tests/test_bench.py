"""`pyactors bench`: the suite runs and writes well-formed files (never a speed)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import types
from typing import TYPE_CHECKING, Any

import pytest

from pyactors import bench
from pyactors.bench._harness import figure, summary, target
from pyactors.bench.report import markdown

if TYPE_CHECKING:
    from pathlib import Path

_PNG = b"\x89PNG\r\n\x1a\n"
_STATS = ("runs", "median", "p99", "min", "max")


def _bench(out: Path, *args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{prelude}import sys; from pyactors.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, "bench", "--out", str(out), "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


@pytest.mark.timeout(300)
def test_quick_run_writes_results_json_report_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _bench(out, "--quick")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    doc: dict[str, Any] = json.loads((out / "results.json").read_text())
    for key in ("schema", "quick", "machine", "versions", "figures", "comparisons", "targets", "skipped", "problems"):
        assert key in doc
    assert doc["quick"] is True
    assert doc["problems"] == []
    assert doc["skipped"] == []  # `make test` installs the bench extra: every baseline runs
    assert doc["versions"]["pyactors-durable"] and doc["versions"]["langgraph"]
    assert {f["area"] for f in doc["figures"]} == {"store", "actors", "recovery", "workflow", "langgraph"}
    for f in doc["figures"]:
        assert all(k in f for k in _STATS), f
        assert f["runs"] > 0
        assert f["min"] <= f["median"] <= f["max"]
    for c in doc["comparisons"]:
        assert c["ratio"] == pytest.approx(c["contender"]["median"] / c["baseline"]["median"])
    keys = {t["key"] for t in doc["targets"]}
    assert {
        "workflow_spawn_to_node",
        "workflow_open_to_node",
        "restart_1mb_1000",
        "restore_actors",
        "checkpoint_vs_sqlite",
        "checkpoint_vs_inmemory",
        "footprint_growing",
        "append_100B_process_batched",
        "import_time",
        "langgraph_checkpoint_sync_vs_sqlite_full",
        "langgraph_checkpoint_process_vs_sqlite_normal",
        "langgraph_recovery_vs_sqlite",
    } <= keys
    assert all(isinstance(t["met"], bool) for t in doc["targets"])

    report = (out / "REPORT.md").read_text()
    assert "## Targets" in report
    for area in ("store", "actors", "recovery", "workflow", "langgraph"):
        assert f"\n## {area}\n" in report
    assert report.count("| measure | parameters | unit | contender |") == 5
    pairings = {c["params"].get("pairing") for c in doc["comparisons"] if c["area"] == "langgraph"}
    assert {"equal crash safety: power loss", "equal crash safety: kill -9", "default vs default"} <= pairings
    assert sum(report.count(s) for s in ("| MET |", "| **MISSED** |")) == len(doc["targets"])

    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"recovery_actor_state.png", "recovery_process.png", "recovery_workflow.png", "footprint.png"} <= set(pngs)
    for name in pngs:
        assert (out / name).read_bytes().startswith(_PNG)
        assert f"]({name})" in report


@pytest.mark.parametrize("area", ["workflow", "langgraph"])
def test_a_missing_baseline_package_is_reported_as_skipped(tmp_path: Path, area: str) -> None:
    out = tmp_path / "out"
    # None in sys.modules makes `import langgraph` raise ImportError, as if it were not installed.
    proc = _bench(out, "--quick", "--only", area, prelude="import sys; sys.modules['langgraph'] = None; ")
    # Measuring nothing is a failed run, which says why.
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"measured nothing ({area}: langgraph" in proc.stdout
    doc = json.loads((out / "results.json").read_text())
    assert [s["area"] for s in doc["skipped"]] == [area]
    assert "langgraph" in doc["skipped"][0]["reason"]
    assert doc["figures"] == []
    assert "## Skipped" in (out / "REPORT.md").read_text()


@pytest.mark.parametrize(
    "breakage",
    [
        "sys.modules['pyactors._core'] = None",  # the native module missing or unloadable
        "sys.modules['pyactors.bench.store'] = None",  # a module of pyactors itself missing
    ],
)
def test_a_missing_or_broken_pyactors_module_fails_the_run_and_is_never_reported_as_skipped(
    tmp_path: Path, breakage: str
) -> None:
    out = tmp_path / "out"
    proc = _bench(out, "--quick", "--only", "store", prelude=f"import sys; {breakage}; ")
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "skipped" not in proc.stdout
    assert not (out / "results.json").exists()


@pytest.mark.parametrize(
    ("only", "says"),
    [
        ("nope", "--only nope: no such area (areas: store, actors"),
        ("store.nope", "--only store.nope: no such section (store: appends"),
    ],
)
def test_an_only_that_names_nothing_of_the_suite_is_a_usage_error(tmp_path: Path, only: str, says: str) -> None:
    proc = _bench(tmp_path / "out", "--quick", "--only", only)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert says in proc.stdout
    assert not (tmp_path / "out" / "results.json").exists()


def _one_target_area(met: bool) -> types.ModuleType:
    """A stand-in area of one section that measures one figure and one target, `met` or not."""
    area = types.ModuleType("one_target_area")

    def section(cfg: object, tmp: str) -> None:
        fig = figure("one", "pyactors", "s", summary([0.001, 0.002, 0.003]))
        target("one", "one below two", f"{fig['median']:.3f} s", met)

    area.SECTIONS = {"section": section}  # type: ignore[attr-defined]
    area.config = lambda quick: None  # type: ignore[attr-defined]
    return area


@pytest.mark.parametrize("met", [True, False])
@pytest.mark.parametrize("check", [True, False])
def test_check_fails_the_run_on_a_missed_target_and_only_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *, met: bool, check: bool
) -> None:
    monkeypatch.setitem(sys.modules, "one_target_area", _one_target_area(met))
    monkeypatch.setattr(bench, "AREAS", {"fake": "one_target_area"})
    status = bench.run(quick=True, out=str(tmp_path / "out"), progress=False, check=check)
    assert status == (1 if check and not met else 0)
    assert ("--check: 1 target(s) missed: one below two" in capsys.readouterr().out) == (check and not met)
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [t["met"] for t in doc["targets"]] == [met]


def test_a_run_in_process_leaves_the_callers_logging_levels_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sections crash actors on purpose and are kept quiet, but only while they run: a test
    # or program that ran the suite in its process still gets pyactors' ERROR records.
    seen: list[int] = []
    area = _one_target_area(met=True)
    measure = area.SECTIONS["section"]

    def section(cfg: Any, tmp: str) -> None:
        seen.append(logging.getLogger("pyactors").level)
        measure(cfg, tmp)

    area.SECTIONS = {"section": section}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "one_target_area", area)
    monkeypatch.setattr(bench, "AREAS", {"fake": "one_target_area"})
    logging.getLogger("pyactors").setLevel(logging.INFO)
    try:
        assert bench.run(quick=True, out=str(tmp_path / "out"), progress=False) == 0
        assert seen == [logging.CRITICAL]
        assert logging.getLogger("pyactors").level == logging.INFO
        assert logging.getLogger("pykka").level == logging.NOTSET
    finally:
        logging.getLogger("pyactors").setLevel(logging.NOTSET)


def test_report_states_a_missed_target_plainly() -> None:
    doc: dict[str, Any] = {
        "started": "2026-11-26T00:00:00Z",
        "quick": True,
        "elapsed_s": 1.0,
        "machine": {"cpus": 2, "machine": "x86_64", "load_average_before": 0.1, "load_average_after": 0.2},
        "versions": {"python": "3.11"},
        "targets": [
            {"goal": "fast enough", "measured": "2.00x", "met": False, "note": "imports 80 ms"},
            {"goal": "small enough", "measured": "0.50x", "met": True, "note": ""},
        ],
        "skipped": [],
        "problems": [],
        "figures": [],
        "comparisons": [],
        "sections_s": {},
    }
    text = markdown(doc)
    assert "| fast enough | 2.00x | **MISSED** | imports 80 ms |" in text
    assert "| small enough | 0.50x | MET |  |" in text


def test_import_pyactors_imports_none_of_the_bench_dependencies() -> None:
    heavy = ("pyactors.bench", "matplotlib", "langgraph", "rich", "zstandard", "sqlite3")
    code = f"import sys, pyactors; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
