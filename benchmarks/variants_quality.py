"""Quality of a variant after a fixed CPU-time training budget (see :mod:`benchmarks.variants`).

Each run is the bundle's own training command with the variant overlay, on the real data, plus one
generated overlay (``RUN/budget.json``) that attaches :class:`TrainingBudget` to the trainer in
``initialize``::

    python -m monai.bundle run training \\
        --config_file "['bundles/mri/train.json','configs/variants/plain.json','RUN/budget.json']" \\
        --spatial_dims 3 --padding same --depth 3 \\
        --dataset_dir ../shared/data/hippocampus --run_dir RUN/run --epochs 1000 --val_interval 1000

``--epochs 1000`` is only a cap, and keeps the bundle's polynomial learning-rate decay flat over the budget;
``--val_interval 1000`` keeps validation out of the budget. The budget stops the trainer mid-epoch; then the
bundle's own validation (``validate#evaluator``: the split, inferer, post-processing and metrics that
training validates with) runs once, in the same process, on the final weights. Ignite's ``terminate``
still fires ``COMPLETED``, so ``RUN/run/model_final.pt`` is written and the bundle's ``evaluate.json``
reproduces the scores: ``--config_file "['bundles/mri/train.json','configs/variants/plain.json',
'bundles/mri/evaluate.json']" --model_path RUN/run/model_final.pt``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from app.engine.history import scalar_metrics
from app.paths import REPO_ROOT
from benchmarks.variants_micro import BUNDLE_KEYS, WORKER_ENV

__all__ = ["BUDGET_RECORD", "EPOCH_CAP", "TrainingBudget", "train_with_budget"]

logger = logging.getLogger(__name__)

BUDGET_RECORD = "budget.json"
EPOCH_CAP = 1000
_TAIL = 3000


class TrainingBudget:
    """Stop a trainer once this process has spent ``seconds`` of CPU time training, then validate once.

    CPU time (``time.process_time``: all threads of the process, data loading included) rather than wall
    time, so that other jobs on a shared machine do not shrink one variant's budget more than another's.
    Counting starts at the trainer's ``STARTED`` event, after the bundle has cached its datasets. When the
    trainer stops, ``evaluator`` (the bundle's ``validate#evaluator``) runs once on the final weights and
    ``run_dir/budget.json`` records ``budget_cpu_s``, ``cpu_s``, ``wall_s``, ``iterations``, ``epochs``
    (the epoch the trainer stopped in) and the evaluator's ``metrics``.

    Args:
        seconds: the CPU-time budget.
        run_dir: where ``budget.json`` is written.
        evaluator: the validation engine run at the end.
    """

    def __init__(self, seconds: float, run_dir: str | Path, evaluator: Engine) -> None:
        self.seconds = float(seconds)
        self.run_dir = Path(run_dir)
        self.evaluator = evaluator
        self._cpu_start = self._wall_start = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._check)
        engine.add_event_handler(Events.COMPLETED, self._validate_and_record)

    def _start(self, engine: Engine) -> None:
        self._cpu_start, self._wall_start = time.process_time(), time.perf_counter()

    def _check(self, engine: Engine) -> None:
        if time.process_time() - self._cpu_start >= self.seconds:
            logger.info("training budget of %.0f CPU s spent: stopping", self.seconds)
            engine.terminate()

    def _validate_and_record(self, engine: Engine) -> None:
        cpu_s, wall_s = time.process_time() - self._cpu_start, time.perf_counter() - self._wall_start
        self.evaluator.run()
        record = {
            "budget_cpu_s": self.seconds,
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "iterations": engine.state.iteration,
            "epochs": engine.state.epoch,
            "metrics": scalar_metrics(self.evaluator.state.metrics),
        }
        (self.run_dir / BUDGET_RECORD).write_text(json.dumps(record, indent=2))


def train_with_budget(
    bundle: str,
    overlay: str | None,
    dataset_dir: Path,
    work_dir: Path,
    budget_cpu_s: float,
    threads: int,
) -> dict[str, Any]:
    """Train ``bundle`` with ``overlay`` for a CPU-time budget and validate the final weights once.

    Args:
        bundle: ``"mri"`` or ``"em"``.
        overlay: a ``configs/variants`` name, or None for the bundle's default network.
        dataset_dir: the real dataset.
        work_dir: this run's folder (emptied first); the bundle's run folder is ``work_dir/run``.
        budget_cpu_s: the training budget (CPU seconds of the training process).
        threads: ``OMP_NUM_THREADS`` of the bundle process.

    Returns:
        ``command``, ``process_wall_s`` (the whole command), ``returncode``, and either ``error`` (the
        output's tail) or the :class:`TrainingBudget` record: ``cpu_s``, ``wall_s``, ``iterations``,
        ``epochs``, ``metrics`` (the validation metrics, e.g. ``val_mean_dice``).
    """
    run_dir = work_dir / "run"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    train_config = json.loads((REPO_ROOT / "bundles" / bundle / "train.json").read_text())
    budget_overlay = work_dir / "budget.json"
    initialize = [
        *train_config["initialize"],
        "$from benchmarks.variants_quality import TrainingBudget",
        f"$TrainingBudget({budget_cpu_s}, @run_dir, @validate#evaluator).attach(@train#trainer)",
    ]
    budget_overlay.write_text(json.dumps({"initialize": initialize}, indent=2))
    files = [f"bundles/{bundle}/train.json"]
    files += [f"configs/variants/{overlay}.json"] if overlay is not None else []
    command = [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", "[" + ",".join(f"'{f}'" for f in [*files, str(budget_overlay)]) + "]",
    ]  # fmt: skip
    missing = {key: value for key, value in BUNDLE_KEYS[bundle].items() if key not in train_config}
    overrides = {**missing, "dataset_dir": dataset_dir, "run_dir": run_dir}
    for key, value in {**overrides, "epochs": EPOCH_CAP, "val_interval": EPOCH_CAP}.items():
        command += [f"--{key}", str(value)]
    env = {**os.environ, **WORKER_ENV, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    result = {
        "command": " ".join(command[1:]),
        "process_wall_s": time.perf_counter() - start,
        "returncode": proc.returncode,
    }
    if proc.returncode != 0:
        return {**result, "error": (proc.stdout + proc.stderr)[-_TAIL:]}
    return {**result, **json.loads((run_dir / BUDGET_RECORD).read_text())}
