"""The handler sets every bundle's trainer and evaluator share, built from a few choices.

Bundle configs call :func:`train_handlers` and :func:`val_handlers` instead of repeating the same
twenty lines of handler definitions, so resumable checkpoints, validation, early stopping, LR
schedules, TensorBoard, progress reporting and the run's figures (``history.csv`` + ``curves.png``,
``overlays.png``) behave identically in the EM, CT and MRI bundles.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Average
from monai.handlers import (
    CheckpointSaver,
    EarlyStopHandler,
    LrScheduleHandler,
    StatsHandler,
    TensorBoardStatsHandler,
    ValidationHandler,
)

from app.engine.checkpoint import CHECKPOINT_NAME, ResumableCheckpoint
from app.engine.history import EPOCH_LOSS, TrainingHistory, output_loss
from app.engine.overlays import BestWorstCases

__all__ = ["EarlyStopOnValidation", "EpochLoss", "EpochProgress", "train_handlers", "val_handlers"]

logger = logging.getLogger(__name__)


def _rank() -> int:
    """This process's rank. Every rank must call it: Ignite's first ``get_rank`` creates a process group
    (a collective), and a rank-0-only ``CheckpointSaver`` would otherwise make that call alone and hang."""
    return idist.get_rank()


class EpochLoss:
    """The epoch's mean training loss over every iteration of every rank, as the trainer metric
    ``train_loss`` (Ignite's :class:`~ignite.metrics.Average`, all-reduced under ``torch.distributed``).

    Attach it on every rank, before the handlers that report the loss.
    """

    def attach(self, engine: Engine) -> None:
        Average(output_transform=output_loss, device=idist.device()).attach(engine, EPOCH_LOSS)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss:
    """Stop the training at the first iteration whose loss is NaN or infinite, raising
    :class:`TrainingDiverged` with the epoch and iteration (the run ends with an error, not with a model of
    NaN weights).

    Attach it on every rank, before the checkpoint handler: the epoch that diverged is never saved, so
    ``run_dir/checkpoint.pt`` keeps the last finite epoch.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = output_loss(engine.state.output)
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"{self.run_dir}: training diverged, loss {loss} at epoch {engine.state.epoch} iteration "
                f"{engine.state.iteration}; {CHECKPOINT_NAME} keeps the last finite epoch. "
                "Lower --learning_rate, train in --precision fp32, or check the data"
            )


class EpochProgress:
    """Logs one line per epoch: loss, the latest validation metric, elapsed time and ETA.

    Args:
        evaluator: the validation engine whose ``state.metrics`` are reported (optional).
        key_metric: name of the metric to report.
        every: log every ``every`` epochs (the last is always logged).
    """

    def __init__(
        self, evaluator: Engine | None = None, key_metric: str = "val_mean_dice", every: int = 1
    ) -> None:
        self.evaluator = evaluator
        self.key_metric = key_metric
        self.every = max(1, every)
        self._start = 0.0
        self._start_epoch = 0
        self._loss_sum = 0.0
        self._loss_count = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._on_epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch_completed)

    def _on_epoch_started(self, engine: Engine) -> None:
        if not self._start:
            self._start, self._start_epoch = time.perf_counter(), engine.state.epoch - 1
        self._loss_sum, self._loss_count = 0.0, 0

    def _on_iteration_completed(self, engine: Engine) -> None:
        self._loss_sum += output_loss(engine.state.output)
        self._loss_count += 1

    def _on_epoch_completed(self, engine: Engine) -> None:
        epoch, max_epochs = engine.state.epoch, engine.state.max_epochs
        if epoch % self.every and epoch != max_epochs:
            return
        loss = engine.state.metrics.get(EPOCH_LOSS, self._loss_sum / max(self._loss_count, 1))
        elapsed = time.perf_counter() - self._start
        done = epoch - self._start_epoch
        eta = elapsed / max(done, 1) * (max_epochs - epoch)
        parts = [f"epoch {epoch}/{max_epochs}", f"loss {loss:.4f}"]
        if self.evaluator is not None and self.key_metric in self.evaluator.state.metrics:
            parts.append(f"{self.key_metric} {self.evaluator.state.metrics[self.key_metric]:.4f}")
            best = getattr(self.evaluator.state, "best_metric", None)
            if best is not None and best > -1:
                parts.append(f"(best {best:.4f} @ epoch {self.evaluator.state.best_metric_epoch})")
        parts.append(f"elapsed {elapsed:.0f}s ETA {eta:.0f}s")
        logger.info(" | ".join(parts))


class EarlyStopOnValidation:
    """Stop the trainer after ``patience`` validations whose ``key_metric`` did not improve.

    Attached to the trainer (so the bundle config has no trainer/evaluator reference cycle); it
    installs MONAI's :class:`EarlyStopHandler` on the evaluator.
    """

    def __init__(self, evaluator: Engine, patience: int, key_metric: str = "val_mean_dice") -> None:
        self.evaluator, self.patience, self.key_metric = evaluator, patience, key_metric

    def attach(self, engine: Engine) -> None:
        key = self.key_metric
        EarlyStopHandler(
            trainer=engine, patience=self.patience, score_function=lambda e: e.state.metrics[key]
        ).attach(self.evaluator)


def _epoch_loss(engine: Engine) -> float:
    """The value a ``ReduceLROnPlateau`` steps on: the epoch's mean training loss."""
    return float(engine.state.metrics[EPOCH_LOSS])


def train_handlers(
    run_dir: str | Path,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    evaluator: Engine | None = None,
    lr_scheduler: object | None = None,
    val_interval: int = 1,
    save_interval: int = 1,
    resume: bool = True,
    key_metric: str = "val_mean_dice",
    early_stop_patience: int = 0,
    log_every: int = 1,
    tensorboard: bool = True,
) -> list:
    """Handlers for a ``SupervisedTrainer``.

    Returns, in order: the epoch loss (mean over all ranks), LR schedule (epoch level;
    ``ReduceLROnPlateau`` steps on that epoch loss, available every epoch on every rank), a stop at the first
    NaN or infinite loss (:class:`StopOnNonFiniteLoss`), validation
    every ``val_interval`` epochs, early stopping after ``early_stop_patience`` validations without
    improvement (0 disables it),
    per-iteration loss logging, epoch progress with ETA, TensorBoard loss curve, a resumable
    full-state checkpoint (``run_dir/checkpoint.pt``), the per-epoch history with its curves
    (``run_dir/history.csv``, ``run_dir/curves.png``; see :mod:`app.engine.history`) and the final
    model (``run_dir/model_final.pt``).
    Under ``torch.distributed`` only rank 0 logs and saves; the other ranks get the LR schedule,
    validation and early stopping, which must run everywhere.
    """
    rank = _rank()
    run_dir = Path(run_dir)
    handlers: list = [EpochLoss()]
    if isinstance(lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        handlers.append(LrScheduleHandler(lr_scheduler, print_lr=False, step_transform=_epoch_loss))
    elif lr_scheduler is not None:
        handlers.append(LrScheduleHandler(lr_scheduler=lr_scheduler, print_lr=False))
    handlers.append(StopOnNonFiniteLoss(run_dir))
    if evaluator is not None:
        handlers.append(ValidationHandler(validator=evaluator, interval=val_interval, epoch_level=True))
        if early_stop_patience > 0:
            handlers.append(EarlyStopOnValidation(evaluator, early_stop_patience, key_metric))
    objects = {"network": network, "optimizer": optimizer, "lr_scheduler": lr_scheduler}
    if rank != 0:  # every rank resumes from the same checkpoint; only rank 0 writes
        return handlers + [ResumableCheckpoint(run_dir, objects, save_interval, resume=resume, save=False)]
    handlers.append(
        StatsHandler(
            tag_name="train_loss",
            output_transform=output_loss,
            iteration_log=False,
            epoch_log=False,
        )
    )
    handlers.append(EpochProgress(evaluator=evaluator, key_metric=key_metric, every=log_every))
    if tensorboard:
        handlers.append(
            TensorBoardStatsHandler(
                log_dir=str(run_dir / "tensorboard"),
                tag_name="train_loss",
                output_transform=output_loss,
            )
        )
    handlers.append(ResumableCheckpoint(run_dir, objects, save_interval=save_interval, resume=resume))
    handlers.append(TrainingHistory(run_dir, optimizer, evaluator=evaluator))
    handlers.append(
        CheckpointSaver(
            save_dir=str(run_dir),
            save_dict={"network": network},
            save_final=True,
            final_filename="model_final.pt",
        )
    )
    return handlers


def val_handlers(
    run_dir: str | Path,
    network: torch.nn.Module,
    tensorboard: bool = True,
) -> list:
    """Handlers for the validation ``SupervisedEvaluator``.

    Best-model checkpoint ``run_dir/model.pt`` on the key metric, metric logging, TensorBoard and
    the best/worst case overlays (``run_dir/overlays.png`` + ``overlays.npz``; see
    :mod:`app.engine.overlays`); under ``torch.distributed`` on rank 0 only.
    """
    rank = _rank()
    run_dir = Path(run_dir)
    handlers: list = []
    if rank != 0:
        return handlers
    handlers.append(StatsHandler(iteration_log=False, epoch_log=True))
    if tensorboard:
        handlers.append(TensorBoardStatsHandler(log_dir=str(run_dir / "tensorboard"), iteration_log=False))
    handlers.append(
        CheckpointSaver(
            save_dir=str(run_dir),
            save_dict={"network": network},
            save_key_metric=True,
            key_metric_filename="model.pt",
        )
    )
    handlers.append(BestWorstCases(run_dir))
    return handlers
