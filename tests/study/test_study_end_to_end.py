"""Every study end to end at the tiny preset: ``python -m app study <name> --preset tiny`` trains its
runs through ``monai.bundle`` on demo data (two arms, one seed, 2 epochs of 2 iterations) and writes
the report with both figures. About 40 s per study on two busy cores."""

from __future__ import annotations

import pytest

from app.cli import main
from app.engine.history import read_history
from app.study.aggregate import RECORD_NAME
from app.study.config import available_studies, load_study, plan_study


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """One demo folder for all studies of the session: each bundle generates its set on first use."""
    return tmp_path_factory.mktemp("demo")


@pytest.mark.slow
@pytest.mark.parametrize("name", available_studies())
def test_study_runs_end_to_end_at_the_tiny_preset(name, demo_dir, tmp_path, monkeypatch, assert_not_blank):
    monkeypatch.setenv("APP_DEMO_DIR", str(demo_dir))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runs_dir, out = tmp_path / "runs", tmp_path / "docs"
    argv = ["study", name, "--preset", "tiny", "--runs-dir", str(runs_dir), "--out", str(out)]
    assert main(argv) == 0

    plan = plan_study(load_study(name), "tiny", runs_dir)
    for run in plan.runs:
        assert [row["epoch"] for row in read_history(run.run_dir / "history.csv")] == [1, 2]
    text = (out / f"{name}.md").read_text()
    assert f"`{name}`, preset `tiny`: 2 of 2 runs (2 arms x 1 seed)" in text
    assert "## Verdict" in text and "## Final metrics" in text
    for arm in plan.arms:
        assert f"| {arm} | 1 |" in text
    for figure in (f"{name}_curves.png", f"{name}_final.png"):
        assert_not_blank(out / figure)

    # resumable: a second call finds every run finished, starts none and rewrites the report
    records = [(run.run_dir / RECORD_NAME).stat().st_mtime_ns for run in plan.runs]
    (out / f"{name}.md").unlink()
    assert main(argv) == 0
    assert [(run.run_dir / RECORD_NAME).stat().st_mtime_ns for run in plan.runs] == records
    assert (out / f"{name}.md").is_file()
