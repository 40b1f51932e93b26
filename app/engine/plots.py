"""Training figures: loss / metric / learning-rate curves and best-vs-worst case overlays.

Figures are drawn on matplotlib's Agg canvas directly (no ``pyplot``, so no global figure state and
no display needed) and written through a temporary file, so a viewer never reads a half-written PNG.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from app.engine.overlays import OverlayCase

__all__ = ["plot_curves", "plot_overlays"]

PANEL_INCHES = (4.0, 3.0)
CURVE_COLUMNS = 3
# Class k > 0 is drawn in colour k - 1 of tab10, the same colour in ground truth and prediction.
CLASS_COLOURS = colormaps["tab10"]


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    FigureCanvasAgg(fig).print_png(str(tmp))
    os.replace(tmp, path)
    return path


def plot_curves(rows: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Plot a training history (see :mod:`app.engine.history`) to a PNG, one panel per quantity.

    Panels: train loss, then every validation metric (points where validation ran), then the
    learning rate, all against the epoch.

    Args:
        rows: history rows with ``epoch``, ``train_loss``, ``lr`` and optional metric columns.
        path: PNG to write.

    Returns:
        ``path``.
    """
    metrics: list[str] = []
    for row in rows:
        metrics += [k for k in row if k not in ("epoch", "train_loss", "lr") and k not in metrics]
    panels = [("train_loss", "train loss")] + [(m, m) for m in metrics] + [("lr", "learning rate")]
    n_cols = min(CURVE_COLUMNS, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    width, height = PANEL_INCHES[0] * n_cols, PANEL_INCHES[1] * n_rows
    fig = Figure(figsize=(width, height))
    # Fixed margins in inches: constrained layout would double the drawing time of each refresh.
    fig.subplots_adjust(
        left=0.8 / width,
        right=1 - 0.2 / width,
        bottom=0.5 / height,
        top=1 - 0.35 / height,
        wspace=0.4,
        hspace=0.5,
    )
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (key, title) in zip(axes, panels, strict=False):
        points = [(r["epoch"], r[key]) for r in rows if key in r]
        epochs = [p[0] for p in points]
        values = [p[1] for p in points]
        ax.plot(epochs, values, marker="o" if len(points) < 50 else None, markersize=3)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_overlays(cases: Sequence[OverlayCase], path: str | Path) -> Path:
    """Plot image, ground truth and prediction of each case's views to a PNG.

    One row per view (one for a 2D case, three planes for a 3D case), three columns: the image, the
    ground truth over the image and the prediction over the image (class colours shared).

    Args:
        cases: from :class:`app.engine.overlays.BestWorstCases` or ``load_cases``.
        path: PNG to write.
    """
    rows = [(case, view) for case in cases for view in case.views]
    fig = Figure(figsize=(9.0, 3.0 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for (case, view), row_axes in zip(rows, axes, strict=True):
        for ax, title, mask in zip(
            row_axes, ("image", "ground truth", "prediction"), (None, view.label, view.pred), strict=True
        ):
            ax.imshow(view.image, cmap="gray", interpolation="nearest")
            if mask is not None:
                classes = np.ma.masked_equal(mask.astype(np.int16) - 1, -1)
                ax.imshow(
                    classes,
                    cmap=CLASS_COLOURS,
                    vmin=0,
                    vmax=CLASS_COLOURS.N - 1,
                    alpha=0.5,
                    interpolation="nearest",
                )
            ax.set_title(title)
            ax.set_xticks([])
            ax.set_yticks([])
        row_axes[0].set_ylabel(f"{case.role}: {case.name}\nDice {case.dice:.3f}, {view.plane}")
    return _save(fig, path)
