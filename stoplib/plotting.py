"""Paper-style figures. One function per figure; ``save_figure`` writes them to figures/.

Statistical figures are drawn with seaborn; intervals are the ones the tables report (computed
with ``scipy.stats.bootstrap`` in :mod:`stoplib.metrics`), so a figure and its table agree.
Log axes carry plain numbers (1, 2, 5, 10, ..., 2k), never matplotlib's 2×10³ labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib import ticker

# one colour per taxonomy type, used by every figure that shows signals
TYPE_COLORS = {"-": "#222222", "control": "#9a9a9a", "I": "#8172B3", "II": "#CCB974", "III": "#64B5CD", "IV": "#C44E52"}
TYPE_NAMES = {"-": "no pruning", "control": "control", "I": "Type I", "II": "Type II", "III": "Type III",
              "IV": "Type IV"}


def set_style() -> None:
    """A clean seaborn style used by every figure."""
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


def _plain_number(value: float, _pos: int | None = None) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def plain_log_axis(ax: "plt.Axes", which: str = "x") -> None:
    """Log scale with plain-number ticks: 1-2-5 steps over several decades, every integer step
    within one decade, no minor labels."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    low, high = ax.get_xlim() if which == "x" else ax.get_ylim()
    decades = np.log10(max(high, 1e-12) / max(low, 1e-12))
    subs = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0) if decades < 1.2 else (1.0, 2.0, 5.0) if decades < 3.5 else (1.0,)
    axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(_plain_number))
    axis.set_minor_formatter(ticker.NullFormatter())


def plot_pass_counts(pass_counts: Sequence[int], n: int, band: tuple[int, int] | None = None,
                     title: str = "Correct paths per problem") -> "plt.Figure":
    """Histogram of correct paths out of n per problem; the learnable band shaded."""
    set_style()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sns.histplot(x=np.asarray(pass_counts), bins=np.arange(-0.5, n + 1.5), color="#4C72B0", ax=ax)
    if band is not None:
        ax.axvspan(band[0] - 0.5, band[1] + 0.5, color="#55A868", alpha=0.15, label=f"kept band {band[0]}–{band[1]}")
        ax.legend(loc="upper center", frameon=False)
    ax.set(xlabel=f"correct paths out of {n}", ylabel="problems", title=title)
    return fig


def plot_label_distribution(soft: Sequence[float], hard: Sequence[int]) -> "plt.Figure":
    """Soft (Monte Carlo) labels, split by the hard label of the path the prefix came from."""
    set_style()
    soft, hard = np.asarray(soft, dtype=float), np.asarray(hard)
    origin = np.where(hard == 1, "original path correct", "original path wrong")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sns.histplot(x=soft, hue=origin, hue_order=["original path correct", "original path wrong"],
                 palette=["#55A868", "#C44E52"], bins=np.linspace(0, 1, 21), multiple="stack", ax=ax)
    legend = ax.get_legend()
    if legend is not None:
        legend.set_title(None)
        legend.set_frame_on(False)
    ax.set(xlabel="soft label (share of continuations that end correct)", ylabel="prefixes",
           title="Monte Carlo soft labels")
    return fig


def plot_learning_curves(history: Sequence[dict], title: str = "STOP training") -> "plt.Figure":
    """Train loss, validation MSE and AUROC per epoch."""
    set_style()
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.0))
    sns.lineplot(x=epochs, y=[h["train_loss"] for h in history], marker="o", ax=axes[0])
    axes[0].set(title="train loss (soft-label BCE)", xlabel="epoch")
    sns.lineplot(x=epochs, y=[h["val_mse"] for h in history], marker="o", color="#C44E52", ax=axes[1])
    axes[1].set(title="validation MSE to the soft labels", xlabel="epoch")
    for key, label in (("val_auroc", "pooled"), ("val_within_auroc", "within problem")):
        if key in history[0]:
            sns.lineplot(x=epochs, y=[h[key] for h in history], marker="o", label=label, ax=axes[2])
    axes[2].set(title="validation AUROC (path correct)", xlabel="epoch")
    axes[2].legend(frameon=False)
    for ax in axes:
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_first_error_positions(fractions: Sequence[float], prefix_fraction: float) -> "plt.Figure":
    """Where failed paths make their first error, as a fraction of the path."""
    set_style()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sns.histplot(x=np.asarray(fractions, dtype=float), bins=np.linspace(0, 1, 21), color="#C44E52", ax=ax)
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


def _label_column(table) -> str:
    return "label" if "label" in table.columns else "signal"


def plot_main_table(table, title: str = "avg@k|N by signal") -> "plt.Figure":
    """avg@k|N of each signal as a point with its 95% CI, coloured by taxonomy type; no pruning
    (the table's first row) as a dashed line."""
    set_style()
    name = _label_column(table)
    base = table.iloc[0]
    rows = table.iloc[1:].sort_values("accuracy", ascending=False).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.3))
    labels = [f"{s} ({TYPE_NAMES.get(t, t)})" for s, t in zip(rows[name], rows["type"])]
    present = [TYPE_NAMES[t] for t in TYPE_NAMES if t in set(rows["type"])]  # legend in taxonomy order
    sns.scatterplot(x=rows["accuracy"], y=labels, hue=rows["type"].map(TYPE_NAMES), hue_order=present, s=55, zorder=3,
                    palette={TYPE_NAMES[t]: c for t, c in TYPE_COLORS.items()}, ax=ax)
    ax.hlines(labels, rows["ci_low"], rows["ci_high"], colors=[TYPE_COLORS.get(t, "#999") for t in rows["type"]], lw=2)
    ax.axvline(base["accuracy"], color="k", ls="--", lw=1, label=base[name])
    ax.set(xlabel="accuracy of the kept paths (95% CI over problems)", ylabel="", title=title)
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_budget_curve(curve, title: str = "Cons@N vs compute at γ = 1/2") -> "plt.Figure":
    """Cons@N against total tokens, one line per signal coloured by its type (paper Figure 4)."""
    set_style()
    name = _label_column(curve)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, part in curve.groupby(name, sort=False):
        part = part.sort_values("tokens_k")
        kind = part["type"].iloc[0] if "type" in part else None
        style = {"ls": "--"} if kind == "-" else {}
        sns.lineplot(x=part["tokens_k"], y=part["cons"], marker="o", label=label, ax=ax,
                     color=TYPE_COLORS.get(kind) if kind is not None else None, **style)
    plain_log_axis(ax, "x")
    ax.set(xlabel="generated tokens per problem (thousands)", ylabel="Cons@N (majority vote)", title=title)
    ax.legend(frameon=False, fontsize=8)
    return fig


def plot_progressive_curve(curve, title: str = "Progressive vs single-stage pruning") -> "plt.Figure":
    """Cons@N and avg@k|N against tokens per problem, one line per pruning schedule over N (the
    rows of ``scaling.progressive_curve``); no pruning dashed. Each point is labelled with its N."""
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.6), sharex=True)
    names = [s for s in dict.fromkeys(curve["schedule"]) if s != "no_pruning"]
    palette = dict(zip(names, sns.color_palette("deep", len(names))))
    palette["no_pruning"] = TYPE_COLORS["-"]
    for ax, column, ylabel in zip(axes, ("cons", "avg_kept"), ("Cons@N (majority vote)", "avg@k|N (kept paths)")):
        for name, part in curve.groupby("schedule", sort=False):
            part = part.sort_values("tokens")
            style = {"ls": "--"} if name == "no_pruning" else {}
            sns.lineplot(x=part["tokens"], y=part[column], marker="o", color=palette[name], label=part["label"].iloc[0],
                         ax=ax, legend=False, **style)
        first = curve[curve["schedule"] == names[0]] if names else curve
        for _, row in first.iterrows():
            ax.annotate(f"N={row['n']}", (row["tokens"], row[column]), textcoords="offset points", xytext=(0, 7),
                        ha="center", va="bottom", fontsize=7, color=palette.get(row["schedule"], "#444"))
        plain_log_axis(ax, "x")
        ax.set(xlabel="generated tokens per problem", ylabel=ylabel)
    labels = dict(zip(curve["schedule"], curve["label"]))
    handles = [plt.Line2D([], [], color=palette[name], marker="o", ls="--" if name == "no_pruning" else "-",
                          label=label) for name, label in labels.items()]
    axes[1].legend(handles=handles, frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _gamma_label(gamma: float) -> str:
    inverse = 1 / gamma
    return f"γ = 1/{inverse:.0f}" if abs(inverse - round(inverse)) < 1e-9 else f"γ = {gamma:g}"


def plot_gamma_sweep(sweep, title: str = "Cons@N vs tokens for each retention γ") -> "plt.Figure":
    """One panel per prefix length; one line per γ over N (paper Figures 5 and 9)."""
    set_style()
    lengths = sorted(sweep["prefix_len"].unique())
    gammas = sorted(sweep["gamma"].unique())
    palette = dict(zip(gammas, sns.color_palette("viridis", len(gammas))))
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 3.4), sharey=True, squeeze=False)
    for ax, length in zip(axes[0], lengths):
        part = sweep[sweep["prefix_len"] == length]
        for gamma, g in part.groupby("gamma"):
            g = g.sort_values("tokens")
            sns.lineplot(x=g["tokens"], y=g["accuracy"], marker="o", color=palette[gamma], label=_gamma_label(gamma),
                         ax=ax, legend=False)
        plain_log_axis(ax, "x")
        ax.set(title=f"L = {length}", xlabel="generated tokens per problem", ylabel="Cons@N")
    handles = [plt.Line2D([], [], color=palette[g], marker="o", label=_gamma_label(g)) for g in gammas]
    axes[0][-1].legend(handles=handles, frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_optimal_gamma(optimal, fit, task_len: float) -> "plt.Figure":
    """Optimal γ⁻¹ per budget (points) and the fitted law (lines), per prefix length (Figure 6)."""
    set_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    lengths = sorted(optimal["prefix_len"].unique())
    palette = dict(zip(lengths, sns.color_palette("deep", len(lengths))))
    for length in lengths:
        part = optimal[optimal["prefix_len"] == length].sort_values("budget")
        ax.plot(part["budget"], 1 / part["best_gamma"], "o", color=palette[length], label=f"L = {length}: best γ⁻¹")
        grid = np.geomspace(part["budget"].min(), part["budget"].max(), 50)
        ax.plot(grid, fit.predict(grid, length, task_len), color=palette[length], lw=1.5, label=f"L = {length}: law")
    plain_log_axis(ax, "x")
    plain_log_axis(ax, "y")
    ax.set(xlabel="budget C (tokens per problem)", ylabel="optimal γ⁻¹ = N/k", title="Optimal retention and the fitted law")
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _shown_token(token: str) -> str:
    return token.replace("\n", "⏎").replace(" ", "·") or "∅"


def plot_token_attention(tokens: Sequence[str], weights: Sequence[float], title: str = "",
                         width: int = 90, cap_quantile: float = 0.99) -> "plt.Figure":
    """The sequence as highlighted text (paper Figure 7): each whole token in a box shaded by its
    attention, wrapped at ``width`` characters and at the text's own newlines (shown as ⏎); spaces
    are shown as ·. The colour
    scale stops at the ``cap_quantile`` of the weights, so one attention sink (often the first
    token) does not wash out the rest."""
    set_style()
    weights = np.asarray(weights, dtype=float)
    if len(tokens) != len(weights):
        raise ValueError(f"tokens ({len(tokens)}) and weights ({len(weights)}) differ in length")
    shown = [_shown_token(t) for t in tokens]
    placed, row, col = [], 0, 0
    for token, text in zip(tokens, shown):
        if col and col + len(text) > width:
            row, col = row + 1, 0
        placed.append((row, col, text))
        col += len(text)
        if "\n" in token:  # keep the text's own line breaks
            row, col = row + 1, 0
    rows = row + 1 if col else max(row, 1)
    width = max(20, max((c + len(text) for _, c, text in placed), default=0))  # no empty margin on short lines
    vmax = max(float(np.quantile(weights, cap_quantile)) if weights.size else 1.0, 1e-12)
    cmap = plt.get_cmap("Reds")
    fig, ax = plt.subplots(figsize=(width * 0.085 + 0.4, rows * 0.26 + 0.7))
    for (r, c, text), w in zip(placed, weights):
        ax.add_patch(plt.Rectangle((c, r - 0.45), len(text), 0.9, color=cmap(min(w / vmax, 1.0) * 0.85), lw=0))
        ax.text(c, r, text, ha="left", va="center", family="monospace", fontsize=7.5)
    ax.set(xlim=(0, width), ylim=(rows - 0.5, -0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9)
    return fig


def plot_category_mass(table, title: str = "[STOP] attention by token category") -> "plt.Figure":
    """Mean attention mass per category for high- vs low-scoring prefixes, with the table's 95% CIs."""
    set_style()
    fig, ax = plt.subplots(figsize=(6.8, 3.4))
    cats = list(dict.fromkeys(table["category"]))
    groups = list(dict.fromkeys(table["group"]))
    sns.barplot(data=table, x="category", y="mass", hue="group", order=cats, hue_order=groups, errorbar=None, ax=ax)
    width = 0.8 / len(groups)
    for i, group in enumerate(groups):
        part = table[table["group"] == group].set_index("category").reindex(cats)
        x = np.arange(len(cats)) - 0.4 + width * (i + 0.5)
        ax.errorbar(x, part["mass"], yerr=np.vstack([part["mass"] - part["ci_low"], part["ci_high"] - part["mass"]]),
                    fmt="none", ecolor="k", lw=1, capsize=2)
    ax.tick_params(axis="x", labelrotation=20)
    ax.set(xlabel="", ylabel="attention mass", title=title)
    ax.legend(frameon=False, title=None)
    return fig


def plot_ablation(summary, runs, references: dict[str, float] | None = None,
                  title: str = "STOP ablations") -> "plt.Figure":
    """One panel per ablation axis: avg@k|N of each value (seed mean, 95% CI over problems) with
    each seed as a small dot and the run's own value filled; ``references`` (label -> accuracy,
    e.g. no pruning, the text verifier) as horizontal lines (paper Tables 5 and 6)."""
    set_style()
    axes_names = list(dict.fromkeys(summary["axis"]))
    fig, axes = plt.subplots(1, len(axes_names), figsize=(4.0 * len(axes_names), 3.4), sharey=True, squeeze=False)
    ref_colors = dict(zip(references or {}, ["#222222", TYPE_COLORS["II"], "#777777"]))
    for ax, axis in zip(axes[0], axes_names):
        part = summary[summary["axis"] == axis].reset_index(drop=True)
        positions = {value: i for i, value in enumerate(part["value"])}
        seeds = runs[runs["axis"] == axis]
        ax.scatter([positions[v] for v in seeds["value"]], seeds["accuracy"], s=12, color="#999999", zorder=2,
                   label="one seed")
        ax.errorbar(range(len(part)), part["accuracy"], yerr=[part["accuracy"] - part["ci_low"],
                    part["ci_high"] - part["accuracy"]], fmt="none", ecolor=TYPE_COLORS["IV"], lw=2, zorder=3)
        for i, row in part.iterrows():
            ax.scatter([i], [row["accuracy"]], s=45, zorder=4, color=TYPE_COLORS["IV"] if row["is_default"] else "white",
                       edgecolors=TYPE_COLORS["IV"], linewidths=1.5, label="seed mean (run's own value filled)" if i == 0 else None)
        for label, value in (references or {}).items():
            ax.axhline(value, ls="--", lw=1, color=ref_colors[label], label=label)
        ax.set_xticks(range(len(part)), [v if isinstance(v, str) else f"{v:g}" for v in part["value"]])
        ax.set(xlabel=part["label"].iloc[0], ylabel="avg@k|N (95% CI over problems)" if ax is axes[0][0] else "")
        ax.margins(x=0.15)
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_transfer(table, title: str = "STOP across task families") -> "plt.Figure":
    """One panel per bank (in domain, transfer): avg@k|N of each method with its 95% CI; no
    pruning as a dashed line (paper Table 8)."""
    set_style()
    banks = list(dict.fromkeys(table["bank"]))
    fig, axes = plt.subplots(1, len(banks), figsize=(4.6 * len(banks), 2.6), sharex=True, squeeze=False)
    for ax, bank in zip(axes[0], banks):
        part = table[table["bank"] == bank]
        base = part[part["signal"] == "no_pruning"].iloc[0]
        rows = part[part["signal"] != "no_pruning"].reset_index(drop=True)
        colors = [TYPE_COLORS["IV"] if s == "stop" else TYPE_COLORS["control"] if s == "random" else TYPE_COLORS["III"]
                  for s in rows["signal"]]
        ax.hlines(rows["label"], rows["ci_low"], rows["ci_high"], colors=colors, lw=2)
        ax.scatter(rows["accuracy"], rows["label"], color=colors, s=45, zorder=3)
        ax.axvline(base["accuracy"], color="k", ls="--", lw=1, label=base["label"])
        ax.set(title=bank, xlabel="avg@k|N (95% CI over problems)", ylabel="")
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
