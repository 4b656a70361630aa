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
           title="Why prune early: errors come early and stick")
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
