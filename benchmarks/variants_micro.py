"""One row of the U-Net family comparison, measured in a fresh process (see :mod:`benchmarks.variants`).

    python -m benchmarks.variants_micro SPEC_JSON    # SPEC_JSON: the keys of measure_row's ``spec``

prints one JSON object: the network built exactly as the bundle config merged with the overlay builds it
(``network_def``), its parameters, FLOPs per output voxel, the time and peak memory of a training step with
the bundle's own loss and optimiser, and the inference throughput of the bundle's validation inferer.

A fresh process per row keeps the memory column honest: the process's resident high-water mark
(``getrusage`` ``ru_maxrss``) then belongs to this row alone, and minus the resident memory just before the
first step it is what the training steps need on top of the built network: activations, gradients, the
optimiser's state and allocator slack (in one long process, earlier rows' peaks and the allocator's retained
pages would hide it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from app.paths import REPO_ROOT

__all__ = [
    "BUNDLE_KEYS",
    "DATA_KEYS",
    "WORKER_ENV",
    "bundle_parser",
    "main",
    "measure_row",
]

# The keys the overlays read from a bundle (docs/variants.md), set where a bundle does not define them.
BUNDLE_KEYS: dict[str, dict[str, Any]] = {
    "mri": {"spatial_dims": 3, "padding": "same", "depth": 3},
    "em": {"spatial_dims": 2, "in_channels": 1, "padding": "valid", "depth": 4},
}
# Environment of every measured process. On a shared, oversubscribed CPU, OpenMP threads spinning at barriers
# (libgomp's default) burn the time slices their sibling thread needs: a training step measured 2-5x slower in
# wall and CPU time, by an amount that changes with the other jobs. Passive waiting removes that noise.
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}
# Set always: the MRI bundle counts its input channels in its datalist, which needs data (hippocampus: 1).
DATA_KEYS: dict[str, dict[str, Any]] = {"mri": {"in_channels": 1}, "em": {}}
_KIB_PER_MIB = 1024


def bundle_parser(bundle: str, overlay: str | None, overrides: dict[str, Any], device: str) -> ConfigParser:
    """The bundle's ``train.json`` merged with ``configs/variants/<overlay>.json`` and ``overrides``.

    Args:
        bundle: ``"mri"`` or ``"em"`` (a folder of ``bundles/``).
        overlay: the overlay's name, or None for the bundle's default network.
        overrides: config ids and values set last (e.g. a MONAI network as ``network_def``).
        device: where the network, loss and inferer run.

    Raises:
        ValueError: for a bundle without an entry in ``BUNDLE_KEYS``.
    """
    if bundle not in BUNDLE_KEYS:
        raise ValueError(f"bundle must be one of {sorted(BUNDLE_KEYS)}, got {bundle!r}.")
    folder = REPO_ROOT / "bundles" / bundle
    files = [str(folder / "train.json")]
    if overlay is not None:
        files.append(str(REPO_ROOT / "configs" / "variants" / f"{overlay}.json"))
    parser = ConfigParser()
    parser.read_meta(str(folder / "metadata.json"))
    parser.read_config(files)
    for key, value in BUNDLE_KEYS[bundle].items():
        if key not in parser:
            parser[key] = value
    for key, value in {**DATA_KEYS[bundle], **overrides, "device": device}.items():
        parser[key] = value
    return parser


def main_output(y: torch.Tensor | list | tuple) -> torch.Tensor:
    """The main output of a network that may return several (MONAI's ``BasicUNetPlusPlus``: a list)."""
    return y if isinstance(y, torch.Tensor) else y[0]


def _seconds(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds (all threads) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / _KIB_PER_MIB
    raise OSError("no VmRSS in /proc/self/status")


def _training_step(parser: ConfigParser, batch: int, device: torch.device, amp: bool) -> Callable[[], None]:
    """One step of the bundle's trainer on random data: forward, the trainer's loss, backward, optimiser."""
    network = parser.get_parsed_content("network")
    loss_function = parser.get_parsed_content("train#trainer#loss_function")
    optimizer = parser.get_parsed_content("optimizer")
    patch = list(parser.get_parsed_content("patch_size"))
    in_channels = parser.get_parsed_content("in_channels")
    num_classes = parser.get_parsed_content("num_classes")
    image = torch.randn(batch, in_channels, *patch, device=device)
    label = torch.randint(0, num_classes, (batch, 1, *patch), device=device).float()
    # the EM trainer hands the loss (label, weight map) pairs (app.engine.PrepareBatchWithWeight)
    target = (label, torch.ones_like(label)) if "train#trainer#prepare_batch" in parser else label
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    network.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=amp):
            loss = loss_function(network(image), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def _flops_per_output_voxel(
    network: nn.Module, in_channels: int, patch: list[int], device: torch.device
) -> float:
    """Convolution and matmul FLOPs (2 per multiply-add) of one eval-mode forward, per output voxel."""
    network.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        y = main_output(network(torch.zeros(1, in_channels, *patch, device=device)))
    return counter.get_total_flops() / y[0, 0].numel()


def measure_row(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one row (CPU, plus the GPU step with AMP when ``spec["gpu"]`` and CUDA is present).

    Args:
        spec: ``bundle``, ``overlay`` (or None), ``overrides``, ``batch``, ``warmup``, ``repeats``,
            ``infer_repeats``, ``volume`` (spatial size of the inference input), ``threads``, ``gpu``.

    Returns:
        ``network``, ``source`` ("app" or "MONAI"), ``params``, ``patch``, ``output_patch``,
        ``flops_per_voxel``, ``step_s`` (median wall seconds) and ``step_s_all``, ``step_cpu_s`` (median
        process CPU seconds, less sensitive to other jobs on a shared machine), ``load_average`` (1-minute,
        after the steps), ``step_mem_mib``, ``peak_rss_mib``,
        ``infer_voxels_per_s`` and ``infer_s_all``, ``gpu_step_s`` and ``gpu_step_mem_mib`` (None unless
        measured).
    """
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    parser = bundle_parser(spec["bundle"], spec["overlay"], spec["overrides"], "cpu")
    network = parser.get_parsed_content("network")
    patch = list(parser.get_parsed_content("patch_size"))
    in_channels = parser.get_parsed_content("in_channels")
    step = _training_step(parser, spec["batch"], cpu, amp=False)

    rss_before = _rss_mib()
    for _ in range(spec["warmup"]):
        step()
    step_s, step_cpu_s = zip(*(_seconds(step, cpu) for _ in range(spec["repeats"])), strict=True)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / _KIB_PER_MIB  # KiB on Linux
    load_average = os.getloadavg()[0]

    flops = _flops_per_output_voxel(network, in_channels, patch, cpu)
    with torch.no_grad():
        output_patch = list(main_output(network(torch.zeros(1, in_channels, *patch))).shape[2:])
        inferer = parser.get_parsed_content("validate#inferer")
        volume = torch.randn(1, in_channels, *spec["volume"])
        inferer(volume, network)  # warm-up
        infer_s = [_seconds(lambda: inferer(volume, network), cpu)[0] for _ in range(spec["infer_repeats"])]

    result = {
        "network": type(network).__name__,
        "source": "MONAI" if type(network).__module__.startswith("monai.") else "app",
        "params": sum(p.numel() for p in network.parameters()),
        "patch": patch,
        "output_patch": output_patch,
        "flops_per_voxel": flops,
        "step_s": statistics.median(step_s),
        "step_s_all": list(step_s),
        "step_cpu_s": statistics.median(step_cpu_s),
        "load_average": load_average,
        "step_mem_mib": peak_rss - rss_before,
        "peak_rss_mib": peak_rss,
        "infer_voxels_per_s": volume[0, 0].numel() / statistics.median(infer_s),
        "infer_s_all": infer_s,
        "gpu_step_s": None,
        "gpu_step_mem_mib": None,
    }
    if spec["gpu"] and torch.cuda.is_available():
        result.update(_gpu_step(spec))
    return result


def _gpu_step(spec: dict[str, Any]) -> dict[str, float]:
    """Median time and peak allocated memory of the training step on CUDA with AMP (as the bundles train)."""
    gpu = torch.device("cuda")
    parser = bundle_parser(spec["bundle"], spec["overlay"], spec["overrides"], "cuda")
    step = _training_step(parser, spec["batch"], gpu, amp=True)
    for _ in range(spec["warmup"]):
        step()
    torch.cuda.reset_peak_memory_stats(gpu)
    seconds = [_seconds(step, gpu)[0] for _ in range(spec["repeats"])]
    return {
        "gpu_step_s": statistics.median(seconds),
        "gpu_step_mem_mib": torch.cuda.max_memory_allocated(gpu) / _KIB_PER_MIB**2,
    }


def main(argv: list[str] | None = None) -> None:
    """Measure the row given as a JSON argument and print the result as one JSON line."""
    parser = argparse.ArgumentParser(description="Measure one row of the variant comparison; print JSON.")
    parser.add_argument("spec", help="JSON object with the keys of measure_row's spec")
    print(json.dumps(measure_row(json.loads(parser.parse_args(argv).spec))))


if __name__ == "__main__":
    main()
