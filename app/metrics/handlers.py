"""Ignite handlers that compute the EM metrics per image during evaluation and write the report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.handlers import from_engine

from app.metrics.em import (
    EM_METRICS,
    ISBI_THRESHOLDS,
    em_metrics,
    isbi_pixel_error,
    pixel_f_counts,
    write_em_report,
)

__all__ = ["EMMetricsHandler"]

logger = logging.getLogger(__name__)


class EMMetricsHandler:
    """Per-image EM metrics (pixel error, IoU, Dice, Rand error, VI) for an evaluator.

    Expects decollated outputs whose ``pred`` and ``label`` are one-hot ``(2, H, W)`` or class maps
    ``(1, H, W)`` with foreground (cell) = 1. At the end of each run it stores the means in
    ``engine.state.metrics`` (``val_pixel_error``, ``val_rand_error``, ...) and, with ``output_dir``,
    writes ``metrics.csv`` and ``summary.json`` there.

    Where the outputs also carry the probabilities under ``prob_key`` (the softmax ``(C, H, W)`` before
    discretisation, cell = last channel, or a cell probability ``(1, H, W)``), every image also gets the ISBI
    2012 challenge's ``isbi_pixel_error`` (:func:`~app.metrics.em.isbi_pixel_error`), and the report its
    value over the pooled images (``summary.json`` ``"stack"``; ``val_isbi_pixel_error_stack``), the
    challenge's reading of its stack.

    Args:
        output_dir: folder for the report; None only logs and stores the means.
        prefix: prefix of the names in ``engine.state.metrics``.
        prob_key: output key of the probabilities.
    """

    def __init__(
        self, output_dir: str | Path | None = None, prefix: str = "val_", prob_key: str = "prob"
    ) -> None:
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.prefix = prefix
        self.prob_key = prob_key
        self._rows: list[dict] = []
        self._counts: list[np.ndarray] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: (self._rows.clear(), self._counts.clear()))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch)

    @staticmethod
    def _classes(x) -> np.ndarray:
        x = _numpy(x)
        return x.argmax(0) if x.shape[0] > 1 else x[0]

    def _on_iteration(self, engine: Engine) -> None:
        outputs = engine.state.output
        preds, labels = from_engine(["pred", "label"])(outputs)
        probs = (
            [item.get(self.prob_key) for item in outputs]
            if isinstance(outputs, list)
            else [None] * len(preds)
        )
        metas = engine.state.batch if isinstance(engine.state.batch, list) else []
        for i, (pred, label, prob) in enumerate(zip(preds, labels, probs, strict=True)):
            name = _name(metas[i]) if i < len(metas) else f"case_{len(self._rows)}"
            label_fg = self._classes(label) > 0
            row = {"name": name}
            row.update(em_metrics(self._classes(pred) > 0, label_fg))
            if prob is not None:
                counts = pixel_f_counts(_numpy(prob)[-1], label_fg)
                row["isbi_pixel_error"] = isbi_pixel_error(counts)[0]
                self._counts.append(counts)
            self._rows.append(row)

    @staticmethod
    def _gather(items: list) -> list:
        """Every rank's items under ``torch.distributed`` (each rank validated its share), else ours."""
        if not (dist.is_available() and dist.is_initialized()):
            return items
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, items)
        return [item for part in parts for item in part]

    def _on_epoch(self, engine: Engine) -> None:
        rows = self._gather(self._rows)
        counts = self._gather(self._counts)
        keys = EM_METRICS + (("isbi_pixel_error",) if counts else ())
        for key in keys:
            values = [r[key] for r in rows if not np.isnan(r[key])]
            engine.state.metrics[self.prefix + key] = float(np.mean(values)) if values else float("nan")
        stack = None
        if counts:
            error, best = isbi_pixel_error(np.sum(counts, axis=0))
            stack = {"isbi_pixel_error": error, "threshold": ISBI_THRESHOLDS[best]}
            engine.state.metrics[self.prefix + "isbi_pixel_error_stack"] = error
        if self.output_dir is not None and (not dist.is_initialized() or dist.get_rank() == 0):
            csv_path, _ = write_em_report(rows, self.output_dir, stack)
            logger.info("EM metrics of %d images written to %s", len(rows), csv_path)


def _numpy(x) -> np.ndarray:
    """A tensor (any device) or array as a numpy array."""
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)


def _name(item: dict) -> str:
    image = item.get("image") if isinstance(item, dict) else None
    meta = getattr(image, "meta", {}) or {}
    path = meta.get("filename_or_obj")
    return Path(str(path)).name if path else "case"
