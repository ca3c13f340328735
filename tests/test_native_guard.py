"""No skip can hide a missing or broken native build (`_native_guard`, loaded by conftest).

Each test runs pytest in a subprocess on a throwaway test directory with only the guard
loaded, and checks the run's exit status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _pytest(tmp_path: Path, test_source: str, conftest: str = "") -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "test_it.py").write_text(test_source)
    (tmp_path / "conftest.py").write_text(conftest)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "_native_guard", "-p", "no:cacheprovider", "-q", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_working_build_and_a_skip_for_the_machine_pass(tmp_path: Path) -> None:
    run = _pytest(
        tmp_path,
        "from _native_guard import skip_for_environment\n"
        "def test_ok():\n    assert True\n"
        "def test_needs_root():\n    skip_for_environment('needs root')\n",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("import pytest\ndef test_it():\n    pytest.skip('no native module')\n", id="skip"),
        pytest.param("import pytest\npytest.importorskip('pyactors_no_such_module')\n", id="importorskip"),
        pytest.param("import pytest\n@pytest.mark.xfail\ndef test_it():\n    raise ImportError\n", id="xfail"),
        pytest.param(
            "import pytest\ndef test_it():\n    pytest.skip('environment: the same words, without the guard')\n",
            id="spoofed-reason",
        ),
    ],
)
def test_any_other_skip_fails_the_run_and_is_named(tmp_path: Path, body: str) -> None:
    run = _pytest(tmp_path, body)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "skips that could hide a broken build" in run.stdout


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param("sys.modules['pyactors._core'] = None  # as if not built", id="missing"),
        pytest.param("del _core.FaultFs  # a release build, without the fault layer", id="no-fault-layer"),
        pytest.param("_core.SegmentLog = None  # imports, does not work", id="broken"),
    ],
)
def test_a_missing_or_broken_native_module_ends_the_run_before_any_test(tmp_path: Path, breakage: str) -> None:
    conftest = "import sys\n" + ("" if "sys.modules" in breakage else "from pyactors import _core\n") + breakage + "\n"
    run = _pytest(tmp_path, "def test_never_runs():\n    raise SystemExit('ran')\n", conftest)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "the native module is missing or broken" in run.stdout + run.stderr
    assert "test_never_runs" not in run.stdout


def test_a_stale_second_native_module_beside_the_package_ends_the_run(tmp_path: Path) -> None:
    # A CPython-specific build left beside the abi3 one: Python would import the stale one.
    fake = tmp_path / "pkg"
    fake.mkdir()
    for name in ("_core.abi3.so", "_core.cpython-311-x86_64-linux-gnu.so"):
        (fake / name).write_bytes(b"")
    conftest = f"from pyactors import _core\n_core.__file__ = {str(fake / '_core.abi3.so')!r}\n"
    run = _pytest(tmp_path / "t", "def test_never_runs():\n    raise SystemExit('ran')\n", conftest)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "2 native modules in" in run.stdout + run.stderr
    assert "test_never_runs" not in run.stdout


def test_a_skip_for_the_machine_while_handling_an_error_fails_the_test(tmp_path: Path) -> None:
    run = _pytest(
        tmp_path,
        "from _native_guard import skip_for_environment\n"
        "def test_it():\n"
        "    try:\n        raise OSError('what pyactors raised')\n"
        "    except OSError:\n        skip_for_environment('no disk')\n",
    )
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "while handling OSError('what pyactors raised')" in run.stdout
    assert "1 failed" in run.stdout
