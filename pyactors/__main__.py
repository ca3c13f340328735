"""``python -m pyactors COMMAND ...``: the ``pyactors`` command line (see `pyactors.cli`)."""

from __future__ import annotations

from pyactors.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
