"""The README tables are printed from a run's metrics files (stoplib.report)."""

from __future__ import annotations

import pytest

from stoplib import report
from stoplib.store import record_metrics


def row(label, accuracy, auroc=0.6):
    return {"label": label, "accuracy": accuracy, "ci_low": accuracy - 0.05, "ci_high": accuracy + 0.05, "cons": 0.8,
            "tokens_k": 2.96, "reduction_pct": 60.8, "auroc_within": auroc}


def test_report_prints_the_tables_from_the_metrics_files(tmp_path):
    table = {"no_pruning": {**row("No pruning (avg@64)", 0.604), "auroc_within": None},
             "stop": row("STOP", 0.760, 0.755), "random": row("Random", 0.652, 0.517),
             "stop_hard": row("STOP, hard labels", 0.742),
             "setting": {"N": 64, "k": 8, "L": 36, "problems": 64, "worst_possible": 0.1, "best_possible": 0.98},
             "stop_seed_spread": [{"variant": "stop", "init_seed": s, "best_epoch": 10 + s, "val_within_auroc": 0.75,
                                   "accuracy": 0.76 + 0.01 * s, "auroc_within": 0.75, "cons": 0.8, "val_mse": 0.06}
                                  for s in (0, 1, 2)]
             + [{"variant": "stop_hard", "init_seed": 0, "best_epoch": 9, "val_within_auroc": 0.7, "accuracy": 0.742,
                 "auroc_within": 0.7, "cons": 0.8, "val_mse": 0.1}]}
    record_metrics("03_taxonomy_baselines", table, tmp_path, "toy")
    record_metrics("04_attention_analysis", {"prefixes": 12, "category_mass": {}, "error_step_enrichment": None,
                                             "control_enrichment": None, "difference": None,
                                             "difference_ci": [None, None], "pairs": 0}, tmp_path, "toy",
                   allow_nan=("error_step_enrichment", "control_enrichment", "difference", "difference_ci"))
    text = report.report("toy", tmp_path)
    lines = text.splitlines()
    body = [line for line in lines if line.startswith("| ") and "---" not in line]
    assert body[1].startswith("| No pruning (avg@64) | — | 0.604 | [0.554, 0.654]")
    assert body[2].startswith("| **STOP** | IV | 0.760") and body[3].startswith("| STOP, hard labels | IV | 0.742")
    assert body[4].startswith("| Random | control | 0.652") and body[4].endswith("| 0.517 |")
    assert "| STOP | 0 / 1 / 2 | 10 / 11 / 12 | 0.750 / 0.750 / 0.750 (mean 0.750) | 0.760 / 0.770 / 0.780 (mean 0.770)" in text
    assert "| STOP, hard labels | 0 | 9 | 0.700 (mean 0.700) | 0.742 (mean 0.742) |" in text  # the variant's label
    assert "- 04: 12 prefixes; no doomed/clean pair at the same step (not measurable)" in text


def test_report_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics files in .*nothing"):
        report.report("nothing", tmp_path)
    record_metrics("03_taxonomy_baselines", {"stop": row("STOP", 0.7), "setting": {"N": 8, "k": 2}}, tmp_path, "old")
    with pytest.raises(ValueError, match="no_pruning"):
        report.report("old", tmp_path)


def test_reproduce_times_are_kept_per_notebook(tmp_path, capsys):
    """stoplib reproduce records each notebook's minutes; a later --only run updates its own."""
    from stoplib.cli import record_times

    record_times({"00_reasoning_model": 0.4, "01_dataset_construction": 3.1}, "small", tmp_path, "toy")
    record_times({"01_dataset_construction": 2.0}, "small", tmp_path, "toy")
    assert "minutes per notebook (small): 00 0.4, 01 2.0; total 2.4" in capsys.readouterr().out
    m = report.load_metrics("toy", tmp_path)["reproduce"]
    assert m["minutes"] == {"00_reasoning_model": 0.4, "01_dataset_construction": 2.0} and m["total_minutes"] == 2.4
    record_times({"00_reasoning_model": 0.1}, "tiny", tmp_path, "toy")  # another scale starts afresh
    assert report.load_metrics("toy", tmp_path)["reproduce"]["minutes"] == {"00_reasoning_model": 0.1}
    assert "- wall time (scale tiny): 0.1 min (00 0.1)" in report.summary(report.load_metrics("toy", tmp_path))
