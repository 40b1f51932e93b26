"""Per-epoch training history: ``run_dir/history.csv`` and the handler that keeps it.

File format (the contract other tools such as multi-seed studies read)::

    epoch,train_loss,lr,val_mean_dice,val_hd95
    1,0.6931,0.001,0.412,12.5
    2,0.5120,0.00095,,
    3,0.4403,0.0009,0.655,nan

* one row per completed trainer epoch, sorted by ``epoch`` (1-based, unique);
* ``train_loss``: mean of the trainer's loss over that epoch's iterations (rank 0's loss under
  ``torch.distributed``);
* ``lr``: ``optimizer.param_groups[0]["lr"]`` while that epoch trained (read at its start, so an
  epoch-level scheduler stepping at its end does not shift it);
* then one column per validation metric, in order of first appearance, named as in the evaluator's
  ``state.metrics`` (``val_mean_dice``, ``val_hd95``, ``val_pixel_error``, ``val_dice_<class>``...);
  vector metrics become ``<name>_<i>``. An empty cell means no validation ran that epoch; ``nan`` /
  ``inf`` are real values (e.g. HD95 of an empty prediction).

The file is rewritten through a temporary file and ``os.replace`` at every epoch end, so it is always
complete. On resume, the rows of epochs later than the resumed one are dropped before the next row is
written, so no epoch is ever listed twice. Read it with :func:`read_history` (or any CSV reader).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from app.engine.plots import plot_curves

__all__ = [
    "HISTORY_NAME",
    "CURVES_NAME",
    "TrainingHistory",
    "read_history",
    "write_history",
    "scalar_metrics",
    "output_loss",
]

logger = logging.getLogger(__name__)

HISTORY_NAME = "history.csv"
CURVES_NAME = "curves.png"
BASE_COLUMNS = ("epoch", "train_loss", "lr")
EPOCH_LOSS = "train_loss"
"""Name of the trainer metric :class:`app.engine.handlers.EpochLoss` computes (mean over all ranks)."""


def output_loss(output: Any) -> float:
    """The scalar ``"loss"`` of a trainer output: one dict, or a decollated list of dicts."""
    loss = (output[0] if isinstance(output, list) else output)["loss"]
    return float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Flatten an evaluator's ``state.metrics`` into ``name -> float``.

    Scalars (numbers, 0-d or 1-element tensors/arrays) keep their name; a vector metric of ``n``
    values becomes ``name_0 .. name_{n-1}``; a mapping (Ignite's ``return_with_label`` result)
    contributes its own keys; anything else (strings) is skipped.
    """
    flat: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, Mapping):
            for key, item in scalar_metrics(value).items():
                flat.setdefault(key, item)
            continue
        if isinstance(value, str):
            continue
        values = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=float)
        if values.size == 1:
            flat[name] = float(values.reshape(()))
        else:
            flat.update({f"{name}_{i}": float(v) for i, v in enumerate(values.ravel())})
    return flat


def read_history(path: str | Path) -> list[dict[str, float]]:
    """Rows of a history file; ``epoch`` is an int, empty cells are left out of the row.

    Raises:
        ValueError: a cell is not a number or the file has no ``epoch`` column (message names the file).
    """
    path = Path(path)
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "epoch" not in reader.fieldnames:
            raise ValueError(f"{path}: not a history file (no 'epoch' column)")
        for line in reader:
            try:
                row = {k: float(v) for k, v in line.items() if k and v not in (None, "")}
                row["epoch"] = int(row["epoch"])
            except (KeyError, ValueError) as e:
                raise ValueError(f"{path}: line {reader.line_num}: {e}") from e
            rows.append(row)
    return rows


def write_history(rows: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Write ``rows`` (see the module docstring) atomically: temporary file + ``os.replace``."""
    path = Path(path)
    columns = list(BASE_COLUMNS)
    for row in rows:
        columns += [k for k in row if k not in columns]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


class TrainingHistory:
    """Trainer handler: one ``history.csv`` row per epoch and a refreshed ``curves.png``.

    The history is rewritten at every epoch end. ``curves.png`` is redrawn at an epoch end when the
    last drawing is at least ``plot_interval_s`` old (drawing takes about half a second, too much to
    repeat after every epoch of a fast run) and always when training ends.

    Args:
        run_dir: the run folder (files ``history.csv`` and ``curves.png``).
        optimizer: its ``param_groups[0]["lr"]`` is the ``lr`` column.
        evaluator: validation engine; its ``state.metrics`` at the end of a validation run fill the
            metric columns of the trainer epoch in which it ran. The handler does not depend on
            being attached before or after the ``ValidationHandler``.
        output_transform: trainer ``state.output`` -> loss as a float.
        plot_interval_s: least seconds between two redraws of ``curves.png`` before the end (0: every epoch).

    Example::

        TrainingHistory("runs/em", optimizer, evaluator).attach(trainer)
    """

    def __init__(
        self,
        run_dir: str | Path,
        optimizer: torch.optim.Optimizer,
        evaluator: Engine | None = None,
        output_transform: Callable[[Any], float] = output_loss,
        plot_interval_s: float = 10.0,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.optimizer = optimizer
        self.evaluator = evaluator
        self.output_transform = output_transform
        self.plot_interval_s = plot_interval_s
        self.rows: list[dict[str, float]] = []
        self._pending: dict[int, dict[str, float]] = {}
        self._lr = math.nan
        self._loss_sum = 0.0
        self._loss_count = 0
        self._plotted_at = -math.inf
        self._plot_outdated = False

    @property
    def path(self) -> Path:
        return self.run_dir / HISTORY_NAME

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._on_started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._on_epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch_completed)
        engine.add_event_handler(Events.COMPLETED, lambda _: self._plot(force=True))
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.COMPLETED, self._on_validation_completed, engine)

    def _on_started(self, engine: Engine) -> None:
        self.rows = []
        if self.path.is_file():
            try:
                self.rows = read_history(self.path)
            except ValueError as e:
                logger.warning("starting a new history: %s", e)

    def _on_epoch_started(self, engine: Engine) -> None:
        # state.epoch is already the epoch about to train: after a resume from epoch k it is k + 1,
        # so this drops the rows of epochs the resumed checkpoint did not reach.
        self.rows = [r for r in self.rows if r["epoch"] < engine.state.epoch]
        self._lr = float(self.optimizer.param_groups[0]["lr"])
        self._loss_sum, self._loss_count = 0.0, 0

    def _on_iteration_completed(self, engine: Engine) -> None:
        self._loss_sum += self.output_transform(engine.state.output)
        self._loss_count += 1

    def _on_epoch_completed(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        loss = self._loss_sum / self._loss_count if self._loss_count else math.nan
        loss = float(engine.state.metrics.get(EPOCH_LOSS, loss))  # all ranks' mean when distributed
        row: dict[str, float] = {"epoch": epoch, "train_loss": loss, "lr": self._lr}
        row.update(self._pending.pop(epoch, {}))
        self.rows.append(row)
        self._save()

    def _on_validation_completed(self, evaluator: Engine, trainer: Engine) -> None:
        epoch = trainer.state.epoch
        metrics = scalar_metrics(evaluator.state.metrics)
        if self.rows and self.rows[-1]["epoch"] == epoch:  # this handler ran before the validation
            self.rows[-1].update(metrics)
            self._save()
        else:
            self._pending[epoch] = metrics

    def _save(self) -> None:
        write_history(self.rows, self.path)
        self._plot_outdated = True
        self._plot(force=False)

    def _plot(self, force: bool) -> None:
        due = time.monotonic() - self._plotted_at >= self.plot_interval_s
        if self._plot_outdated and (force or due):
            plot_curves(self.rows, self.run_dir / CURVES_NAME)
            self._plotted_at, self._plot_outdated = time.monotonic(), False
