"""Every figure renders from data shaped like the notebooks', with readable axes: no tick labels
that overlap, plain numbers on log axes, display names instead of code names."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from stoplib import plotting, taxonomy  # noqa: E402
from stoplib.scaling import fit_scaling_law  # noqa: E402


def tick_texts(fig):
    """The visible tick labels of every axes, as (axes, axis name, [Text])."""
    fig.canvas.draw()
    out = []
    for ax in fig.axes:
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            texts = [t for t in axis.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
            out.append((ax, name, texts))
    return out


def assert_readable(fig):
    renderer = fig.canvas.get_renderer()
    for ax, name, texts in tick_texts(fig):
        boxes = [t.get_window_extent(renderer) for t in texts]
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert not boxes[i].overlaps(boxes[j]), (name, texts[i].get_text(), texts[j].get_text())
        for t in texts:
            assert "times" not in t.get_text() and "×" not in t.get_text() and "^" not in t.get_text(), t.get_text()
    plt.close(fig)


def budget_curve_frame():
    rows = []
    for signal in ("no_pruning", "slimsc_jaccard", "verifier", "deepconf_lowest_group", "stop"):
        kind = "-" if signal == "no_pruning" else taxonomy.signal_info(signal)["type"]
        label = "No pruning" if signal == "no_pruning" else taxonomy.display_name(signal)
        for n in (2, 4, 8, 16, 32, 64):
            rows.append({"signal": signal, "label": label, "type": kind, "n": n, "tokens_k": 0.12 * n * (0.6 if kind != "-" else 1),
                         "cons": 0.5 + 0.05 * np.log2(n)})
    return pd.DataFrame(rows)


def test_log_axes_carry_plain_numbers_and_no_overlap():
    fig = plotting.plot_budget_curve(budget_curve_frame())
    labels = [t.get_text() for t in fig.axes[0].xaxis.get_ticklabels() if t.get_text()]
    assert labels and all(lab.rstrip("k").replace(".", "").isdigit() for lab in labels), labels
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "STOP" in legend and "stop" not in legend and "slimsc_jaccard" not in legend
    assert_readable(fig)

    budgets = np.geomspace(200, 6000, 10)
    rows = [{"budget": b, "prefix_len": length, "best_gamma": 0.5 if b > 400 else 0.25}
            for length in (24, 35, 53) for b in budgets]
    optimal = pd.DataFrame(rows)
    fit = fit_scaling_law(optimal["budget"], optimal["prefix_len"], 118, 1 / optimal["best_gamma"])
    fig = plotting.plot_optimal_gamma(optimal, fit, 118)
    y_labels = [t.get_text() for t in fig.axes[0].yaxis.get_ticklabels() if t.get_text()]
    assert "2" in y_labels and "4" in y_labels, y_labels
    assert_readable(fig)

    sweep = pd.DataFrame([{"prefix_len": length, "gamma": g, "tokens": 118 * n * g + length * n, "accuracy": 0.6}
                          for length in (24, 53) for g in (1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 1.0)
                          for n in (4, 8, 16, 32, 64)])
    fig = plotting.plot_gamma_sweep(sweep)
    legend = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert legend == ["γ = 1/16", "γ = 1/8", "γ = 1/4", "γ = 1/2", "γ = 0.75", "γ = 1/1"]
    assert_readable(fig)


def test_main_table_figure_uses_labels_and_type_names():
    names = ["random", "stop", "verifier", "mean_logprob", "stop_probe", "slimsc_jaccard"]
    rows = [{"signal": "no_pruning", "label": "No pruning (avg@64)", "type": "-", "accuracy": 0.6, "ci_low": 0.5,
             "ci_high": 0.7}]
    rows += [{**taxonomy.signal_info(n), "accuracy": 0.4 + 0.05 * i, "ci_low": 0.3 + 0.05 * i, "ci_high": 0.5 + 0.05 * i}
             for i, n in enumerate(names)]
    fig = plotting.plot_main_table(pd.DataFrame(rows))
    y = [t.get_text() for t in fig.axes[0].yaxis.get_ticklabels()]
    assert "STOP (Type IV)" in y and "Random (control)" in y and "STOP w/o adapter (Type IV)" in y
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["control", "Type I", "Type II", "Type III", "Type IV", "No pruning (avg@64)"], legend
    assert not any(n in " ".join(y) for n in ("stop_probe", "slimsc_jaccard", "mean_logprob"))
    assert_readable(fig)


def test_token_heatmap_shows_whole_tokens():
    tokens = ["<|im_start|>", "system", "\n", "You", " are", " a", " helpful", " assistant", "."] * 6
    weights = np.linspace(0, 1, len(tokens))
    weights[0] = 50.0  # an attention sink does not wash out the rest
    fig = plotting.plot_token_attention(tokens, weights, title="t")
    shown = [t.get_text() for t in fig.axes[0].texts]
    assert "<|im_start|>" in shown and "·helpful" in shown and "⏎" in shown
    colors = [p.get_facecolor() for p in fig.axes[0].patches]
    assert colors[1] != colors[-1]  # graded, despite the sink
    plt.close(fig)
    with pytest.raises(ValueError, match="tokens"):
        plotting.plot_token_attention(tokens, weights[:-1])


def test_remaining_figures_render_readably():
    rng = np.random.default_rng(0)
    figs = [plotting.plot_pass_counts(rng.integers(0, 33, 64), 32, (4, 28)),
            plotting.plot_label_distribution(rng.random(200), rng.integers(0, 2, 200)),
            plotting.plot_learning_curves([{"epoch": e, "train_loss": 1 / e, "val_mse": 0.2, "val_auroc": 0.7,
                                            "val_within_auroc": 0.6} for e in range(1, 16)]),
            plotting.plot_first_error_positions(rng.random(50), 0.3),
            plotting.plot_salvage_curve(np.linspace(0, 1, 11), np.linspace(0.1, 0, 11), np.linspace(0, 1, 11), 0.3),
            plotting.plot_category_mass(pd.DataFrame(
                [{"group": g, "category": c, "mass": 0.2, "ci_low": 0.1, "ci_high": 0.3, "n": 5}
                 for g in ("high score", "low score") for c in ("digits", "operators", "words", "prompt")]))]
    for fig in figs:
        assert_readable(fig)


def test_progressive_curve_figure_names_schedules_plainly():
    from stoplib.scaling import PROGRESSIVE_LABELS

    shares = {"single_L": 0.4, "single_2L": 0.5, "two_stage": 0.45, "halving": 0.47, "no_pruning": 1.0}
    rows = [{"schedule": s, "label": PROGRESSIVE_LABELS[s], "n": n, "tokens": 118.0 * n * f,
             "cons": 0.5 + 0.04 * np.log2(n), "avg_kept": 0.45 + 0.02 * np.log2(n)}
            for s, f in shares.items() for n in (8, 16, 32, 64)]
    fig = plotting.plot_progressive_curve(pd.DataFrame(rows))
    labels = [t.get_text() for t in fig.axes[0].xaxis.get_ticklabels() if t.get_text()]
    assert labels and all(lab.rstrip("k").replace(".", "").isdigit() for lab in labels), labels
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "single stage at L" in legend and "no pruning" in legend and "halving" not in legend
    assert_readable(fig)
