"""Every notebook runs under papermill at scale=tiny and records its metrics JSON."""

from __future__ import annotations

import json

import pytest

from stoplib.cli import notebook_paths, run_notebooks
from stoplib.store import load_metrics

NOTEBOOKS = notebook_paths()
REQUIRED_PARAMETERS = {"scale", "model", "engine", "seed", "results_root", "figures_dir"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_parameterized(path):
    import papermill as pm

    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") for c in code), "notebooks are committed without outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    params = pm.inspect_notebook(str(path))
    assert REQUIRED_PARAMETERS <= set(params), f"missing parameters {REQUIRED_PARAMETERS - set(params)}"
    for name, info in params.items():
        assert info["help"], f"parameter {name} has no '# help' comment"
    assert not any("def " in "".join(c["source"]) or "class " in "".join(c["source"]) for c in code)


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_at_tiny_scale(path, tmp_path):
    results, figures = tmp_path / "results", tmp_path / "figures"
    run_notebooks("tiny", results_root=results, figures_dir=figures, only=[path.name[:2]])
    metrics = load_metrics(path.stem, results)
    assert metrics, "the last cell records metrics"
    assert list(figures.glob("*.png")), "the notebook saves at least one figure"


def test_parameter_lines_parse():
    """papermill skips a parameter line with a second '=' (e.g. in its help comment)."""
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        for line in "".join(cell["source"]).splitlines():
            if line.strip() and not line.startswith("#"):
                assert line.count("=") == 1, f"{path.name}: {line!r}"
