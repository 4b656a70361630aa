"""The package's layers point downward: a module imports nothing from the layers above it.

Checked on the source with ``ast`` (absolute and relative imports, at any depth, including
imports inside functions). Extend ``RULES`` to pin down more of the layering (CONTRIBUTING.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "stoplib"

# the code the settings configure: the settings (stage_configs.py) sit below it, and config.py
# builds them without importing it
# the stages' code by job (stages.py re-exports every name)
STAGE_MODULES = ("stoplib.stages", "stoplib.stage_labels", "stoplib.stage_bank", "stoplib.stage_training",
                 "stoplib.stage_keys", "stoplib.stage_runs", "stoplib.stage_inputs", "stoplib.stage_engine")
STAGE_CODE = ("stoplib.labels", "stoplib.stop", "stoplib.train", "stoplib.pipeline", "stoplib.taxonomy") + STAGE_MODULES
# the pipeline, its signals, stages and training: what the modules it is built from know nothing of
PIPELINE = ("stoplib.signals", "stoplib.pipeline", "stoplib.taxonomy", "stoplib.train") + STAGE_MODULES

# module prefix -> import prefixes it must not use
RULES: dict[str, tuple[str, ...]] = {
    "stoplib.engines": ("stoplib.signals", "stoplib.pipeline", "stoplib.metrics", "stoplib.taxonomy",
                        "stoplib.train", "stoplib.labels") + STAGE_MODULES,
    # the signals score prefixes: what trains them, builds their data or runs them sits above
    "stoplib.signals": ("stoplib.train", "stoplib.pipeline", "stoplib.taxonomy", "stoplib.labels") + STAGE_MODULES,
    "stoplib.config": STAGE_CODE,
    "stoplib.stage_configs": STAGE_CODE,
    "stoplib.metrics": PIPELINE,
    "stoplib.grading": PIPELINE,
    "stoplib.store": PIPELINE,
    "stoplib.problems": PIPELINE,
    "stoplib.scaling": PIPELINE,
    "stoplib.toy": PIPELINE,
}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, list[str]]]:
    """Per import statement of ``source`` (the text of module ``module``): its line and the absolute
    names it may load. ``from X import a, b`` may load X, X.a and X.b (submodules or not)."""
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.append((node.lineno, [alias.name for alias in node.names]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            out.append((node.lineno, [target] + [f"{target}.{alias.name}" for alias in node.names]))
    return out


def forbidden_imports(source: str, module: str, is_package: bool = False,
                      rules: dict[str, tuple[str, ...]] = RULES) -> list[str]:
    """Each import statement of ``module`` that ``rules`` forbid, as 'module:line imports name'."""
    banned = [b for prefix, bans in rules.items() if _under(module, prefix) for b in bans]
    found = []
    for line, names in imported_modules(source, module, is_package):
        hits = [name for name in names if any(_under(name, b) for b in banned)]
        if hits:
            found.append((line, f"{module}:{line} imports {hits[0]}"))
    return [text for _, text in sorted(found)]


def _modules() -> list[tuple[str, bool, Path]]:
    out = []
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        out.append((".".join(parts[:-1] if is_package else parts), is_package, file))
    return out


def test_the_layers_point_downward():
    modules = _modules()
    for prefix in RULES:  # a renamed module must not leave its rule checking nothing
        assert any(_under(name, prefix) for name, _, _ in modules), f"no module under {prefix}"
    found = [v for name, is_package, file in modules
             for v in forbidden_imports(file.read_text(encoding="utf-8"), name, is_package)]
    assert not found, "upward imports:\n" + "\n".join(found)


def test_the_checker_reports_a_forbidden_import():
    source = (
        "from .base import ReasoningPath\n"
        "from ..models import check_model_dir\n"
        "import stoplib.pipeline\n"
        "def f():\n"
        "    from ..signals.type4 import StopSignal\n"
        "    from .. import metrics\n"
    )
    assert forbidden_imports(source, "stoplib.engines.fake") == [
        "stoplib.engines.fake:3 imports stoplib.pipeline",
        "stoplib.engines.fake:5 imports stoplib.signals.type4",
        "stoplib.engines.fake:6 imports stoplib.metrics",
    ]
    # relative imports resolve from a package's __init__ too; modules no rule names may import anything
    assert forbidden_imports("from ..signals import top_k\n", "stoplib.engines", is_package=True) == [
        "stoplib.engines:1 imports stoplib.signals"]
    assert forbidden_imports("from .signals import top_k\n", "stoplib.engines", is_package=True) == []
    assert forbidden_imports("from .signals import top_k\n", "stoplib.pipeline") == []
    assert forbidden_imports("from .stages import run\n", "stoplib.config") == [
        "stoplib.config:1 imports stoplib.stages"]
    assert forbidden_imports("from .stop import StopScorer\n", "stoplib.stage_configs") == [
        "stoplib.stage_configs:1 imports stoplib.stop"]
    assert forbidden_imports("from ..train import train_verifier\n", "stoplib.signals.verifier") == [
        "stoplib.signals.verifier:1 imports stoplib.train"]
    assert forbidden_imports("from ..label_records import LabelRecord\n", "stoplib.signals.verifier") == []
