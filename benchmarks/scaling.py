"""Benchmark 3: time and peak memory of inference as the volume grows, project and reference recipe.

    python -m benchmarks.scaling             # 128^3, 256^3, 512 x 512 x 320 at 0.8 x 0.8 x 2 mm, 2 rounds
    python -m benchmarks.scaling --quick     # tiny smoke test

Each size runs the file-to-label inference of :mod:`benchmarks.inference_e2e` (project with its default
choices, and the baseline; same weights, same window settings) in interleaved rounds. Memory is bounded
when the peak grows in proportion to the volume, so the table gives the peak per input voxel; the
stitched output itself (class scores plus the count map, fp32, on the 1.5 x 1.5 x 2 mm grid) is listed
for comparison.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.baseline import PIXDIM
from benchmarks.common import base_parser, hardware, median, results_dir, save_results
from benchmarks.data import ct_volume
from benchmarks.inference_e2e import run_inference_arms

__all__ = ["main"]

logger = logging.getLogger(__name__)

SPACING = (0.8, 0.8, 2.0)
FULL = {"shapes": [(128, 128, 128), (256, 256, 256), (512, 512, 320)], "roi": (96, 96, 96), "repeats": 2}
QUICK = {"shapes": [(32, 32, 16), (48, 48, 24)], "roi": (32, 32, 32), "repeats": 1}


def stitch_buffer_mib(shape: tuple[int, ...], roi: tuple[int, ...], classes: int = 2) -> float:
    """fp32 stitched scores plus count map on the resampled grid (padded to at least one window)."""
    grid = [max(r, round(s * sp / p)) for s, sp, p, r in zip(shape, SPACING, PIXDIM, roi, strict=True)]
    return (classes + 1) * float(np.prod(grid)) * 4 / 1024**2


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the result payload (also written to the results folder)."""
    args = _parser().parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or sizes["repeats"]
    device = torch.device(args.device)
    rows = []
    for shape in sizes["shapes"]:
        image = ct_volume(shape, SPACING)
        with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp:
            runs = run_inference_arms(image, device, sizes["roi"], repeats, Path(tmp), {"project": {}})
        voxels = float(np.prod(shape))
        row = {"shape": shape, "stitch_buffer_mib": stitch_buffer_mib(shape, sizes["roi"])}
        for arm, records in runs.items():
            peak = median([r["peak_increase_mib"] for r in records])
            row[arm] = {
                "total_s": median([r["total"] for r in records]),
                "network_s": median([r["network"] for r in records]),
                "peak_increase_mib": peak,
                "peak_mib": median([r["peak_mib"] for r in records]),
                "bytes_per_input_voxel": peak * 1024**2 / voxels,
                "windows": records[0]["windows"],
            }
        row["speedup"] = row["baseline"]["total_s"] / row["project"]["total_s"]
        rows.append(row)
    text = table(rows, repeats)
    print(text)
    payload = {
        "benchmark": "scaling",
        "quick": args.quick,
        "settings": {"spacing_mm": SPACING, "roi_size": sizes["roi"], "repeats": repeats},
        "hardware": hardware(device),
        "sizes": rows,
    }
    save_results("scaling", payload, results_dir(args), text)
    return payload


def table(rows: list[dict], repeats: int) -> str:
    """Markdown table of the rows."""
    lines = [
        f"### Scaling: inference file to label at 0.8 x 0.8 x 2 mm, {repeats} rounds (medians)",
        "",
        "| volume | windows | project s | baseline s | speedup | project peak MiB | baseline peak MiB "
        "| project B/voxel | baseline B/voxel | stitch buffer MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        p, b = row["project"], row["baseline"]
        cells = [
            "x".join(map(str, row["shape"])),
            str(p["windows"]),
            f"{p['total_s']:.1f}",
            f"{b['total_s']:.1f}",
            f"{row['speedup']:.2f}x",
            f"{p['peak_increase_mib']:.0f}",
            f"{b['peak_increase_mib']:.0f}",
            f"{p['bytes_per_input_voxel']:.1f}",
            f"{b['bytes_per_input_voxel']:.1f}",
            f"{row['stitch_buffer_mib']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    return base_parser("Inference time and peak memory as the CT volume grows.")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
