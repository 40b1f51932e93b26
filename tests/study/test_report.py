"""Aggregation over seeds, the report and its figures, and ``python -m app study`` on hand-made runs."""

from __future__ import annotations

import numpy as np
import pytest

from app.cli import main
from app.study.aggregate import RunResult, arm_curve, collect_results, summarize
from app.study.config import load_study, plan_study
from app.study.report import write_study_report

EM_METRICS = ("val_iou", "val_dice", "val_pixel_error", "val_rand_error")


def _em_rows(iou: list[float], loss_scale: float = 1.0) -> list[dict[str, float]]:
    """EM history rows validating every second epoch, with the other metrics derived from the IoU."""
    rows = []
    for e, value in enumerate(iou, 1):
        row = {"epoch": e, "train_loss": loss_scale / e, "lr": 1e-3}
        if e % 2 == 0:
            row.update(
                val_iou=value,
                val_dice=2 * value / (1 + value),
                val_pixel_error=1 - value,
                val_rand_error=0.5 - value / 2,
            )
        rows.append(row)
    return rows


def test_arm_curve_is_mean_and_range_per_epoch_over_the_seeds_that_have_it():
    runs = [
        RunResult("a", 0, [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}]),
        RunResult("a", 1, [{"epoch": 1, "train_loss": 3.0}]),
    ]
    band = arm_curve(runs, "train_loss")
    np.testing.assert_array_equal(band.epochs, [1, 2])
    np.testing.assert_allclose(band.mean, [2.0, 0.5])
    np.testing.assert_allclose(band.lo, [1.0, 0.5])
    np.testing.assert_allclose(band.hi, [3.0, 0.5])


def test_final_and_best_skip_epochs_without_a_finite_value():
    rows = [
        {"epoch": 1, "train_loss": 1.0, "val_hd95": 9.0},
        {"epoch": 2, "train_loss": 0.5, "val_hd95": 4.0},
        {"epoch": 3, "train_loss": 0.4, "val_hd95": float("nan")},
        {"epoch": 4, "train_loss": 0.3},
    ]
    run = RunResult("a", 0, rows)
    assert run.final("val_hd95") == 4.0
    assert (run.best("val_hd95", "min"), run.best("val_hd95", "max")) == (4.0, 9.0)
    assert np.isnan(run.final("val_iou"))
    assert np.isnan(run.wall_s)


def test_summary_drops_non_finite_values():
    s = summarize([0.8, float("nan"), 0.9])
    assert (s.n, s.lo, s.hi) == (2, 0.8, 0.9)
    assert s.mean == pytest.approx(0.85)
    assert s.std == pytest.approx(0.0707107)
    assert s.text() == "0.85 ± 0.071"
    assert summarize([0.5]).text() == "0.5"
    assert summarize([]).text() == "n/a"


@pytest.fixture
def weight_map_runs(tmp_path, write_runs):
    """The weight_maps study at the cpu preset (2 arms x 3 seeds) with hand-made EM histories: weight maps
    within seed spread of plain CE on IoU and clearly better on Rand error."""
    plan = plan_study(load_study("weight_maps"), "cpu", tmp_path / "runs")
    plain = [[0.5, 0.7, 0.8, 0.81 + 0.01 * s] for s in range(3)]
    wmap = [[0.5, 0.7, 0.8, 0.815 + 0.01 * s] for s in range(3)]
    write_runs(
        plan,
        {"plain_ce": [_em_rows(i * 2) for i in plain], "weight_map": [_em_rows(i * 2, 3.0) for i in wmap]},
    )
    return plan


def test_report_has_verdict_table_figures_and_provenance(weight_map_runs, tmp_path, assert_not_blank):
    results = collect_results(weight_map_runs)
    assert len(results.runs) == 6 and not results.missing
    path = write_study_report(results, tmp_path / "docs", command="python -m app study weight_maps")
    text = path.read_text()
    assert path == tmp_path / "docs" / "weight_maps.md"
    assert text.startswith("# Study: U-Net weight maps on/off on ISBI 2012\n")
    assert (
        "Claim \u201cweight maps give no clear IoU gain\u201d: the claim held (difference within seed spread)"
        in text
    )
    assert "the final val_iou was 0.825 ± 0.01 for weight_map vs 0.82 ± 0.01 for plain_ce" in text
    # the table: final values of each arm (last validation, epoch 8 of 8)
    assert (
        "| arm | seeds | val_iou | val_dice | val_pixel_error | val_rand_error | final train loss |" in text
    )
    row = "| plain_ce | 3 | 0.82 ± 0.01 | 0.901 ± 0.006 | 0.18 ± 0.01 | 0.09 ± 0.005 | 0.125 ± 0 | 8 |"
    assert row + " 1.0 min | 3.0 min |" in text
    arm = "- **weight_map**: U-Net weight map: class balance + border term;"
    assert arm + " keys `w0=10.0`, `class_balance=True`" in text
    assert (
        "Every arm: `bundles/em/train.json`; `validate#inferer#roi_size=[700, 700]`, `tile_size=380`" in text
    )
    assert "- Command (from the repository root): `python -m app study weight_maps`" in text
    assert "- Total wall time of the runs: 6.0 min" in text
    for figure in ("weight_maps_curves.png", "weight_maps_final.png"):
        assert f"]({figure})" in text
        assert_not_blank(tmp_path / "docs" / figure)
    # train loss + 4 metrics: two rows of three 4 x 3 inch panels at 100 dpi
    assert assert_not_blank(tmp_path / "docs" / "weight_maps_curves.png").shape == (640, 1200, 3)


def test_report_names_missing_runs(weight_map_runs, tmp_path):
    for run in weight_map_runs.runs[-2:]:
        (run.run_dir / "history.csv").unlink()
    results = collect_results(weight_map_runs)
    text = write_study_report(results, tmp_path / "docs", command="c").read_text()
    assert "4 of 6 runs" in text
    assert "- **Missing runs** (no history yet): weight_map seed 1, weight_map seed 2" in text
    assert "| weight_map | 1 | 0.815 |" in text


def test_cli_report_only_and_errors(weight_map_runs, tmp_path, caplog):
    out = tmp_path / "docs"
    runs_dir = str(tmp_path / "runs")
    assert main(["study", "weight_maps", "--report-only", "--runs-dir", runs_dir, "--out", str(out)]) == 0
    command = f"python -m app study weight_maps --preset cpu --runs-dir {runs_dir} --out {out} --report-only"
    assert f"`{command}`" in (out / "weight_maps.md").read_text()

    caplog.clear()
    assert main(["study", "nope"]) == 1
    assert "unknown study 'nope'; available: augmentation, deep_supervision_dropout, losses_em" in caplog.text
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1

    caplog.clear()
    assert main(["study", "tile_size", "--report-only", "--runs-dir", runs_dir]) == 1
    assert "no run has a history yet" in caplog.text

    with pytest.raises(SystemExit) as e:
        main(["study", "weight_maps", "--preset", "huge"])
    assert e.value.code == 2
