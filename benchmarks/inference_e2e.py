"""Benchmark 2: inference of one CT volume, from file to written label, project vs reference recipe.

    python -m benchmarks.inference_e2e             # 512 x 512 x 160 at 0.8 x 0.8 x 2 mm, 5 rounds
    python -m benchmarks.inference_e2e --quick     # tiny smoke test

Arms, run in alternating order each round in this process, all with 96^3 windows, ``sw_batch_size``
4, overlap 0.5 and constant blending, and the same randomly initialised weights (one state dict):

- ``baseline``: the reference recipe (:mod:`benchmarks.baseline`);
- ``project``: the CT bundle's inference (``train.json`` + ``inference.json``) with its default
  choices (PyTorch backend, ``channels_last``, ``separable_inversion``);
- ``project_onnxruntime``: the same with ``inference_backend: onnxruntime`` (when installed);
- ``project_bf16``: the defaults with ``inference_precision: bf16`` (only where the device has native
  bfloat16 arithmetic: on other CPUs it is emulated and slower than float32).

Reported per arm: median seconds per stage (see :mod:`benchmarks.instrument`), median peak RSS above
the process's RSS before the run, the speedup (median baseline total / median arm total) and the
median of the per-round speedups (each round's arms run back to back, so this pairs runs that saw the
same machine load), the network stage's achieved GFLOP/s, and the Dice of each project label against
the baseline label.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.transforms import Compose, RandSpatialCropSamplesd, SpatialPadd
from torch.utils.flop_counter import FlopCounterMode

from app.engine.precision import native_16bit
from benchmarks.baseline import reference_evaluator, reference_network, reference_preprocessing
from benchmarks.common import (
    PeakMemory,
    StageTimer,
    base_parser,
    dice,
    hardware,
    interleaved_rounds,
    median,
    results_dir,
    save_results,
)
from benchmarks.data import ct_volume
from benchmarks.instrument import STAGES, timed_run
from benchmarks.project import project_evaluator

__all__ = ["main", "network_flops", "run_inference_arms"]

logger = logging.getLogger(__name__)

FULL = {"shape": (512, 512, 160), "roi": (96, 96, 96), "repeats": 5}
QUICK = {"shape": (48, 48, 20), "roi": (32, 32, 32), "repeats": 1}
PROJECT_VARIANTS = {
    "project": {},
    "project_onnxruntime": {"inference_backend": "onnxruntime"},
    "project_bf16": {"inference_precision": "bf16"},
}


def network_flops(roi: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of the U-Net on one window (``torch.utils.flop_counter``)."""
    network = reference_network().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(torch.zeros(1, 1, *roi))
    return counter.get_total_flops()


def calibrated_weights(
    image: Path, roi: tuple[int, ...], path: Path, seed: int = 0, windows: int = 8
) -> Path:
    """Save the state dict of a randomly initialised U-Net whose batch-norm statistics fit ``image``.

    With the default running statistics (mean 0, variance 1) a random network labels nearly every voxel
    the same, and a Dice between two such labels says nothing. Re-estimating the statistics on
    ``windows`` random windows of the pre-processed image (no gradients, no weight change) gives labels
    that follow the image, so the Dice between project and baseline outputs is a real check.
    """
    torch.manual_seed(seed)
    network = reference_network()
    sampling = Compose(
        [
            *reference_preprocessing().transforms,
            SpatialPadd("image", roi),
            RandSpatialCropSamplesd("image", roi, num_samples=windows, random_size=False),
        ]
    ).set_random_state(seed)
    batch = torch.stack([sample["image"].as_tensor() for sample in sampling({"image": str(image)})])
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    network.train()
    with torch.no_grad():
        for chunk in batch.split(2):
            network(chunk)
    torch.save(network.state_dict(), path)
    return path


def _label(output_dir: Path) -> np.ndarray:
    (path,) = output_dir.glob("*_seg.nii.gz")
    return np.asanyarray(nib.load(path).dataobj)


def run_inference_arms(
    image: Path,
    device: torch.device,
    roi: tuple[int, ...],
    repeats: int,
    work_dir: Path,
    variants: dict[str, dict[str, Any]],
    seed: int = 0,
) -> dict[str, list[dict]]:
    """Interleaved rounds of baseline and project inference of ``image``; per-arm lists of run records.

    Each record holds the stage seconds, ``setup`` (building the pipeline), ``total``, ``peak_mib``,
    ``peak_increase_mib``, ``windows`` and the ``label`` array written (first round; None after).
    """
    weights = calibrated_weights(image, roi, work_dir / "model.pt", seed)
    counter = {"runs": 0}
    labelled: set[str] = set()

    def run(name: str, build) -> dict:
        counter["runs"] += 1
        out = work_dir / f"{name}_{counter['runs']}"
        timer = StageTimer(device)
        with PeakMemory(device) as memory:
            start = time.perf_counter()
            evaluator = build(out)
            setup = time.perf_counter() - start
            record: dict[str, Any] = timed_run(evaluator, timer)
        record.update(
            setup=setup,
            total=record["total"] + setup,
            peak_mib=memory.peak_mib,
            peak_increase_mib=memory.increase_mib,
            gpu_peak_mib=memory.gpu_peak_mib,
            label=None if name in labelled else _label(out),
        )
        labelled.add(name)
        return record

    def baseline(out: Path):
        network = reference_network()
        network.load_state_dict(torch.load(weights, weights_only=True))
        return reference_evaluator(image, out, network.to(device), device, roi_size=roi)

    def project(overrides: dict[str, Any]):
        def build(out: Path):
            return project_evaluator(
                image, out, weights, out / "run", device, roi_size=roi, overrides=overrides
            )

        return build

    arms = {"baseline": lambda: run("baseline", baseline)}
    for name, overrides in variants.items():
        arms[name] = lambda name=name, overrides=overrides: run(name, project(overrides))
    return interleaved_rounds(arms, repeats)


def summarise(runs: dict[str, list[dict]], flops_per_window: int) -> dict[str, dict]:
    """Medians per arm, speedups against ``baseline`` and Dice against the baseline label."""
    reference = runs["baseline"][0]["label"]
    base_total = median([r["total"] for r in runs["baseline"]])
    summary = {}
    for name, records in runs.items():
        keys = ("setup", *STAGES, "total", "peak_mib", "peak_increase_mib")
        row = {k: median([r[k] for r in records]) for k in keys}
        label = records[0]["label"]
        paired = [b["total"] / r["total"] for b, r in zip(runs["baseline"], records, strict=True)]
        row.update(
            speedup=base_total / row["total"],
            paired_speedup=median(paired),
            windows=records[0]["windows"],
            network_gflops=records[0]["windows"] * flops_per_window / row["network"] / 1e9,
            dice_vs_baseline=dice(label, reference),
            voxels_differing=int((label != reference).sum()),
            foreground_fraction=float((label == 1).mean()),
            rounds={k: [r[k] for r in records] for k in ("total", "network", "invert", "peak_increase_mib")},
        )
        summary[name] = row
    return summary


def table(summary: dict[str, dict], title: str) -> str:
    """Markdown table of the summary."""
    head = [
        "arm",
        "total s",
        "speedup",
        "paired",
        *STAGES,
        "setup",
        "peak MiB",
        "net GFLOP/s",
        "Dice vs baseline",
    ]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in summary.items():
        cells = [name, f"{row['total']:.1f}", f"{row['speedup']:.2f}x", f"{row['paired_speedup']:.2f}x"]
        cells += [f"{row[s]:.2f}" for s in STAGES]
        cells += [f"{row['setup']:.2f}", f"{row['peak_increase_mib']:.0f}", f"{row['network_gflops']:.1f}"]
        cells.append(f"{row['dice_vs_baseline']:.5f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the result payload (also written to the results folder)."""
    args = _parser().parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or sizes["repeats"]
    device = torch.device(args.device)
    variants = dict(PROJECT_VARIANTS)
    if importlib.util.find_spec("onnxruntime") is None:
        logger.warning("onnxruntime is not installed: the project_onnxruntime arm is skipped")
        variants.pop("project_onnxruntime")
    if not native_16bit(torch.bfloat16, device):
        logger.warning("%s has no native bfloat16 arithmetic: the project_bf16 arm is skipped", device)
        variants.pop("project_bf16")
    image = ct_volume(sizes["shape"])
    with tempfile.TemporaryDirectory(prefix="bench_infer_") as tmp:
        runs = run_inference_arms(image, device, sizes["roi"], repeats, Path(tmp), variants)
    summary = summarise(runs, network_flops(sizes["roi"]))
    title = "Inference, file to label: {} voxels at 0.8 x 0.8 x 2 mm, {} rounds (medians)".format(
        "x".join(map(str, sizes["shape"])), repeats
    )
    payload = {
        "benchmark": "inference_e2e",
        "quick": args.quick,
        "settings": {
            "shape": sizes["shape"],
            "spacing_mm": (0.8, 0.8, 2.0),
            "roi_size": sizes["roi"],
            "sw_batch_size": 4,
            "overlap": 0.5,
            "blend_mode": "constant",
            "repeats": repeats,
            "variants": variants,
        },
        "hardware": hardware(device),
        "arms": summary,
    }
    text = table(summary, title)
    print(text)
    save_results("inference_e2e", payload, results_dir(args), text)
    return payload


def _parser() -> argparse.ArgumentParser:
    return base_parser("Inference of one CT volume from file to label: project vs reference recipe.")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
