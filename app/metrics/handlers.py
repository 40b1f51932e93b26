"""Ignite handlers that compute the EM metrics per image during evaluation and write the report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.handlers import from_engine

from app.metrics.em import EM_METRICS, em_metrics, write_em_report

__all__ = ["EMMetricsHandler"]

logger = logging.getLogger(__name__)


class EMMetricsHandler:
    """Per-image EM metrics (pixel error, IoU, Dice, Rand error, VI) for an evaluator.

    Expects decollated outputs whose ``pred`` and ``label`` are one-hot ``(2, H, W)`` or class maps
    ``(1, H, W)`` with foreground (cell) = 1. At the end of each run it stores the means in
    ``engine.state.metrics`` (``val_pixel_error``, ``val_rand_error``, ...) and, with ``output_dir``,
    writes ``metrics.csv`` and ``summary.json`` there.

    Args:
        output_dir: folder for the report; None only logs and stores the means.
        prefix: prefix of the names in ``engine.state.metrics``.
    """

    def __init__(self, output_dir: str | Path | None = None, prefix: str = "val_") -> None:
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.prefix = prefix
        self._rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self._rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch)

    @staticmethod
    def _classes(x) -> np.ndarray:
        x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
        return x.argmax(0) if x.shape[0] > 1 else x[0]

    def _on_iteration(self, engine: Engine) -> None:
        preds, labels = from_engine(["pred", "label"])(engine.state.output)
        metas = engine.state.batch if isinstance(engine.state.batch, list) else []
        for i, (pred, label) in enumerate(zip(preds, labels, strict=True)):
            name = _name(metas[i]) if i < len(metas) else f"case_{len(self._rows)}"
            row = {"name": name}
            row.update(em_metrics(self._classes(pred) > 0, self._classes(label) > 0))
            self._rows.append(row)

    def _all_rows(self) -> list[dict]:
        """Every rank's rows under ``torch.distributed`` (each rank validated its share), else ours."""
        if not (dist.is_available() and dist.is_initialized()):
            return self._rows
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, self._rows)
        return [row for part in parts for row in part]

    def _on_epoch(self, engine: Engine) -> None:
        rows = self._all_rows()
        for key in EM_METRICS:
            values = [r[key] for r in rows if not np.isnan(r[key])]
            engine.state.metrics[self.prefix + key] = float(np.mean(values)) if values else float("nan")
        if self.output_dir is not None and (not dist.is_initialized() or dist.get_rank() == 0):
            csv_path, _ = write_em_report(rows, self.output_dir)
            logger.info("EM metrics of %d images written to %s", len(rows), csv_path)


def _name(item: dict) -> str:
    image = item.get("image") if isinstance(item, dict) else None
    meta = getattr(image, "meta", {}) or {}
    path = meta.get("filename_or_obj")
    return Path(str(path)).name if path else "case"
