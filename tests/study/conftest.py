"""Fixtures of the study tests: study files written to a temporary folder and hand-made run histories.

The helpers are fixtures returning functions because the tests are imported in importlib mode, where a
test module cannot import this file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine.history import write_history
from app.study.aggregate import RECORD_NAME
from app.study.config import StudyPlan, load_study, plan_study

TINY_PRESETS = {
    "cpu": {"seeds": [0, 1, 2]},
    "gpu": {"seeds": [0, 1, 2, 3, 4]},
    "tiny": {"seeds": [0], "dataset_dir": None},
}


@pytest.fixture
def make_plan(tmp_path):
    """``make_plan(arms, verdict=(), metrics=None, seeds=(0, 1, 2))`` -> the plan of a study file written
    to ``tmp_path`` (EM bundle, arms without overrides), with runs under ``tmp_path / "runs"``."""

    def make(
        arms: Sequence[str],
        verdict: Sequence[Mapping] = (),
        metrics: Mapping[str, str] | None = None,
        seeds: Sequence[int] = (0, 1, 2),
    ) -> StudyPlan:
        study = {
            "title": "synthetic",
            "bundle": "bundles/em/train.json",
            "metrics": metrics or {"val_iou": "max", "val_rand_error": "min"},
            "arms": {arm: {"description": f"arm {arm}"} for arm in arms},
            "verdict": list(verdict),
            "presets": dict(TINY_PRESETS, cpu={"seeds": list(seeds)}),
        }
        (tmp_path / "synthetic.json").write_text(json.dumps(study))
        return plan_study(load_study("synthetic", tmp_path), "cpu", tmp_path / "runs")

    return make


def _write_run(run_dir: Path, rows: Sequence[Mapping[str, float]], record: Mapping | None = None) -> None:
    """A finished run as the runner leaves it: ``history.csv`` and ``study_run.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_history([dict(r) for r in rows], run_dir / "history.csv")
    (run_dir / RECORD_NAME).write_text(json.dumps(record or {"returncode": 0, "wall_s": 60.0}))


@pytest.fixture
def write_runs():
    """``write_runs(plan, rows_of)``: ``rows_of[arm][i]`` become the history of the arm's i-th seed, with a
    runner record (exit status 0, 60 s); arms not in ``rows_of`` get no run folder."""

    def write(plan: StudyPlan, rows_of: Mapping[str, Sequence[Sequence[Mapping[str, float]]]]) -> None:
        for run in plan.runs:
            seeds = [r.seed for r in plan.runs if r.arm == run.arm]
            if run.arm in rows_of:
                _write_run(run.run_dir, rows_of[run.arm][seeds.index(run.seed)])

    return write


@pytest.fixture
def curve():
    """``curve(metric, values, loss=None)`` -> history rows validating every epoch, train loss 1 / epoch
    unless given."""

    def rows(metric: str, values: Sequence[float], loss: Sequence[float] | None = None) -> list[dict]:
        loss = loss if loss is not None else [1.0 / (e + 1) for e in range(len(values))]
        return [{"epoch": e + 1, "train_loss": loss[e], "lr": 1e-3, metric: v} for e, v in enumerate(values)]

    return rows


@pytest.fixture
def assert_not_blank():
    """``assert_not_blank(path)``: the PNG loads and has many colours; returns it as an RGB array."""

    def check(path: Path) -> np.ndarray:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10
        return pixels

    return check
