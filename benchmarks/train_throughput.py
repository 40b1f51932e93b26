"""Benchmark 1: CT training throughput (patches/s) and peak RSS, project vs reference recipe.

    python -m benchmarks.train_throughput                   # 64^3 patches, 2 volumes x 4 patches per step
    python -m benchmarks.train_throughput --patch-size 96   # the recipe's 96^3 (about 2 min per epoch on CPU)
    python -m benchmarks.train_throughput --quick           # tiny smoke test

Both sides train the same U-Net on the same generated volumes (the project's own training split of
:func:`benchmarks.data.ct_training_set`) with the same patch size, volumes per batch and patches per
volume, for one epoch of 3 steps per round, in interleaved rounds in this process. The patch size is
64^3 on CPU (the CT bundle's CPU default; 96^3, the recipe's, makes a round of the three arms take about
8 minutes on 2 cores) and 96^3 on CUDA:

- ``baseline``: the reference recipe (:mod:`benchmarks.baseline`): ``CacheDataset`` of the deterministic
  transforms, ``RandCropByPosNegLabeld`` in 4 ``DataLoader`` worker processes, Novograd;
- ``project``: ``train#trainer`` of ``bundles/ct/train.json`` as it is (``ThreadDataLoader``, cached
  foreground/background indices, no metadata tracking after the cache, its augmentations, AdamW, the
  network in the channels-last memory format, its handlers), with overrides for folders and sizes only;
- ``project_contiguous``: the same with ``channels_last`` false (the network in the default layout), to
  show what that choice is worth;
- ``project_compiled``: the project with ``compile`` true (``SupervisedTrainer(compile=True)``: TorchInductor
  fuses the batch-norm, PReLU and residual-add passes of the forward and backward around oneDNN's
  convolutions); left out with ``--quick`` and where no C++ compiler is installed (the CPU backend needs
  one). Compiling happens once per process: a warm-up epoch before the rounds pays it (reported as
  ``compile s``); each round's new trainer still re-traces its first iteration, which the epoch figure
  includes and the ``steady`` one leaves out;
- ``project_bf16``: the project with ``precision`` ``"bf16"`` (the training forward pass under
  ``torch.autocast`` to bfloat16, :class:`app.engine.precision.AutocastNetwork`; weights, loss and
  optimiser in float32), on CPUs with native bfloat16 arithmetic only (AVX-512 BF16 or AMX; elsewhere it
  would be emulated and slower; on CUDA both sides already train with AMP).

Each side's cache is built once (its time is reported as ``cache s``) and reused by every round.
Throughput is the patches of the whole epoch over the epoch's time up to its last iteration (loader
start-up included, epoch-end handlers such as checkpointing excluded); ``steady`` leaves the first
iteration out. Peak memory is this process's peak RSS plus the loader workers' private memory.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events

from app.engine import cpp_compiler, native_16bit
from benchmarks.baseline import reference_trainer
from benchmarks.common import (
    PeakMemory,
    base_parser,
    hardware,
    interleaved_rounds,
    median,
    results_dir,
    save_results,
)
from benchmarks.data import ct_training_set
from benchmarks.project import project_trainer

__all__ = ["main"]

logger = logging.getLogger(__name__)

FULL = {"n_cases": 10, "shape": (256, 256, 64), "batch_size": 2, "num_samples": 4, "steps": 3, "repeats": 3}
QUICK = {"n_cases": 5, "shape": (64, 64, 20), "batch_size": 2, "num_samples": 1, "steps": 2, "repeats": 1}
CONTIGUOUS = {"channels_last": False}
COMPILED = {"compile": True}
BF16 = {"precision": "bf16"}


def _measured_run(trainer: Any, device: torch.device) -> dict:
    """Run ``trainer`` for its epoch; patches/s over the epoch and without its first iteration."""
    marks: list[tuple[float, int]] = []

    def on_epoch_started(_engine: Any) -> None:
        marks.append((time.perf_counter(), 0))

    def on_iteration_completed(engine: Any) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        batch = engine.state.batch  # a list of patches once MONAI has decollated it
        marks.append((time.perf_counter(), len(batch) if isinstance(batch, list) else len(batch["image"])))

    trainer.add_event_handler(Events.EPOCH_STARTED, on_epoch_started)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, on_iteration_completed)
    with PeakMemory(device) as memory:
        trainer.run()
    patches = sum(n for _, n in marks)
    epoch = marks[-1][0] - marks[0][0]
    steady = marks[-1][0] - marks[1][0]
    return {
        "patches": patches,
        "iterations": len(marks) - 1,
        "epoch_s": epoch,
        "patches_per_s": patches / epoch,
        "steady_patches_per_s": (patches - marks[1][1]) / steady if len(marks) > 2 else float("nan"),
        "peak_mib": memory.peak_mib,
        "peak_increase_mib": memory.increase_mib,
        "gpu_peak_mib": memory.gpu_peak_mib,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the result payload (also written to the results folder)."""
    args = _parser().parse_args(argv)
    device = torch.device(args.device)
    patch = args.patch_size or (32 if args.quick else 96 if device.type == "cuda" else 64)
    sizes = {**(QUICK if args.quick else FULL), "patch": (patch,) * 3}
    repeats = args.repeats or sizes["repeats"]
    data = ct_training_set(sizes["n_cases"], sizes["shape"])
    common = {
        "patch_size": sizes["patch"],
        "batch_size": sizes["batch_size"],
        "num_samples": sizes["num_samples"],
    }
    steps = {"train#trainer#epoch_length": sizes["steps"]}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        counter = {"runs": 0}

        def run_dir() -> Path:
            counter["runs"] += 1
            return work / f"run{counter['runs']}"

        start = time.perf_counter()
        _, project_cache, datalist = project_trainer(data, run_dir(), device, **common, overrides=steps)
        cache_s = {"project": time.perf_counter() - start}
        recipe = {**common, "epoch_length": sizes["steps"]}
        start = time.perf_counter()
        _, baseline_cache = reference_trainer(datalist, device, **recipe)
        cache_s["baseline"] = time.perf_counter() - start

        compile_s = None
        if not args.quick and (device.type != "cpu" or cpp_compiler() is not None):
            start = time.perf_counter()
            warm_up, _, _ = project_trainer(
                data, run_dir(), device, **common, dataset=project_cache, overrides={**steps, **COMPILED}
            )
            warm_up.run()
            compile_s = time.perf_counter() - start

        def baseline() -> dict:
            trainer, _ = reference_trainer(datalist, device, **recipe, dataset=baseline_cache)
            return _measured_run(trainer, device)

        def project(variant: dict) -> dict:
            overrides = {**steps, **variant}
            trainer, _, _ = project_trainer(
                data, run_dir(), device, **common, dataset=project_cache, overrides=overrides
            )
            return _measured_run(trainer, device)

        arms = {
            "baseline": baseline,
            "project": lambda: project({}),
            "project_contiguous": lambda: project(CONTIGUOUS),
        }
        if compile_s is not None:
            arms["project_compiled"] = lambda: project(COMPILED)
        if device.type == "cpu" and native_16bit(torch.bfloat16, device):
            arms["project_bf16"] = lambda: project(BF16)
        runs = interleaved_rounds(arms, repeats)
    summary = summarise(runs, cache_s)
    if compile_s is not None:
        summary["project_compiled"]["compile_s"] = compile_s
    text = table(summary, sizes, repeats, len(datalist))
    print(text)
    payload = {
        "benchmark": "train_throughput",
        "quick": args.quick,
        "settings": {**sizes, "repeats": repeats, "training_volumes": len(datalist), "dataset": str(data)},
        "hardware": hardware(device),
        "arms": summary,
    }
    save_results("train_throughput", payload, results_dir(args), text)
    return payload


def summarise(runs: dict[str, list[dict]], cache_s: dict[str, float]) -> dict[str, dict]:
    """Medians per arm and speedups against ``baseline``."""
    base = median([r["patches_per_s"] for r in runs["baseline"]])
    base_steady = median([r["steady_patches_per_s"] for r in runs["baseline"]])
    summary = {}
    for name, records in runs.items():
        keys = ("patches_per_s", "steady_patches_per_s", "epoch_s", "peak_mib", "peak_increase_mib")
        row: dict[str, Any] = {k: median([r[k] for r in records]) for k in keys}
        row.update(
            speedup=row["patches_per_s"] / base,
            steady_speedup=row["steady_patches_per_s"] / base_steady,
            cache_s=cache_s.get(name, cache_s["project"]),
            rounds={k: [r[k] for r in records] for k in ("patches_per_s", "peak_increase_mib")},
            patches_per_epoch=records[0]["patches"],
        )
        summary[name] = row
    return summary


def table(summary: dict[str, dict], sizes: dict, repeats: int, volumes: int) -> str:
    """Markdown table of the summary."""
    patch = "x".join(map(str, sizes["patch"]))
    lines = [
        f"### Training throughput: {volumes} volumes, {patch} patches, {sizes['batch_size']} volumes x "
        f"{sizes['num_samples']} patches per step, {repeats} rounds (medians)",
        "",
        "| arm | patches/s | speedup | steady patches/s | steady speedup | epoch s | peak RSS MiB "
        "| cache s | compile s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        cells = [
            name,
            f"{row['patches_per_s']:.2f}",
            f"{row['speedup']:.2f}x",
            f"{row['steady_patches_per_s']:.2f}",
            f"{row['steady_speedup']:.2f}x",
            f"{row['epoch_s']:.1f}",
            f"{row['peak_mib']:.0f}",
            f"{row['cache_s']:.1f}",
            f"{row['compile_s']:.1f}" if "compile_s" in row else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = base_parser("CT training throughput: project vs reference recipe.")
    parser.add_argument("--patch-size", type=int, help="cubic patch edge (default 64 on CPU, 96 on CUDA)")
    return parser


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
