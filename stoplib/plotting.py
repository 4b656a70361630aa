"""Paper-style figures. One function per figure; ``save_figure`` writes them to figures/."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np


def set_style() -> None:
    """A clean seaborn style used by every figure."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)


def save_figure(fig: "plt.Figure", name: str, figures_dir: str | Path = "figures", *, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Save ``fig`` as ``figures_dir/name.<fmt>`` (dpi 150); returns the written paths."""
    if not name or "/" in name:
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    out_dir = Path(figures_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths


def plot_pass_counts(pass_counts: Sequence[int], n: int, band: tuple[int, int] | None = None,
                     title: str = "Correct paths per problem") -> "plt.Figure":
    """Histogram of correct paths out of n per problem; the learnable band shaded."""
    set_style()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(pass_counts, bins=range(0, n + 2), color="#4C72B0", edgecolor="white", align="left")
    if band is not None:
        ax.axvspan(band[0] - 0.5, band[1] + 0.5, color="#55A868", alpha=0.15, label=f"kept band {band[0]}-{band[1]}")
        ax.legend(loc="upper center", frameon=False)
    ax.set(xlabel=f"correct paths out of {n}", ylabel="problems", title=title)
    return fig


def plot_label_distribution(soft: Sequence[float], hard: Sequence[int]) -> "plt.Figure":
    """Soft (Monte Carlo) labels, split by the hard label of the path the prefix came from."""
    set_style()
    soft, hard = np.asarray(soft), np.asarray(hard)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.linspace(0, 1, 21)
    ax.hist([soft[hard == 1], soft[hard == 0]], bins=bins, stacked=True, color=["#55A868", "#C44E52"],
            label=["original path correct", "original path wrong"], edgecolor="white")
    ax.set(xlabel="soft label s_mc (fraction of continuations correct)", ylabel="prefixes",
           title="Monte Carlo soft labels")
    ax.legend(frameon=False)
    return fig


def plot_learning_curves(history: Sequence[dict], title: str = "STOP training") -> "plt.Figure":
    """Train loss, validation MSE and AUROC per epoch."""
    set_style()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.0))
    axes[0].plot(epochs, [h["train_loss"] for h in history], marker="o")
    axes[0].set(title="train soft BCE", xlabel="epoch")
    axes[1].plot(epochs, [h["val_mse"] for h in history], marker="o", color="#C44E52")
    axes[1].set(title="validation MSE to s_mc", xlabel="epoch")
    for key, label in (("val_auroc", "pooled"), ("val_within_auroc", "within problem")):
        if key in history[0]:
            axes[2].plot(epochs, [h[key] for h in history], marker="o", label=label)
    axes[2].set(title="validation AUROC (path correct)", xlabel="epoch")
    axes[2].legend(frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_first_error_positions(fractions: Sequence[float], prefix_fraction: float) -> "plt.Figure":
    """Where failed paths make their first error, as a fraction of the path."""
    set_style()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(fractions, bins=np.linspace(0, 1, 21), color="#C44E52", edgecolor="white")
    ax.axvline(prefix_fraction, color="k", ls="--", label=f"prefix (L) = {prefix_fraction:.0%} of a path")
    ax.set(xlabel="position of the first wrong step (fraction of the path)", ylabel="failed paths",
           title="Failures begin early")
    ax.legend(frameon=False)
    return fig


def plot_salvage_curve(positions: Sequence[float], still_salvageable: Sequence[float],
                       doomed_share: Sequence[float], prefix_fraction: float) -> "plt.Figure":
    """The "why prune early" figure (paper Figure 1's motivation).

    ``still_salvageable[t]``: P(path ends correct | it already made an error by position t);
    ``doomed_share[t]``: share of the eventually failed paths that already made their first
    error by position t.
    """
    set_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.plot(positions, doomed_share, color="#C44E52", lw=2, label="failed paths already wrong by t")
    ax.plot(positions, still_salvageable, color="#4C72B0", lw=2, label="P(correct | wrong step by t)")
    ax.axvline(prefix_fraction, color="k", ls="--", lw=1, label="prune point L")
    ax.set(xlabel="position t along the path (fraction)", ylabel="probability", ylim=(-0.02, 1.02),
           title="Why prune early? When failed paths go wrong")
    ax.legend(frameon=False, loc="center right")
    return fig


TYPE_COLORS = {"-": "#7f7f7f", "control": "#bbbbbb", "I": "#8172B3", "II": "#CCB974", "III": "#64B5CD", "IV": "#C44E52"}


def plot_main_table(table, title: str = "avg@k|N by signal") -> "plt.Figure":
    """Horizontal bars of avg@k|N with 95% CIs, coloured by taxonomy type; no pruning as a line."""
    set_style()
    base = table.iloc[0]
    rows = table.iloc[1:].sort_values("accuracy")
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.2))
    y = np.arange(len(rows))
    err = np.vstack([rows["accuracy"] - rows["ci_low"], rows["ci_high"] - rows["accuracy"]])
    ax.barh(y, rows["accuracy"], xerr=err, color=[TYPE_COLORS.get(t, "#999") for t in rows["type"]],
            error_kw={"lw": 1, "capsize": 2})
    ax.axvline(base["accuracy"], color="k", ls="--", lw=1, label=base["signal"])
    ax.set_yticks(y, [f"{s} ({t})" for s, t in zip(rows["signal"], rows["type"])])
    ax.set(xlabel="accuracy of the kept paths", title=title)
    ax.legend(frameon=False, loc="lower right")
    return fig


def plot_budget_curve(curve, title: str = "Cons@N vs compute at γ = 1/2") -> "plt.Figure":
    """Cons@N against total tokens, one line per signal (paper Figure 4)."""
    set_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, part in curve.groupby("signal", sort=False):
        part = part.sort_values("tokens_k")
        style = {"color": "k", "ls": "--"} if name == "no pruning" else {}
        ax.plot(part["tokens_k"], part["cons"], marker="o", label=name, **style)
    ax.set_xscale("log")
    ax.set(xlabel="generated tokens per problem (thousands)", ylabel="Cons@N (majority vote accuracy)", title=title)
    ax.legend(frameon=False, fontsize=8)
    return fig


def plot_gamma_sweep(sweep, title: str = "Cons@N vs tokens for each retention γ") -> "plt.Figure":
    """One panel per prefix length; one line per γ over N (paper Figures 5 and 9)."""
    set_style()
    lengths = sorted(sweep["prefix_len"].unique())
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 3.4), sharey=True, squeeze=False)
    for ax, length in zip(axes[0], lengths):
        part = sweep[sweep["prefix_len"] == length]
        for gamma, g in part.groupby("gamma"):
            g = g.sort_values("tokens")
            ax.plot(g["tokens"], g["accuracy"], marker="o", label=f"γ = 1/{round(1 / gamma)}")
        ax.set_xscale("log")
        ax.set(title=f"L_prefix = {length}", xlabel="generated tokens per problem")
    axes[0][0].set_ylabel("Cons@N")
    axes[0][-1].legend(frameon=False, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_optimal_gamma(optimal, fit, task_len: float) -> "plt.Figure":
    """Optimal γ⁻¹ per budget (points) and the fitted law (lines), per prefix length (Figure 6)."""
    set_style()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for length, part in optimal.groupby("prefix_len"):
        part = part.sort_values("budget")
        line = ax.plot(part["budget"], 1 / part["best_gamma"], "o", label=f"L = {length} (optimal)")[0]
        grid = np.geomspace(part["budget"].min(), part["budget"].max(), 50)
        ax.plot(grid, fit.predict(grid, length, task_len), color=line.get_color(), lw=1.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="budget C (tokens per problem)", ylabel="optimal γ⁻¹ = N/k", title="Optimal retention and the fitted law")
    ax.legend(frameon=False, fontsize=8)
    return fig


def plot_token_attention(tokens: Sequence[str], weights: Sequence[float], title: str = "",
                         width: int = 40) -> "plt.Figure":
    """A token heatmap: the sequence laid out in rows, each cell shaded by its attention (Figure 7)."""
    set_style()
    weights = np.asarray(weights, dtype=float)
    rows = int(np.ceil(len(tokens) / width))
    grid = np.full((rows, width), np.nan)
    grid.flat[: len(weights)] = weights
    fig, ax = plt.subplots(figsize=(width * 0.22, rows * 0.32 + 0.6))
    ax.imshow(grid, cmap="Reds", aspect="auto", vmin=0, vmax=np.nanmax(weights))
    for i, tok in enumerate(tokens):
        shown = {"\n": "⏎", " ": "␣"}.get(tok, tok)[:3]
        ax.text(i % width, i // width, shown, ha="center", va="center", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title(title, fontsize=9)
    return fig


def plot_category_mass(table, title: str = "[STOP] attention by token category") -> "plt.Figure":
    """Mean attention mass per category for high- vs low-scoring prefixes, with 95% CIs."""
    set_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    cats = list(dict.fromkeys(table["category"]))
    x = np.arange(len(cats))
    for offset, (group, part) in zip((-0.2, 0.2), table.groupby("group", sort=False)):
        part = part.set_index("category").reindex(cats)
        err = np.vstack([part["mass"] - part["ci_low"], part["ci_high"] - part["mass"]])
        ax.bar(x + offset, part["mass"], width=0.4, yerr=err, label=group, capsize=2)
    ax.set_xticks(x, cats, rotation=20)
    ax.set(ylabel="attention mass", title=title)
    ax.legend(frameon=False)
    return fig
