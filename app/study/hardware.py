"""What a study ran on: processor, usable cores, GPU, torch version, for the report's record."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

__all__ = ["cpu_model", "describe_hardware"]


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown processor"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def describe_hardware() -> dict[str, str | int]:
    """``{"cpu", "cores", "gpu", "torch", "threads"}`` of this machine.

    ``cores`` counts the cores this process may use (its affinity), ``threads`` is ``OMP_NUM_THREADS``
    when set (the bundle runs inherit it), ``gpu`` is the CUDA device name or ``"none"``.
    """
    import torch  # imported here: reading a study's files should not need it

    return {
        "cpu": cpu_model(),
        "cores": _usable_cores(),
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "torch": metadata.version("torch"),
    }
