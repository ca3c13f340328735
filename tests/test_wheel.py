"""The wheel installs and runs without a Rust toolchain (issue 19, `make wheel`).

Builds the abi3 wheel with maturin as `make wheel` does, installs it into a fresh
virtual environment with no Rust toolchain on ``PATH``, and runs the README's quick
start and ``pyactors --help`` there, outside the checkout (so nothing is imported from
the source tree).
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _quick_start() -> str:
    section = README.read_text().split("## Quick start", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert found is not None, "the README has a quick start example"
    return found.group(1)


def _run(
    *cmd: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, env=env, cwd=cwd)
    assert out.returncode == 0, f"{cmd}: {out.stdout[-3000:]}{out.stderr[-3000:]}"
    return out


def test_the_abi3_wheel_installs_without_rust_and_runs_the_quick_start(tmp_path: Path) -> None:
    maturin = Path(sys.executable).parent / "maturin"
    _run(maturin, "build", "--release", "--locked", "--out", tmp_path / "dist", cwd=ROOT)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert "-cp311-abi3-" in wheel.name  # one wheel for CPython 3.11 and later
    names = zipfile.ZipFile(wheel).namelist()
    assert {"pyactors/py.typed", "pyactors/_core.pyi", "pyactors/_core.abi3.so"} <= set(names)

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    # No cargo, rustc or maturin: only the system's directories, and the new venv.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    assert subprocess.run(["which", "cargo"], env=env, capture_output=True, check=False).returncode != 0
    _run(venv / "bin" / "pip", "install", "--quiet", wheel, env=env, cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(venv / "bin" / "python", "-c", "import pyactors._core as c; print(c.__file__)", env=env, cwd=elsewhere)
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    quick = _run(venv / "bin" / "python", "-c", _quick_start(), env=env, cwd=elsewhere)
    assert "OpenReport(" in quick.stdout
    assert "usage: pyactors" in _run(venv / "bin" / "pyactors", "--help", env=env, cwd=elsewhere).stdout
