"""Markdown tables of a run's results, read from its metrics files.

``python -m stoplib.report toy`` prints the tables README shows for the run ``toy``
(``results/latest/toy/<notebook>.json``, written by the notebooks' last cells), so every number
in README can be regenerated from the files of a run instead of copied by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

TAXONOMY_NOTEBOOK = "03_taxonomy_baselines"


def load_metrics(run: str, results_root: str | Path = "results") -> dict[str, dict[str, Any]]:
    """``{notebook: metrics}`` of every metrics file of ``run``."""
    directory = Path(results_root) / "latest" / run
    files = sorted(directory.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no metrics files in {directory}: run the notebooks for {run!r} first "
                                f"(make reproduce, or stoplib reproduce --model ...)")
    return {f.stem: json.loads(f.read_text(encoding="utf-8"))["metrics"] for f in files}


def _ci(low: float, high: float) -> str:
    return f"[{low:.3f}, {high:.3f}]"


def main_table(metrics: dict[str, Any]) -> str:
    """Notebook 03's main table: one row per signal, best avg@k|N first after no pruning."""
    from .taxonomy import NO_PRUNING, signal_info

    setting = metrics["setting"]
    rows = {name: row for name, row in metrics.items() if isinstance(row, dict) and "accuracy" in row}
    if NO_PRUNING not in rows:
        raise ValueError("this metrics file has no 'no_pruning' row: regenerate it with the current notebook 03")
    k, n = setting["k"], setting["N"]
    lines = [f"| signal | type | avg@{k}\\|{n} | 95% CI | Cons@N | tokens (k) | AUROC within |", "|---|---|---|---|---|---|---|"]
    base = rows.pop(NO_PRUNING)
    lines.append(f"| {base['label']} | — | {base['accuracy']:.3f} | {_ci(base['ci_low'], base['ci_high'])} | "
                 f"{base['cons']:.3f} | {base['tokens_k']:.2f} | — |")
    for name, row in sorted(rows.items(), key=lambda item: -item[1]["accuracy"]):
        kind = signal_info(name)["type"]
        label = f"**{row['label']}**" if name == "stop" else row["label"]
        lines.append(f"| {label} | {kind} | {row['accuracy']:.3f} | {_ci(row['ci_low'], row['ci_high'])} | "
                     f"{row['cons']:.3f} | {row['tokens_k']:.2f} | {row['auroc_within']:.3f} |")
    return "\n".join(lines)


def seed_table(metrics: dict[str, Any]) -> str:
    """Notebook 03's seed spread: each trained variant across initialization seeds, and the mean."""
    from .taxonomy import display_name

    spread = metrics.get("stop_seed_spread") or []
    variants = list(dict.fromkeys(r["variant"] for r in spread))
    lines = ["| variant | init seeds | best epoch | val AUROC within | avg@k\\|N | AUROC within (bank) |",
             "|---|---|---|---|---|---|"]
    for variant in variants:
        rs = [r for r in spread if r["variant"] == variant]
        name = display_name(variant)
        def joined(key: str, fmt: str = "{:.3f}") -> str:
            return " / ".join(fmt.format(r[key]) for r in rs)

        def with_mean(key: str) -> str:
            return f"{joined(key)} (mean {sum(r[key] for r in rs) / len(rs):.3f})"

        lines.append(f"| {name} | {joined('init_seed', '{}')} | {joined('best_epoch', '{}')} | "
                     f"{with_mean('val_within_auroc')} | {with_mean('accuracy')} | {with_mean('auroc_within')} |")
    return "\n".join(lines)


def summary(all_metrics: dict[str, dict[str, Any]]) -> str:
    """One line per notebook with its headline numbers."""
    out = []
    if (m := all_metrics.get("00_reasoning_model")) is not None:
        out.append(f"- 00: pass@1 {m['pass_at_1']:.3f}; problems in the band {m['band_fraction']:.3f}; failed paths "
                   f"whose first wrong step is inside the prefix {m.get('failed_first_wrong_in_prefix', float('nan')):.3f}; "
                   f"oracle AUROC within {m.get('auroc_oracle_within', float('nan')):.3f}; "
                   f"path length {m['mean_tokens']:.0f} tokens, L = {m['prefix_len']}")
    if (m := all_metrics.get("01_dataset_construction")) is not None:
        out.append(f"- 01: {m['problems_kept']} of {m['problems']} problems kept ({m['kept_fraction']:.2f}); "
                   f"{m['prefixes']} prefixes ({m['prefixes_train']} train / {m['prefixes_val']} validation); soft labels "
                   f"strictly in (0, 1) {m['soft_strictly_between_0_1']:.3f}; soft-hard correlation {m['soft_hard_corr']:.2f}; "
                   f"{m['tokens_generated']:,} tokens in {m['seconds']:.0f} s")
    if (m := all_metrics.get("02_stop_training")) is not None:
        parts = [f"{name} within {row['within_auroc']:.3f} / pooled {row['auroc']:.3f} / MSE {row['mse']:.3f} "
                 f"(epoch {row['best_epoch']:.0f})" for name, row in m.items() if isinstance(row, dict)]
        out.append("- 02 (validation): " + "; ".join(parts))
    if (m := all_metrics.get("04_attention_analysis")) is not None:
        if m.get("difference") is None:
            out.append(f"- 04: {m['prefixes']} prefixes; no doomed/clean pair at the same step (not measurable)")
        else:
            low, high = m["difference_ci"]
            out.append(f"- 04: first wrong step enrichment {m['error_step_enrichment']:.3f} vs matched clean "
                       f"{m['control_enrichment']:.3f}; difference {m['difference']:+.3f} {_ci(low, high)}, {m['pairs']} pairs")
    if (m := all_metrics.get("05_scaling_law")) is not None:
        fit, ci = m["fit"], m["ci"]
        coeffs = ", ".join(f"{name} = {fit[name]:.3g}" + ("" if name in m["fixed"] else f" {_ci(*ci[name])}")
                           for name in ("b", "c", "d"))
        out.append(f"- 05: {coeffs} (fixed: {', '.join(m['fixed']) or 'none'}); R² (log) {m['r2_log']:.2f}; "
                   f"{m['optimal_at_largest_gamma']:.0%} of the envelope at the grid's largest γ; best γ on the wide grid "
                   + ", ".join(f"{g}: {c}" for g, c in m["best_gamma_wide_grid"].items()))
    if (m := all_metrics.get("reproduce")) is not None:
        parts = ", ".join(f"{name[:2]} {value:.1f}" for name, value in sorted(m["minutes"].items()))
        out.append(f"- wall time (scale {m['scale']}): {m['total_minutes']:.1f} min ({parts})")
    return "\n".join(out)


def report(run: str, results_root: str | Path = "results") -> str:
    """Every table and summary line of ``run`` as markdown."""
    metrics = load_metrics(run, results_root)
    parts = [f"## {run}", "", summary(metrics)]
    if TAXONOMY_NOTEBOOK in metrics:
        parts += ["", main_table(metrics[TAXONOMY_NOTEBOOK]), "", seed_table(metrics[TAXONOMY_NOTEBOOK])]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stoplib.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run names under results/latest (toy, smollm2-135m, ...)")
    parser.add_argument("--results-root", default="results")
    args = parser.parse_args(argv)
    for run in args.runs:
        try:
            print(report(run, args.results_root))
        except (FileNotFoundError, ValueError) as err:
            parser.exit(2, f"python -m stoplib.report: error: {err}\n")


if __name__ == "__main__":
    main()
