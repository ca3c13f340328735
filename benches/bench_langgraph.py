"""The ``langgraph`` area of the benchmark suite: ``python benches/bench_langgraph.py [--quick] [--out DIR]``.

A thin entry point: the suite lives in `pyactors.bench` (``pyactors bench --only langgraph``).
"""

from __future__ import annotations

import sys

from pyactors.bench import main

if __name__ == "__main__":
    sys.exit(main(["--only", "langgraph", *sys.argv[1:]]))
