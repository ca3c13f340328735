"""The Python examples in docs/*.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pykka
import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
EXAMPLES = [
    (doc.name, i, source)
    for doc in sorted(DOCS.glob("*.md"))
    for i, source in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.DOTALL))
]


@pytest.mark.parametrize(("doc", "index", "source"), EXAMPLES, ids=[f"{d}-{i}" for d, i, _ in EXAMPLES])
def test_doc_example_runs(doc: str, index: int, source: str) -> None:
    try:
        exec(compile(source, f"docs/{doc} example {index}", "exec"), {"__name__": "doc_example"})
    finally:
        pykka.ActorRegistry.stop_all()
