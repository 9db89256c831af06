"""The Python examples in the guides run as written (runnable docs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

GUIDES = [ROOT / "docs" / "guide" / "sockets.md"]


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_guide_examples_run(guide: Path, guest: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"```python\n(.*?)```", guide.read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(guide), "exec"), {"__name__": "__docs__"})
