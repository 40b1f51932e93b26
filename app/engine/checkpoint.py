"""Resumable, atomic training checkpoints for Ignite/MONAI trainers.

``ResumableCheckpoint`` saves the full training state (network, optimiser, LR scheduler, AMP
scaler, trainer epoch/iteration and the torch/numpy/python RNG states) at the end of every
``save_interval`` epochs, writing to a temporary file and renaming it so a kill at any moment leaves
either the old or the new checkpoint, never a torn one. The two newest are kept. On start it loads
the newest checkpoint that reads back cleanly (with ``torch.load(weights_only=True)``, so a file
carrying pickled code is refused) and falls back to the older one with a warning.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["ResumableCheckpoint", "atomic_torch_save", "safe_load", "rng_state", "set_rng_state"]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_NAME = "checkpoint.prev.pt"


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` through a temporary file in the same folder plus ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors, numbers, strings and containers only.

    Raises:
        RuntimeError: the file is truncated, corrupt, or carries pickled objects (message names the file).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise RuntimeError(f"{path}: not a valid weights-only checkpoint ({type(e).__name__}: {e})") from e


def rng_state() -> dict:
    """Torch, numpy and python RNG states in a form ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def _unwrap(obj: Any) -> Any:
    return obj.module if isinstance(obj, torch.nn.parallel.DistributedDataParallel) else obj


class ResumableCheckpoint:
    """Save the whole training state every ``save_interval`` epochs and resume from it on start.

    Args:
        run_dir: folder of the run; checkpoints are ``run_dir/checkpoint.pt`` (+ ``checkpoint.prev.pt``).
        objects: name -> object with ``state_dict``/``load_state_dict`` (network, optimizer, lr_scheduler...).
            The trainer itself and its AMP scaler (``engine.scaler``) are added on ``attach``.
        save_interval: epochs between saves; the last epoch is always saved.
        resume: load the newest valid checkpoint when the trainer starts.
        save: write checkpoints (False on the non-zero ranks of a distributed run, which must still
            resume so that every rank continues from the same epoch).

    A ``DistributedDataParallel`` network is saved and loaded through its ``module`` so checkpoints
    move freely between single-process and distributed runs.

    Example::

        ResumableCheckpoint("runs/ct", {"network": net, "optimizer": opt}).attach(trainer)
    """

    def __init__(
        self,
        run_dir: str | Path,
        objects: Mapping[str, Any],
        save_interval: int = 1,
        resume: bool = True,
        save: bool = True,
    ) -> None:
        if save_interval < 1:
            raise ValueError(f"save_interval must be >= 1, got {save_interval}")
        self.run_dir = Path(run_dir)
        self.objects = {k: _unwrap(v) for k, v in objects.items() if v is not None}
        self.save_interval = save_interval
        self.resume = resume
        self.write = save

    @property
    def path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def attach(self, engine: Engine) -> None:
        if self.resume:
            engine.add_event_handler(Events.STARTED, self.load)
        if self.write:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def _all_objects(self, engine: Engine) -> dict:
        objects = dict(self.objects)
        scaler = getattr(engine, "scaler", None)
        if scaler is not None:
            objects["scaler"] = scaler
        return objects

    def save(self, engine: Engine) -> None:
        """Write the checkpoint (called at EPOCH_COMPLETED); keeps the previous one as a fallback."""
        epoch, max_epochs = engine.state.epoch, engine.state.max_epochs
        if epoch % self.save_interval and epoch != max_epochs:
            return
        state = {name: obj.state_dict() for name, obj in self._all_objects(engine).items()}
        state["trainer"] = {
            "epoch": epoch,
            "iteration": engine.state.iteration,
            "max_epochs": max_epochs,
            "epoch_length": engine.state.epoch_length,
        }
        state["rng"] = rng_state()
        tmp = atomic_torch_save(state, self.run_dir / f".{CHECKPOINT_NAME}.new")
        if self.path.exists():
            os.replace(self.path, self.run_dir / PREVIOUS_NAME)
        os.replace(tmp, self.path)
        logger.debug("checkpoint saved at epoch %d: %s", epoch, self.path)

    def _candidates(self) -> list[Path]:
        # ".checkpoint.pt.new" is complete when it exists (written atomically) but the rename may have
        # been cut short by a kill: it is the newest state then.
        names = [f".{CHECKPOINT_NAME}.new", CHECKPOINT_NAME, PREVIOUS_NAME]
        return [self.run_dir / n for n in names if (self.run_dir / n).exists()]

    def load(self, engine: Engine) -> None:
        """Restore the newest valid checkpoint into the objects and the trainer (called at STARTED)."""
        if self.write:
            for torn in self.run_dir.glob(f".*{CHECKPOINT_NAME}*.tmp"):
                logger.warning("removing %s, a checkpoint whose writing was cut short", torn)
                torn.unlink(missing_ok=True)
        for path in self._candidates():
            try:
                state = safe_load(path)
                trainer_state = state["trainer"]
            except (RuntimeError, KeyError, TypeError) as e:
                logger.warning("skipping unusable checkpoint %s (%s)", path, e)
                continue
            for name, obj in self._all_objects(engine).items():
                if name in state:
                    obj.load_state_dict(state[name])
            set_rng_state(state["rng"])
            engine.state.epoch = trainer_state["epoch"]
            engine.state.iteration = trainer_state["iteration"]
            if engine.state.epoch >= engine.state.max_epochs:
                logger.info(
                    "%s: training already completed %d epochs; raise --epochs to train further or "
                    "choose another --run_dir",
                    path,
                    engine.state.epoch,
                )
            else:
                logger.info(
                    "resumed from %s at epoch %d/%d", path, engine.state.epoch, engine.state.max_epochs
                )
            return
        logger.info("no checkpoint in %s: training from scratch", self.run_dir)
