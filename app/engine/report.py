"""Summaries an evaluation leaves next to MONAI's ``MetricsSaver`` CSV files."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["write_summary_json"]

logger = logging.getLogger(__name__)


def write_summary_json(
    out_dir: str | Path, metrics: Mapping[str, float], class_names: Mapping | None = None
) -> Path:
    """Write ``out_dir/summary.json``: the evaluator's aggregated metrics and the class names.

    NaN/Inf values (e.g. HD95 of a case without foreground) are written as null so the file is valid JSON.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}
    summary = {"metrics": clean, "classes": dict(class_names or {})}
    path = out / "summary.json"
    tmp = path.with_name(f".summary.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(path)
    logger.info("evaluation summary: %s -> %s", clean, path)
    return path
