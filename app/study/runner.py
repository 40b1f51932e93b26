"""Run a study's trainings: one ``python -m monai.bundle run training`` subprocess per arm and seed.

Each run is the command a user would type (:meth:`app.study.config.StudyRun.command`), started from
the repository root; its output goes to ``<run_dir>/study.log`` and, when it ends, the runner writes
``<run_dir>/study_run.json`` (the command, exit status, wall time, finish date and hardware). A study is
resumable: a run whose record shows the same command finished with exit status 0 and whose
``history.csv`` has rows is skipped; any other run is started again, and the bundle itself resumes from
its ``checkpoint.pt``. Wall time adds up over the attempts of a run.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from app.engine.history import HISTORY_NAME, read_history
from app.errors import InputError
from app.io.atomic import atomic_output
from app.paths import REPO_ROOT
from app.study.aggregate import RECORD_NAME, read_record
from app.study.config import StudyPlan, StudyRun
from app.study.hardware import describe_hardware

__all__ = ["LOG_NAME", "StudyRunError", "is_finished", "run_study"]

logger = logging.getLogger(__name__)

LOG_NAME = "study.log"
LOG_TAIL_LINES = 20


class StudyRunError(RuntimeError):
    """A training run of a study failed; the message names the run, its exit status and its log."""


def _same_command(recorded: list[str], planned: list[str]) -> bool:
    return recorded[1:] == planned[1:]  # the interpreter's path may differ between machines


def is_finished(run: StudyRun) -> bool:
    """Whether ``run`` already finished: its record shows this command with exit status 0 and its
    ``history.csv`` has at least one epoch."""
    record = read_record(run.run_dir)
    if record.get("returncode") != 0 or not _same_command(record.get("command", []), run.command()):
        return False
    try:
        return bool(read_history(run.run_dir / HISTORY_NAME))
    except (OSError, ValueError):
        return False


def _write_record(run: StudyRun, record: Mapping) -> None:
    with atomic_output(run.run_dir / RECORD_NAME) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def _log_tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _set_aside_if_changed(run: StudyRun, command: list[str]) -> dict:
    """The run's record, or ``{}`` after moving its folder aside to ``<folder>.replaced-<UTC time>`` when
    it was started with another command (its checkpoint belongs to another configuration: resuming from it
    would fail or, worse, mix two)."""
    record = read_record(run.run_dir)
    if not record or _same_command(record.get("command", []), command):
        return record
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = run.run_dir.with_name(f"{run.run_dir.name}.replaced-{stamp}")
    run.run_dir.rename(aside)
    logger.warning(
        "%s seed %d: the command changed since its last start; old folder moved to %s",
        run.arm,
        run.seed,
        aside,
    )
    return {}


def _execute(run: StudyRun, hardware: Mapping) -> None:
    command = run.command()
    previous_wall = float(_set_aside_if_changed(run, command).get("wall_s", 0.0))
    run.run_dir.mkdir(parents=True, exist_ok=True)
    # recorded before the start, so that an interrupted run is known to belong to this command
    _write_record(
        run,
        {"arm": run.arm, "seed": run.seed, "command": command, "returncode": None, "wall_s": previous_wall},
    )
    log_path = run.run_dir / LOG_NAME
    start = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        proc = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    record = {
        "arm": run.arm,
        "seed": run.seed,
        "command": command,
        "returncode": proc.returncode,
        "wall_s": round(previous_wall + wall, 1),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hardware": dict(hardware),
    }
    _write_record(run, record)
    if proc.returncode != 0:
        raise StudyRunError(
            f"run {run.arm} seed {run.seed} failed with exit status {proc.returncode}; "
            f"log: {log_path}\n{_log_tail(log_path)}"
        )
    logger.info("%s seed %d finished in %.0f s", run.arm, run.seed, wall)


def run_study(plan: StudyPlan) -> None:
    """Run every run of ``plan`` that has not finished yet, in order, one at a time, in this process's
    environment (so ``OMP_NUM_THREADS``, ``APP_DEMO_DIR``... reach the trainings).

    Args:
        plan: from :func:`app.study.config.plan_study`.

    Raises:
        InputError: the preset's dataset folder does not exist (checked before any run starts).
        StudyRunError: a run failed; the runs before it are kept and a new call resumes from there.
    """
    dataset = plan.preset.dataset_dir
    if dataset is not None and not dataset.is_dir():
        raise InputError(
            dataset, "dataset_dir does not exist (set APP_SHARED_DATA, or use --preset tiny for demo data)"
        )
    hardware = describe_hardware()
    todo = [run for run in plan.runs if not is_finished(run)]
    logger.info(
        "study %s (%s): %d run(s), %d already finished",
        plan.study.name,
        plan.preset.name,
        len(plan.runs),
        len(plan.runs) - len(todo),
    )
    for i, run in enumerate(todo, 1):
        logger.info("[%d/%d] %s seed %d: log in %s", i, len(todo), run.arm, run.seed, run.run_dir / LOG_NAME)
        logger.debug("%s", " ".join(run.command()))
        _execute(run, hardware)
