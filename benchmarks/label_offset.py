"""How far the ISBI 2012 labels sit from the membranes they trace: a sub-pixel measurement.

An annotation tool whose masks follow a half-pixel convention different from the image's puts every
label a fraction of a pixel off its image, always the same way. This measures that offset on each labelled
slice of an ISBI-layout folder (``app.data.alignment.label_offset``: the image-label correlation peak,
refined to sub-pixel precision) as the EM bundle loads the slices (MONAI ``LoadImage``: axis 0 of a PNG is
x, axis 1 is y). On ISBI 2012 it is about +0.13 px along x and +0.64 px along y on all 24 slices; the EM
bundle's ``--image_shift auto`` measures the same on its training slices and shifts the images onto the
labels' grid, so that flips and quarter turns stay valid augmentations.

The measure suits thin structures of one intensity (EM membranes): organ labels next to asymmetric
anatomy (e.g. the hippocampus beside the ventricle) give correlation peaks off-centre for anatomical,
not annotation, reasons.

    python -m benchmarks.label_offset [--data DIR] [--out benchmarks/results]

writes ``label_offset.json`` (every slice) and ``label_offset.md`` (median, range).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from app.data.alignment import measure_offsets
from app.paths import shared_data_dir

__all__ = ["measure", "main"]

logger = logging.getLogger(__name__)


def measure(folder: str | Path, max_shift: int = 2) -> dict[str, list[float]]:
    """:func:`~app.data.alignment.label_offset` of every image/label pair of an ISBI- or MSD-layout folder,
    by image file name."""
    from app.data.datalist import datalist_from_folder

    return {Path(k).name: v for k, v in measure_offsets(datalist_from_folder(folder), max_shift).items()}


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
