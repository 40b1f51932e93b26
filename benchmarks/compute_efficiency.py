"""Benchmark 4: achieved FLOP/s of the U-Net against the machine's measured matmul peak.

    python -m benchmarks.compute_efficiency            # 4 windows of 96^3, 4096^2 matmul, 7 rounds
    python -m benchmarks.compute_efficiency --quick    # tiny smoke test

The network's FLOPs come from ``torch.utils.flop_counter`` (2 per multiply-add, convolutions and
matmuls only). The peak is a large fp32 ``torch.mm`` on the same device, timed in the same rounds as
the network backends so that both see the same machine load:

- ``eager`` (the reference recipe): PyTorch eager, default ``NCDHW`` weights;
- ``channels_last`` (the project's default): ``inference_network(..., channels_last=True,
  fold_batch_norm=True)``: channels-last weights, batch norm folded into the convolutions;
- ``inductor`` (a project option, left out with ``--quick`` and without a C++ compiler on the CPU):
  ``inference_network(..., backend="inductor", channels_last=True)``, compiled in the warm-up call
  (its seconds are reported, not counted in the rounds);
- ``onnxruntime`` (a project option): ``inference_network(..., backend="onnxruntime")``;
- ``bf16`` (a project option, where the device has native bfloat16 arithmetic): the project's default
  network (channels-last, folded batch norm) under ``precision="bf16"`` autocast, measured against
  the peak of a bfloat16 ``torch.mm`` (``matmul_bf16``), since a 16-bit network is only as efficient as
  it is close to the 16-bit peak.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import logging
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from app.engine import cpp_compiler
from app.engine.precision import native_16bit
from app.inferers.backends import inference_network
from benchmarks.baseline import reference_network
from benchmarks.common import (
    base_parser,
    hardware,
    interleaved_rounds,
    median,
    results_dir,
    save_results,
    synchronize,
)

__all__ = ["main", "matmul_flops", "timed_call"]

logger = logging.getLogger(__name__)

FULL = {"roi": (96, 96, 96), "batch": 4, "matmul": 4096, "repeats": 7}
QUICK = {"roi": (32, 32, 32), "batch": 1, "matmul": 256, "repeats": 2}


def matmul_flops(n: int) -> int:
    """FLOPs of an ``n x n`` by ``n x n`` matrix product."""
    return 2 * n**3


def timed_call(fn: Callable[[], object], device: torch.device) -> Callable[[], dict]:
    """A round's arm: one call of ``fn``, its seconds."""

    def run() -> dict:
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        return {"seconds": time.perf_counter() - start}

    return run


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the result payload (also written to the results folder)."""
    args = _parser().parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or sizes["repeats"]
    device = torch.device(args.device)
    torch.manual_seed(0)
    network = reference_network().eval().to(device)
    windows = torch.rand(sizes["batch"], 1, *sizes["roi"], device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(windows)
    network_flops = counter.get_total_flops()
    backends = {
        "eager": network,
        "channels_last": inference_network(
            copy.deepcopy(network), channels_last=True, fold_batch_norm=True
        ).eval(),
    }
    if not args.quick and (device.type != "cpu" or cpp_compiler() is not None):
        compiled = inference_network(copy.deepcopy(network), backend="inductor", channels_last=True)
        backends["inductor"] = compiled
    if importlib.util.find_spec("onnxruntime") is not None:
        backends["onnxruntime"] = inference_network(copy.deepcopy(network), backend="onnxruntime").eval()
    peaks = {name: "matmul" for name in backends}
    a = torch.rand(sizes["matmul"], sizes["matmul"], device=device)
    b = torch.rand(sizes["matmul"], sizes["matmul"], device=device)
    arms = {"matmul": timed_call(lambda: torch.mm(a, b), device)}
    if native_16bit(torch.bfloat16, device):
        backends["bf16"] = inference_network(
            copy.deepcopy(network), channels_last=True, fold_batch_norm=True, precision="bf16"
        ).eval()
        peaks["bf16"] = "matmul_bf16"
        a16, b16 = a.bfloat16(), b.bfloat16()
        arms["matmul_bf16"] = timed_call(lambda: torch.mm(a16, b16), device)
    for name, net in backends.items():
        arms[name] = timed_call(lambda net=net: net(windows), device)
    with torch.no_grad():
        # the first calls: oneDNN primitives, compiling, the ONNX export
        warm_up = {name: arm()["seconds"] for name, arm in arms.items()}
        runs = interleaved_rounds(arms, repeats)
    summary = {}
    for name in ("matmul", "matmul_bf16"):
        if name in runs:
            mm_seconds = [r["seconds"] for r in runs.pop(name)]
            summary[name] = {
                "gflops": matmul_flops(sizes["matmul"]) / median(mm_seconds) / 1e9,
                "best_gflops": matmul_flops(sizes["matmul"]) / min(mm_seconds) / 1e9,
                "seconds": mm_seconds,
            }
    for name, records in runs.items():
        seconds = [r["seconds"] for r in records]
        gflops = network_flops / median(seconds) / 1e9
        summary[name] = {
            "gflops": gflops,
            "best_gflops": network_flops / min(seconds) / 1e9,
            "peak": peaks[name],
            "fraction_of_matmul_peak": gflops / summary[peaks[name]]["gflops"],
            "seconds": seconds,
            "warm_up_seconds": warm_up[name],
        }
    text = table(summary, sizes, network_flops, repeats)
    print(text)
    payload = {
        "benchmark": "compute_efficiency",
        "quick": args.quick,
        "settings": {**sizes, "repeats": repeats, "network_gflop_per_call": network_flops / 1e9},
        "hardware": hardware(device),
        "arms": summary,
    }
    save_results("compute_efficiency", payload, results_dir(args), text)
    return payload


def table(summary: dict, sizes: dict, network_flops: int, repeats: int) -> str:
    """Markdown table of the summary."""
    roi = "x".join(map(str, sizes["roi"]))
    lines = [
        f"### Compute efficiency: U-Net on {sizes['batch']} windows of {roi} "
        f"({network_flops / 1e9:.1f} GFLOP), matmul {sizes['matmul']}^2, {repeats} rounds (medians)",
        "",
        "| arm | GFLOP/s (median) | GFLOP/s (best) | % of matmul peak | peak | first call s |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        peak = row.get("peak", name)
        share = "100 (peak)" if peak == name else f"{100 * row['fraction_of_matmul_peak']:.0f}"
        first = f"{row['warm_up_seconds']:.1f}" if "warm_up_seconds" in row else "-"
        lines.append(
            f"| {name} | {row['gflops']:.1f} | {row['best_gflops']:.1f} | {share} | {peak} | {first} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    return base_parser("Achieved FLOP/s of the U-Net against the matmul peak.")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
