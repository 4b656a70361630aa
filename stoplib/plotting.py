"""Paper-style figures. One function per figure; ``save_figure`` writes them to figures/."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt


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
