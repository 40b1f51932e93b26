"""Electron-microscopy (ISBI 2012) segmentation metrics and per-image reports.

Pixel metrics (pixel error, foreground IoU and Dice) compare the binary masks; the segmentation metrics
(adapted Rand error and variation of information) compare the *cells*, restricted to the label's
foreground as in the ISBI 2012 challenge evaluation, in two readings of the prediction:

- ``rand_error``, ``vi*``: the connected components of the predicted foreground, every predicted membrane
  pixel lumped into one extra segment (strict: a membrane drawn too thick merges the cells it touches);
- ``cell_rand_error``, ``cell_vi``: the cell segmentation :func:`cell_segmentation` makes of the mask (each
  predicted membrane pixel given to its nearest cell, as region growing or a watershed would), a
  partition of the image like the label's cells: only missing or spurious membranes count.

``isbi_pixel_error`` scores the cell *probability* as the ISBI 2012 challenge's "pixel error" (the one the
U-Net paper reports, 0.0611): 1 - the maximal F-score of the cell pixels over the thresholds 0, 0.1, ..., 1
(Fiji's ``trainableSegmentation.metrics.PixelError.getPixelErrorMaximalFScore``). It is not the fraction of
misclassified pixels (``pixel_error``): with cells 77 % of an ISBI slice, 1 - F of the cells is
about two thirds of it.

References:
    I. Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation algorithms for
    connectomics", Frontiers in Neuroanatomy 9:142, 2015, https://doi.org/10.3389/fnana.2015.00142
    M. Meila, "Comparing clusterings - an information based distance", Journal of Multivariate Analysis
    98(5):873-895, 2007, https://doi.org/10.1016/j.jmva.2006.11.013
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.metrics import compute_dice, compute_iou
from monai.utils import convert_data_type
from scipy import ndimage
from skimage.metrics import adapted_rand_error, variation_of_information
from skimage.segmentation import expand_labels

__all__ = [
    "EM_METRICS",
    "ISBI_THRESHOLDS",
    "cell_segmentation",
    "em_metrics",
    "em_metrics_table",
    "isbi_pixel_error",
    "pixel_f_counts",
    "to_binary_mask",
    "write_em_report",
]

logger = logging.getLogger(__name__)

EM_METRICS = (
    "pixel_error",
    "iou",
    "dice",
    "rand_error",
    "vi_split",
    "vi_merge",
    "vi",
    "cell_rand_error",
    "cell_vi",
)

ISBI_THRESHOLDS = tuple(i / 10 for i in range(11))
"""Thresholds on the cell probability over which the ISBI 2012 pixel error takes its best F-score."""


def to_binary_mask(x: NdarrayOrTensor, name: str = "mask") -> np.ndarray:
    """Boolean foreground ``(H, W)`` of a binary mask ``(H, W)`` or ``(1, H, W)``, values {0, 1} or {0, 255}.

    Args:
        x: numpy array or tensor; boolean arrays are accepted too.
        name: how errors refer to ``x``.

    Raises:
        ValueError: when the shape is not ``(H, W)`` / ``(1, H, W)`` or the values are not {0, 1} / {0, 255}
            (threshold probability maps first).
    """
    array = convert_data_type(x, np.ndarray)[0]
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be (H, W) or (1, H, W), got shape {tuple(x.shape)}.")
    values = set(np.unique(array).tolist())
    if not (values <= {0, 1} or values <= {0, 255}):
        shown = sorted(values)[:6]
        raise ValueError(f"{name} must be binary with values {{0, 1}} or {{0, 255}}, got values {shown}.")
    return array > 0


def cell_segmentation(mask: NdarrayOrTensor, connectivity: int = 1) -> np.ndarray:
    """Cells of a binary cell/membrane mask as a label image that partitions the plane.

    The connected components of the foreground (cells) are numbered 1, 2, ... in scan order, then every
    background (membrane) pixel joins its nearest cell in Euclidean distance
    (:func:`skimage.segmentation.expand_labels`), so neighbouring cells meet along the middle of the
    membrane between them. A mask with no foreground gives all zeros.

    Args:
        mask: binary mask ``(H, W)`` or ``(1, H, W)``, foreground (cell) 1 or 255.
        connectivity: neighbourhood defining cells: 1 = 4-connected, 2 = 8-connected.

    Returns:
        ``int32`` labels ``(H, W)``.

    Raises:
        ValueError: on a bad mask (see :func:`to_binary_mask`) or ``connectivity``.
    """
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-connected) or 2 (8-connected), got {connectivity}.")
    foreground = to_binary_mask(mask)
    return _grow_cells(ndimage.label(foreground, ndimage.generate_binary_structure(2, connectivity))[0])


def _grow_cells(cells: np.ndarray) -> np.ndarray:
    """Connected-component labels ``(H, W)`` (0 = membrane) with every membrane pixel given to its
    nearest cell, as ``int32``; unchanged when there is no cell or no membrane."""
    cells = cells.astype(np.int32)
    if not cells.any() or cells.all():
        return cells
    return expand_labels(cells, distance=float(sum(cells.shape)))


def em_metrics(pred: NdarrayOrTensor, label: NdarrayOrTensor, connectivity: int = 1) -> dict[str, float]:
    """EM segmentation metrics of one binary prediction against its ISBI-style label.

    Foreground (value 1 or 255) is cell interior, background (0) is membrane. Metrics (keys ``EM_METRICS``):

    - ``pixel_error``: fraction of misclassified pixels.
    - ``iou``, ``dice``: foreground IoU and Dice via MONAI's :func:`~monai.metrics.compute_iou` and
      :func:`~monai.metrics.compute_dice`; 1.0 when both masks are empty.
    - ``rand_error``: adapted Rand error (1 - Rand F-score, :func:`skimage.metrics.adapted_rand_error`) of
      the cells, the connected components of the foreground. As in the ISBI 2012 challenge ("foreground-
      restricted"), pixels that are membrane in the label are ignored; predicted membrane pixels inside
      label cells count as one extra predicted segment (skimage's convention). The challenge's border
      thinning is not applied.
    - ``vi_split``, ``vi_merge``, ``vi``: variation of information (Meila 2007) of the same cell
      segmentations with the same restriction: ``H(pred | label)`` (over-segmentation), ``H(label | pred)``
      (under-segmentation) and their sum, in bits (:func:`skimage.metrics.variation_of_information`).
    - ``cell_rand_error``, ``cell_vi``: the same two scores of the :func:`cell_segmentation` of ``pred``
      (predicted membrane pixels given to the nearest cell), the segmentation the EM bundle writes.

    The Rand and VI entries are NaN when the label has no foreground (nothing to score); ``rand_error`` is
    also NaN in the degenerate case where every label and predicted cell in it is a single pixel.

    Args:
        pred: binary prediction ``(H, W)`` or ``(1, H, W)``, values {0, 1} or {0, 255}.
        label: binary label of the same spatial shape, values {0, 1} or {0, 255}.
        connectivity: neighbourhood defining cells: 1 = 4-connected, 2 = 8-connected.

    Raises:
        ValueError: on bad shapes, non-binary values, mismatched shapes or a bad ``connectivity``.
    """
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 (4-connected) or 2 (8-connected), got {connectivity}.")
    pred_fg = to_binary_mask(pred, "pred")
    label_fg = to_binary_mask(label, "label")
    if pred_fg.shape != label_fg.shape:
        raise ValueError(f"pred and label shapes differ: {pred_fg.shape} vs {label_fg.shape}.")

    y_pred = torch.from_numpy(pred_fg)[None, None].float()
    y = torch.from_numpy(label_fg)[None, None].float()
    scores = {
        "pixel_error": float(np.count_nonzero(pred_fg != label_fg) / label_fg.size),
        "iou": float(compute_iou(y_pred, y, ignore_empty=False)),
        "dice": float(compute_dice(y_pred, y, ignore_empty=False)),
    }
    if not label_fg.any():
        return scores | dict.fromkeys(EM_METRICS[3:], math.nan)

    structure = ndimage.generate_binary_structure(2, connectivity)
    pred_cells = ndimage.label(pred_fg, structure)[0]
    label_cells = ndimage.label(label_fg, structure)[0]
    rand_error, vi_split, vi_merge = _segmentation_scores(label_cells, pred_cells)
    cell_rand_error, cell_split, cell_merge = _segmentation_scores(label_cells, _grow_cells(pred_cells))
    return scores | {
        "rand_error": rand_error,
        "vi_split": vi_split,
        "vi_merge": vi_merge,
        "vi": vi_split + vi_merge,
        "cell_rand_error": cell_rand_error,
        "cell_vi": cell_split + cell_merge,
    }


def _segmentation_scores(label_cells: np.ndarray, pred_cells: np.ndarray) -> tuple[float, float, float]:
    """``(adapted Rand error, VI split, VI merge)`` of ``pred_cells`` over the label's cells (label 0 =
    membrane is ignored)."""
    with np.errstate(invalid="ignore", divide="ignore"):  # skimage's unused precision / recall may be 0 / 0
        rand_error = adapted_rand_error(label_cells, pred_cells, ignore_labels=(0,))[0]
    vi_split, vi_merge = variation_of_information(label_cells, pred_cells, ignore_labels=(0,))
    return float(rand_error), float(vi_split), float(vi_merge)


def pixel_f_counts(
    prob: NdarrayOrTensor, label: NdarrayOrTensor, thresholds: Sequence[float] = ISBI_THRESHOLDS
) -> np.ndarray:
    """True positive, false positive and false negative cell pixels of ``prob > t`` for every threshold.

    Args:
        prob: cell (foreground) probability ``(H, W)`` or ``(1, H, W)``, values in [0, 1].
        label: binary label of the same spatial shape, cell 1 or 255, membrane 0.
        thresholds: the thresholds ``t``; a pixel is predicted cell where ``prob > t`` (strictly, as Fiji).

    Returns:
        ``int64`` counts ``(len(thresholds), 3)``: columns TP, FP, FN. Counts of several images add up to
        the counts of their stack.

    Raises:
        ValueError: on bad shapes, probabilities outside [0, 1] or a non-binary label.
    """
    probability = convert_data_type(prob, np.ndarray)[0]
    if probability.ndim == 3 and probability.shape[0] == 1:
        probability = probability[0]
    label_fg = to_binary_mask(label, "label")
    if probability.shape != label_fg.shape:
        raise ValueError(f"prob and label shapes differ: {tuple(probability.shape)} vs {label_fg.shape}.")
    low, high = (float(probability.min()), float(probability.max())) if probability.size else (0.0, 0.0)
    if not (0.0 <= low and high <= 1.0):
        raise ValueError(f"prob must be a probability in [0, 1], got values in [{low}, {high}].")
    cells = probability[label_fg]
    membrane = probability[~label_fg]
    tp = np.array([np.count_nonzero(cells > t) for t in thresholds], dtype=np.int64)
    fp = np.array([np.count_nonzero(membrane > t) for t in thresholds], dtype=np.int64)
    return np.stack([tp, fp, cells.size - tp], axis=1)


def isbi_pixel_error(counts: np.ndarray) -> tuple[float, int]:
    """The ISBI 2012 pixel error of :func:`pixel_f_counts`: ``1 - max_t F(t)`` and the index of that ``t``.

    ``F = 2 TP / (2 TP + FP + FN)``, the F-score of the cell pixels; 1 where there is no cell in the label
    nor in the prediction (nothing to miss). The first threshold wins a tie.

    Args:
        counts: ``(T, 3)`` TP, FP, FN per threshold, of one image or summed over a stack.
    """
    tp, fp, fn = np.asarray(counts, dtype=np.float64).T
    denominator = 2 * tp + fp + fn
    f_scores = np.divide(2 * tp, denominator, out=np.ones_like(tp), where=denominator > 0)
    best = int(np.argmax(f_scores))
    return float(1.0 - f_scores[best]), best


def em_metrics_table(
    preds: Sequence[NdarrayOrTensor],
    labels: Sequence[NdarrayOrTensor],
    names: Sequence[str] | None = None,
    connectivity: int = 1,
) -> list[dict[str, str | float]]:
    """Per-image :func:`em_metrics`: one row ``{"name": ..., <EM_METRICS>...}`` per (pred, label) pair.

    Args:
        preds: binary predictions, each ``(H, W)`` or ``(1, H, W)``.
        labels: matching binary labels.
        names: row names (e.g. file names); default ``"0", "1", ...``.
        connectivity: see :func:`em_metrics`.

    Raises:
        ValueError: when ``preds``, ``labels`` and ``names`` differ in length, or as :func:`em_metrics`.
    """
    names = [str(i) for i in range(len(preds))] if names is None else list(names)
    if not len(preds) == len(labels) == len(names):
        raise ValueError(
            "preds, labels and names must have the same length, "
            f"got {len(preds)}, {len(labels)}, {len(names)}."
        )
    return [
        {"name": name} | em_metrics(pred, label, connectivity)
        for name, pred, label in zip(names, preds, labels, strict=True)
    ]


def write_em_report(
    rows: Sequence[Mapping[str, str | float]], out_dir: str | Path, stack: Mapping[str, float] | None = None
) -> tuple[Path, Path]:
    """Write per-image rows to ``out_dir/metrics.csv`` and their summary to ``out_dir/summary.json``.

    The CSV has one column per row key, in the first row's order (``name`` then ``EM_METRICS`` for rows of
    :func:`em_metrics_table`). ``summary.json`` is ``{"num_images": n, "metrics": {column: {"mean", "std",
    "median", "count"}}}`` for every numeric column, computed over its non-NaN values (``count`` of them;
    population ``std``); statistics of a column with no such value are ``null``. With ``stack``, the summary
    also holds ``"stack": stack``: scores of all images pooled, as the ISBI challenge scored its stack.

    Args:
        rows: per-image rows with the same keys, e.g. from :func:`em_metrics_table`.
        out_dir: output folder, created if missing.
        stack: optional scores of the pooled images, e.g. ``{"isbi_pixel_error": ..., "threshold": ...}``.

    Returns:
        paths of the CSV and JSON files.

    Raises:
        ValueError: when ``rows`` is empty or the rows have different keys.
    """
    if not rows:
        raise ValueError("rows is empty: nothing to report.")
    columns = list(rows[0])
    for i, row in enumerate(rows):
        if set(row) != set(columns):
            raise ValueError(f"row {i} has keys {sorted(row)}, expected {sorted(columns)} as in row 0.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    csv_path = out_dir / "metrics.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    numeric = [c for c in columns if all(_is_number(row[c]) for row in rows)]
    summary = {"num_images": len(rows), "metrics": {c: _stats([row[c] for row in rows]) for c in numeric}}
    if stack is not None:
        summary["stack"] = dict(stack)
    json_path = out_dir / "summary.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("wrote EM metrics of %d images to %s and %s", len(rows), csv_path, json_path)
    return csv_path, json_path


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _stats(values: list[float]) -> dict[str, float | int | None]:
    finite = np.asarray(values, dtype=float)
    finite = finite[~np.isnan(finite)]
    if finite.size == 0:
        return {"mean": None, "std": None, "median": None, "count": 0}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "median": float(np.median(finite)),
        "count": int(finite.size),
    }
