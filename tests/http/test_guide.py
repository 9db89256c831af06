"""The Python example in docs/guide/http.md runs as written."""

from __future__ import annotations

import re

from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "guide" / "http.md"


def test_the_guide_example_runs() -> None:
    (block,) = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    exec(compile(block, str(GUIDE), "exec"), {"__name__": "__docs__"})
