"""Run every benchmark, one after the other in this process, and collect their tables.

    python -m benchmarks.run                      # all four (about 25 minutes on 2 CPU cores)
    python -m benchmarks.run --only inference_e2e compute_efficiency
    python -m benchmarks.run --quick --out /tmp/b # smoke test on tiny sizes

Writes each benchmark's JSON and table, plus ``results.md`` (hardware, date and all tables), to the
results folder; a full run into ``benchmarks/results`` also replaces the table in ``benchmarks/README.md``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from benchmarks import compute_efficiency, inference_e2e, scaling, train_throughput
from benchmarks.common import RESULTS_DIR, base_parser, hardware, results_dir

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS = {
    "train_throughput": train_throughput.main,
    "inference_e2e": inference_e2e.main,
    "scaling": scaling.main,
    "compute_efficiency": compute_efficiency.main,
}
README = Path(__file__).with_name("README.md")
_TABLE = re.compile(r"(<!-- results -->\n).*?(\n<!-- /results -->)", re.S)


def hardware_line(info: dict) -> str:
    """One line of what and when: CPU model and cores, GPU, versions, date."""
    gpu = f", GPU {info['gpu']}" if info["gpu"] else ", GPU not measured"
    return (
        f"{info['cpu']}, {info['cpu_cores']} cores, {info['memory_gib']} GiB{gpu}; "
        f"torch {info['torch']}, MONAI {info['monai']}, onnxruntime {info['onnxruntime']}; {info['date']}; "
        f"load average {info['load_average_1_5_15min'][1]} (5 min)"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the selected benchmarks and write ``results.md`` (and the README table on a full run)."""
    parser = base_parser("Run all benchmarks.")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    args = parser.parse_args(argv)
    forwarded = ["--device", args.device]
    forwarded += ["--quick"] if args.quick else []
    forwarded += ["--repeats", str(args.repeats)] if args.repeats else []
    out = results_dir(args)
    forwarded += ["--out", str(out)]
    for name in args.only or BENCHMARKS:
        BENCHMARKS[name](forwarded)
    tables = [
        (out / f"{name}.md").read_text().strip() for name in BENCHMARKS if (out / f"{name}.md").is_file()
    ]
    summary = "\n\n".join([f"Measured on {hardware_line(hardware(torch.device(args.device)))}", *tables])
    (out / "results.md").write_text(summary + "\n")
    if out == RESULTS_DIR and README.is_file():
        README.write_text(_TABLE.sub(lambda m: m.group(1) + summary + m.group(2), README.read_text()))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main()
