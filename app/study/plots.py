"""Study figures: per-arm curves over seeds and per-arm final values, in the style of the run figures.

Same canvas and panel geometry as :mod:`app.engine.plots` (Agg canvas, no ``pyplot``, 4 x 3 inch
panels, three per row); each arm has one tab10 colour in every panel of both figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from app.engine.plots import CURVE_COLUMNS, PANEL_INCHES
from app.io.atomic import atomic_output
from app.study.aggregate import StudyResults, arm_curve

__all__ = ["plot_study_curves", "plot_final_values"]

ARM_COLOURS = colormaps["tab10"]


def _panels(n: int) -> tuple[Figure, list[Axes]]:
    n_cols = min(CURVE_COLUMNS, n)
    n_rows = math.ceil(n / n_cols)
    fig = Figure(figsize=(PANEL_INCHES[0] * n_cols, PANEL_INCHES[1] * n_rows + 0.4), layout="constrained")
    axes = list(fig.subplots(n_rows, n_cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _save(fig: Figure, path: str | Path) -> Path:
    with atomic_output(path) as tmp:
        FigureCanvasAgg(fig).print_png(str(tmp))
    return Path(path)


def plot_study_curves(results: StudyResults, metrics: Sequence[str], path: str | Path) -> Path:
    """One panel for the train loss and one per metric: each arm's mean over seeds per epoch, with
    the band between the lowest and the highest seed.

    Args:
        results: from :func:`app.study.aggregate.collect_results`.
        metrics: history columns to draw after ``train_loss`` (e.g. ``val_iou``).
        path: PNG to write.

    Returns:
        ``path``.
    """
    keys = ["train_loss", *metrics]
    fig, axes = _panels(len(keys))
    for ax, key in zip(axes, keys, strict=True):
        for i, arm in enumerate(results.arms):
            band = arm_curve(results.of_arm(arm), key)
            if not band.epochs.size:
                continue
            colour = ARM_COLOURS(i % ARM_COLOURS.N)
            ax.plot(
                band.epochs, band.mean, color=colour, label=arm, marker="o" if band.epochs.size < 30 else None
            )
            ax.fill_between(band.epochs, band.lo, band.hi, color=colour, alpha=0.2, linewidth=0)
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    return _save(fig, path)


def plot_final_values(results: StudyResults, metrics: Sequence[str], path: str | Path) -> Path:
    """One panel per metric: each seed's final value as a dot and the arm's mean as a line across them.

    Args:
        results: from :func:`app.study.aggregate.collect_results`.
        metrics: history columns to draw.
        path: PNG to write.

    Returns:
        ``path``.
    """
    fig, axes = _panels(len(metrics))
    positions = np.arange(len(results.arms))
    for ax, key in zip(axes, metrics, strict=True):
        for i, arm in enumerate(results.arms):
            finals = [v for v in (run.final(key) for run in results.of_arm(arm)) if math.isfinite(v)]
            if not finals:
                continue
            colour = ARM_COLOURS(i % ARM_COLOURS.N)
            ax.hlines(np.mean(finals), i - 0.3, i + 0.3, color=colour, linewidth=2)
            ax.scatter(np.full(len(finals), float(i)), finals, color=colour, s=18, zorder=3)
        ax.set_xticks(positions, results.arms, rotation=30, ha="right", fontsize="small")
        ax.set_xlim(-0.5, len(positions) - 0.5)
        ax.set_title(f"final {key.replace('_', ' ')}")
        ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)
