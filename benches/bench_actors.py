"""The ``actors`` area of the benchmark suite: ``python benches/bench_actors.py [--quick] [--out DIR]``.

A thin entry point: the suite lives in `pyactors.bench` (``pyactors bench --only actors``).
"""

from __future__ import annotations

import sys

from pyactors.bench import main

if __name__ == "__main__":
    sys.exit(main(["--only", "actors", *sys.argv[1:]]))
