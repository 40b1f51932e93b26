"""How far the ISBI 2012 labels sit from the membranes they trace: a sub-pixel measurement.

An annotation tool whose masks follow a half-pixel convention different from the image's puts every
label a fraction of a pixel off its image, always the same way. This measures that offset on each labelled
slice of an ISBI-layout folder (the image-label correlation peak, refined to sub-pixel precision) as the
EM bundle loads the slices (MONAI ``LoadImage``: axis 0 of a PNG is x, axis 1 is y). On ISBI 2012 it is
about +0.13 px along x and +0.64 px along y on all 24 slices: a network can learn it only if training
never flips y or turns the image by 90 degrees, which is why the EM bundle's defaults are
``flip_axes [0]`` and ``rotate90 false``.

The measure suits thin structures of one intensity (EM membranes): organ labels next to asymmetric
anatomy (e.g. the hippocampus beside the ventricle) give correlation peaks off-centre for anatomical,
not annotation, reasons.

    python -m benchmarks.label_offset [--data DIR] [--out benchmarks/results]

writes ``label_offset.json`` (every slice) and ``label_offset.md`` (median, range).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path

import numpy as np

from app.paths import shared_data_dir

__all__ = ["label_offset", "measure", "main"]

logger = logging.getLogger(__name__)


def label_offset(image: np.ndarray, label: np.ndarray, max_shift: int = 2) -> np.ndarray:
    """The shift of ``label`` that best lines its boundaries up with ``image``, in pixels per axis.

    The correlation between the z-scored image and the z-scored foreground (``label > 0``) is evaluated
    for every integer shift in ``[-max_shift, max_shift]`` per axis (the label rolled by the shift, a
    ``max_shift`` border left out); its peak (largest absolute value, so dark or bright structures both
    work) is refined to sub-pixel precision by a parabola through the peak and its two neighbours along
    each axis.

    Args:
        image: ``(*spatial)`` intensities, 2D or 3D.
        label: ``(*spatial)`` label map of the same shape (any values; ``> 0`` is foreground).
        max_shift: the largest integer shift tried per axis (>= 1).

    Returns:
        ``d`` of shape ``(ndim,)``: ``np.roll(label, round(d))`` fits the image best; 0 for aligned labels,
        ``d[k] > 0`` when the label sits ``d[k]`` pixels towards lower indices along axis ``k``.

    Raises:
        ValueError: for different shapes, ``max_shift < 1``, an image too small for the shifts, or a
            constant image or label (nothing to align).
    """
    image = np.asarray(image, dtype=np.float64)
    fg = (np.asarray(label) > 0).astype(np.float64)
    if image.shape != fg.shape:
        raise ValueError(f"image {image.shape} and label {fg.shape} differ in shape")
    if max_shift < 1:
        raise ValueError(f"max_shift must be >= 1, got {max_shift}")
    if min(image.shape) <= 2 * max_shift + 2:
        raise ValueError(f"shape {image.shape} is too small for shifts of +-{max_shift}")
    if image.std() == 0 or fg.std() == 0:
        raise ValueError("a constant image or label has no boundaries to align")
    a = (image - image.mean()) / image.std()
    b = (fg - fg.mean()) / fg.std()
    core = tuple(slice(max_shift, -max_shift) for _ in range(a.ndim))
    a_core = a[core]
    shifts = range(-max_shift, max_shift + 1)
    scores = np.empty((len(shifts),) * a.ndim)
    for shift in itertools.product(shifts, repeat=a.ndim):
        rolled = np.roll(b, shift, axis=tuple(range(a.ndim)))[core]
        scores[tuple(s + max_shift for s in shift)] = float(np.mean(rolled * a_core))
    scores = np.abs(scores)
    peak = np.unravel_index(int(np.argmax(scores)), scores.shape)
    offset = np.array(peak, dtype=np.float64) - max_shift
    for axis, p in enumerate(peak):
        if 0 < p < len(shifts) - 1:
            before, at, after = (scores[peak[:axis] + (q,) + peak[axis + 1 :]] for q in (p - 1, p, p + 1))
            curvature = before - 2 * at + after
            if curvature < 0:
                offset[axis] += 0.5 * (before - after) / curvature
    return offset


def measure(folder: str | Path, max_shift: int = 2) -> dict[str, list[float]]:
    """:func:`label_offset` of every image/label pair of an ISBI- or MSD-layout folder, by image name."""
    from monai.transforms import LoadImage

    from app.data.datalist import datalist_from_folder

    load = LoadImage(image_only=True)
    return {
        Path(entry["image"]).name: label_offset(
            np.asarray(load(entry["image"])), np.asarray(load(entry["label"])), max_shift
        ).tolist()
        for entry in datalist_from_folder(folder)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=shared_data_dir() / "isbi2012", help="ISBI-layout folder"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--max-shift", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    offsets = measure(args.data, args.max_shift)
    values = np.array(list(offsets.values()))
    median, low, high = np.median(values, 0), values.min(0), values.max(0)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "data": str(args.data),
        "axes": "bundle order (x, y)",
        "median": median.tolist(),
        "slices": offsets,
    }
    (args.out / "label_offset.json").write_text(json.dumps(record, indent=2) + "\n")
    rows = [
        f"| {name} | {' | '.join(f'{d:+.2f}' for d in v)} |"
        for name, v in (("median", median), ("min", low), ("max", high))
    ]
    axes = " | ".join(f"axis {k}" for k in range(values.shape[1]))
    table = (
        f"| {len(offsets)} slices, px | {axes} |\n|---|{'---|' * values.shape[1]}\n" + "\n".join(rows) + "\n"
    )
    (args.out / "label_offset.md").write_text(f"Label offset of {args.data}\n\n{table}")
    logger.info("%s", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
