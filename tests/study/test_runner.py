"""The study runner with stand-in commands (a few lines of Python instead of a bundle training):
records, resuming, failures and wall time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from app.errors import InputError
from app.study.aggregate import RECORD_NAME, read_record
from app.study.config import StudyRun, load_study, plan_study
from app.study.runner import LOG_NAME, StudyRunError, is_finished, run_study

# Stand-in for a training: counts its starts in <run_dir>/starts, writes a two-epoch history and exits
# with $FAKE_EXIT (default 0) for the weight_map arm.
TRAINING = """
import os
import sys
from pathlib import Path
run_dir = Path(sys.argv[1])
with open(run_dir / "starts", "a") as f:
    f.write("x")
(run_dir / "history.csv").write_text("epoch,train_loss,lr,val_iou\\n1,0.9,0.001,0.5\\n2,0.7,0.001,0.6\\n")
print("trained", run_dir.name)
sys.exit(int(os.environ.get("FAKE_EXIT", "0")) if sys.argv[2] == "weight_map" else 0)
"""


@pytest.fixture
def plan(tmp_path, monkeypatch):
    """The tiny weight-map plan (plain_ce, then weight_map) whose commands run ``TRAINING``."""

    def command(self: StudyRun, python: str = sys.executable) -> list[str]:
        return [python, "-c", TRAINING, str(self.run_dir), self.arm]

    monkeypatch.setattr(StudyRun, "command", command)
    return plan_study(load_study("weight_maps"), "tiny", tmp_path)


def _starts(run: StudyRun) -> int:
    path = Path(run.run_dir, "starts")
    return len(path.read_text()) if path.is_file() else 0


def test_runs_record_their_command_and_are_not_repeated(plan):
    run_study(plan)
    for run in plan.runs:
        record = read_record(run.run_dir)
        assert record["returncode"] == 0
        assert record["command"] == run.command()
        assert (record["arm"], record["seed"]) == (run.arm, run.seed)
        assert record["wall_s"] >= 0
        assert set(record["hardware"]) == {"cpu", "cores", "threads", "gpu", "torch"}
        assert "trained seed0" in (run.run_dir / LOG_NAME).read_text()
        assert is_finished(run)
    run_study(plan)
    assert [_starts(run) for run in plan.runs] == [1, 1]


def test_a_failed_run_stops_the_study_and_is_run_again(plan, monkeypatch):
    monkeypatch.setenv("FAKE_EXIT", "3")
    with pytest.raises(StudyRunError) as e:
        run_study(plan)
    failed = plan.runs[1]
    assert "run weight_map seed 0 failed with exit status 3" in str(e.value)
    assert str(failed.run_dir / LOG_NAME) in str(e.value)
    assert "trained seed0" in str(e.value)  # the log's tail
    assert read_record(failed.run_dir)["returncode"] == 3
    assert not is_finished(failed)
    first_wall = read_record(failed.run_dir)["wall_s"]

    monkeypatch.setenv("FAKE_EXIT", "0")
    run_study(plan)  # the first run is finished and skipped, the failed one starts again
    assert [_starts(run) for run in plan.runs] == [1, 2]
    assert read_record(failed.run_dir)["wall_s"] >= first_wall  # wall time adds up over attempts


def test_a_changed_command_or_a_lost_history_runs_again(plan):
    run_study(plan)
    first = plan.runs[0]
    (first.run_dir / "history.csv").unlink()
    assert not is_finished(first)
    record = json.loads((plan.runs[1].run_dir / RECORD_NAME).read_text())
    record["command"][-1] = "1"
    (plan.runs[1].run_dir / RECORD_NAME).write_text(json.dumps(record))
    assert not is_finished(plan.runs[1])
    run_study(plan)
    # the same command resumes in its folder; a changed one starts afresh, its old folder set aside
    assert [_starts(run) for run in plan.runs] == [2, 1]
    (aside,) = plan.runs[1].run_dir.parent.glob("seed0.replaced-*")
    assert (aside / "starts").read_text() == "x" and read_record(aside)["command"][-1] == "1"
    assert is_finished(plan.runs[1])


def test_an_interrupted_run_is_recorded_with_its_command(plan, monkeypatch):
    monkeypatch.setattr("app.study.runner.subprocess.run", _interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_study(plan)
    record = read_record(plan.runs[0].run_dir)
    assert record["command"] == plan.runs[0].command() and record["returncode"] is None
    assert not is_finished(plan.runs[0])


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_a_missing_dataset_stops_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_SHARED_DATA", str(tmp_path / "nowhere"))
    plan = plan_study(load_study("weight_maps"), "cpu", tmp_path)
    with pytest.raises(InputError, match="isbi2012: dataset_dir does not exist"):
        run_study(plan)
    assert not (tmp_path / "weight_maps").exists()
