"""The ``store`` area of the benchmark suite: ``python benches/bench_store.py [--quick] [--out DIR]``.

A thin entry point: the suite lives in `pyactors.bench` (``pyactors bench --only store``).
"""

from __future__ import annotations

import sys

from pyactors.bench import main

if __name__ == "__main__":
    sys.exit(main(["--only", "store", *sys.argv[1:]]))
