"""A study's runs read back from their ``history.csv`` files and summarised over seeds.

Each run folder holds the bundle's ``history.csv`` (see :mod:`app.engine.history`) and the runner's
``study_run.json`` (command, exit status, wall time, hardware; see :mod:`app.study.runner`). This module
turns them into per-run series and final values, per-arm curves (mean and min-max band over seeds) and
per-arm summaries (mean, standard deviation, range).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.engine.history import HISTORY_NAME, read_history

if TYPE_CHECKING:
    from app.study.config import StudyPlan

__all__ = [
    "RECORD_NAME",
    "RunResult",
    "StudyResults",
    "Summary",
    "CurveBand",
    "summarize",
    "arm_curve",
    "collect_results",
    "read_record",
]

RECORD_NAME = "study_run.json"


@dataclass(frozen=True)
class RunResult:
    """The history of one finished (or partly finished) run.

    Args:
        arm, seed: which run.
        rows: ``history.csv`` rows (``read_history``), sorted by epoch.
        record: the runner's ``study_run.json`` (empty when the run was made outside the runner).
    """

    arm: str
    seed: int
    rows: Sequence[Mapping[str, float]]
    record: Mapping[str, Any] = field(default_factory=dict)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(epochs, values)`` of the epochs where ``key`` has a finite value."""
        points = [(r["epoch"], r[key]) for r in self.rows if key in r and math.isfinite(r[key])]
        epochs = np.array([p[0] for p in points], dtype=int)
        return epochs, np.array([p[1] for p in points], dtype=float)

    def final(self, key: str) -> float:
        """The last finite value of ``key`` (NaN if there is none)."""
        values = self.series(key)[1]
        return float(values[-1]) if values.size else math.nan

    def best(self, key: str, direction: str) -> float:
        """The best finite value of ``key``: the largest for ``"max"``, the smallest for ``"min"``."""
        values = self.series(key)[1]
        if not values.size:
            return math.nan
        return float(values.max() if direction == "max" else values.min())

    @property
    def wall_s(self) -> float:
        """Wall time of the run in seconds as the runner recorded it (NaN when not recorded)."""
        return float(self.record.get("wall_s", math.nan))


@dataclass(frozen=True)
class StudyResults:
    """The runs of one study plan that have a history, and the planned runs that have none."""

    plan: StudyPlan
    runs: tuple[RunResult, ...]
    missing: tuple[tuple[str, int], ...]

    @property
    def arms(self) -> tuple[str, ...]:
        return self.plan.arms

    def of_arm(self, arm: str) -> list[RunResult]:
        return [r for r in self.runs if r.arm == arm]


@dataclass(frozen=True)
class Summary:
    """Per-seed values of one quantity for one arm: mean, sample standard deviation, range, count.

    Non-finite values (a metric never measured) are left out; ``n`` counts the finite ones.
    """

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

    @property
    def lo(self) -> float:
        return min(self.values) if self.values else math.nan

    @property
    def hi(self) -> float:
        return max(self.values) if self.values else math.nan

    def text(self, digits: int = 3) -> str:
        """``"0.812 ± 0.013"`` (mean ± standard deviation), ``"0.812"`` for one value, ``"n/a"`` for none."""
        if not self.values:
            return "n/a"
        if self.n == 1:
            return f"{self.mean:.{digits}g}"
        return f"{self.mean:.{digits}g} ± {self.std:.2g}"


def summarize(values: Sequence[float]) -> Summary:
    """A :class:`Summary` of ``values`` (non-finite ones dropped)."""
    return Summary(tuple(float(v) for v in values if math.isfinite(v)))


@dataclass(frozen=True)
class CurveBand:
    """An arm's curve of one quantity: per epoch, the mean and the range over the seeds that have it."""

    epochs: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def arm_curve(runs: Sequence[RunResult], key: str) -> CurveBand:
    """Mean and min-max of ``key`` per epoch over ``runs`` (epochs where at least one run has a value)."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        for epoch, value in zip(*run.series(key), strict=True):
            by_epoch.setdefault(int(epoch), []).append(float(value))
    epochs = np.array(sorted(by_epoch), dtype=int)
    groups = [by_epoch[e] for e in epochs]
    return CurveBand(
        epochs,
        np.array([np.mean(g) for g in groups]),
        np.array([min(g) for g in groups]),
        np.array([max(g) for g in groups]),
    )


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """The runner's ``study_run.json`` of a run folder, or ``{}`` when absent or unreadable."""
    try:
        return json.loads((Path(run_dir) / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return {}


def collect_results(plan: StudyPlan) -> StudyResults:
    """Read the history of every planned run; runs without a readable, non-empty one are ``missing``.

    Raises:
        ValueError: a ``history.csv`` exists but is malformed (the message names the file).
    """
    runs, missing = [], []
    for run in plan.runs:
        path = run.run_dir / HISTORY_NAME
        rows = read_history(path) if path.is_file() else []
        if rows:
            runs.append(RunResult(run.arm, run.seed, rows, read_record(run.run_dir)))
        else:
            missing.append((run.arm, run.seed))
    return StudyResults(plan, tuple(runs), tuple(missing))
