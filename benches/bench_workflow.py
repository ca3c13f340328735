"""The ``workflow`` area of the benchmark suite: ``python benches/bench_workflow.py [--quick] [--out DIR]``.

A thin entry point: the suite lives in `pyactors.bench` (``pyactors bench --only workflow``).
"""

from __future__ import annotations

import sys

from pyactors.bench import main

if __name__ == "__main__":
    sys.exit(main(["--only", "workflow", *sys.argv[1:]]))
