"""Shared benchmark machinery: interleaved A/B rounds, peak memory, stage timers, hardware, results.

Timings on a shared machine are noisy, so every benchmark runs its arms in rounds, alternating their
order each round (A B, B A, ...), in one process, and reports medians and median ratios.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import logging
import os
import platform
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.paths import REPO_ROOT
from app.study.hardware import cpu_model

__all__ = [
    "RESULTS_DIR",
    "PeakMemory",
    "StageTimer",
    "base_parser",
    "dice",
    "hardware",
    "interleaved_rounds",
    "median",
    "save_results",
    "synchronize",
]

logger = logging.getLogger(__name__)

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
_MIB = 1024 * 1024


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick``, ``--device``, ``--repeats``, ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where networks run")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default: per benchmark)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    return parser


def results_dir(args: argparse.Namespace) -> Path:
    """``--out``, else ``benchmarks/results`` (``benchmarks/results/quick`` for ``--quick``)."""
    if args.out is not None:
        return args.out
    return RESULTS_DIR / "quick" if args.quick else RESULTS_DIR


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so wall-clock stage times are the work's (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def interleaved_rounds(arms: dict[str, Callable[[], dict]], repeats: int) -> dict[str, list[dict]]:
    """Run every arm once per round, reversing the order every other round; results per arm in run order."""
    names = list(arms)
    results: dict[str, list[dict]] = {name: [] for name in names}
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else names[::-1]:
            logger.info("round %d/%d: %s", round_index + 1, repeats, name)
            results[name].append(arms[name]())
    return results


def _status_kib(field: str, pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                children = [int(c) for c in task.read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _private_kib(pid: int) -> int:
    """Resident pages of ``pid`` not shared with another process (copy-on-write pages still shared with
    the parent, e.g. a forked worker's view of a dataset cache, are the parent's)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return sum(
        int(line.split()[1]) for line in lines if line.startswith(("Private_Clean:", "Private_Dirty:"))
    )


def _release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``), so that the RSS
    a block starts from is live memory: pages freed earlier would otherwise absorb the block's growth."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak resident memory of this process and its children (e.g. data-loader workers) over a block.

    The kernel's high-water mark of this process (``VmHWM``) is reset on entry, so consecutive blocks in
    one process are measured separately; children are sampled every ``interval`` seconds (their private
    pages: copy-on-write pages they still share with this process are counted once, here). Reading a
    child's page summary walks its page tables, so sampling much faster would steal a core from the
    measured work on a 2-core machine.
    On CUDA the peak allocated GPU memory is recorded too.

    Attributes (after the block): ``start_mib`` (RSS on entry), ``peak_mib`` (peak of this process plus
    its children), ``gpu_peak_mib`` (None on CPU).
    """

    def __init__(self, device: torch.device | str = "cpu", interval: float = 1.0) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.start_mib = self.peak_mib = 0.0
        self.gpu_peak_mib: float | None = None
        self._children_peak_kib = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample_children(self) -> None:
        pid = os.getpid()
        while not self._stop.wait(self.interval):
            children = sum(_private_kib(c) for c in _descendants(pid))
            self._children_peak_kib = max(self._children_peak_kib, children)

    def __enter__(self) -> PeakMemory:
        _release_free_memory()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            logger.warning("cannot reset the peak RSS; peaks include earlier work in this process")
        self.start_mib = _status_kib("VmRSS") / 1024
        self._children_peak_kib = 0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample_children, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        # the sum of the two peaks: an upper bound when they do not coincide
        self.peak_mib = (_status_kib("VmHWM") + self._children_peak_kib) / 1024
        if self.device.type == "cuda":
            self.gpu_peak_mib = torch.cuda.max_memory_allocated(self.device) / _MIB

    @property
    def increase_mib(self) -> float:
        """Peak above the RSS on entry: what the block itself needed."""
        return self.peak_mib - self.start_mib


class StageTimer:
    """Wall-clock seconds per named stage, accumulated over ``with timer.stage(name):`` blocks."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds


def dice(a: np.ndarray, b: np.ndarray, label: int = 1) -> float:
    """Dice of ``label`` between two label arrays; 1.0 when neither contains it."""
    in_a, in_b = a == label, b == label
    total = int(in_a.sum()) + int(in_b.sum())
    return 1.0 if total == 0 else 2.0 * int((in_a & in_b).sum()) / total


def hardware(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on: CPU model and cores, GPU, library versions, date (UTC), and
    the load average when the benchmark ended (other processes' share of the cores)."""
    import monai

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(0) if torch.device(device).type == "cuda" else None,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1_5_15min": [round(v, 1) for v in os.getloadavg()],
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


def save_results(name: str, payload: dict[str, Any], out_dir: Path, table: str) -> Path:
    """Write ``<out_dir>/<name>.json`` (the payload, with its ``hardware``) and ``<out_dir>/<name>.md``
    (the table, with the date and the load average it was measured at)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    info = payload["hardware"]
    load = "/".join(str(v) for v in info["load_average_1_5_15min"])
    (out_dir / f"{name}.md").write_text(f"{table}\n\n_{info['date']}, load average {load} (1/5/15 min)_\n")
    return path
