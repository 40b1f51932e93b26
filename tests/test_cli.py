"""``python -m app``: subcommands, help, exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from app.cli import main
from app.engine.history import write_history
from app.engine.overlays import CaseView, OverlayCase, save_cases


def test_help_of_every_subcommand(capsys):
    for argv in (
        ["--help"],
        ["data", "--help"],
        ["data", "demo", "--help"],
        ["data", "check", "--help"],
        ["data", "datalist", "--help"],
        ["data", "fetch", "--help"],
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    assert "hippocampus" in capsys.readouterr().out


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as e:
        main(["data", "demo", "--task", "xray", "--out", "x"])
    assert e.value.code == 2


def test_demo_then_check_then_datalist(tmp_path):
    out = tmp_path / "demo_mri"
    assert main(["data", "demo", "--task", "mri", "--out", str(out)]) == 0
    assert main(["data", "check", str(out)]) == 0
    assert main(["data", "datalist", str(out), "--out", str(tmp_path / "dl.json"), "--folds", "4"]) == 0
    assert main(["data", "check", "--datalist", str(tmp_path / "dl.json"), "--labels", "0,1,2"]) == 0


def test_check_names_every_bad_file(tmp_path, caplog):
    """The Foundation acceptance case, through the CLI in a subprocess: exit 1, all three files named."""
    out = tmp_path / "ct"
    assert main(["data", "demo", "--task", "ct", "--out", str(out)]) == 0
    images = sorted((out / "imagesTr").iterdir())
    labels = sorted((out / "labelsTr").iterdir())
    images[0].write_bytes(b"\x1f\x8b\x08 corrupted")
    moved = nib.load(str(labels[1]))
    affine = moved.affine.copy()
    affine[:3, 3] += 7.0
    nib.save(nib.Nifti1Image(np.asanyarray(moved.dataobj), affine), str(labels[1]))
    nan_img = nib.load(str(images[2]))
    data = np.asanyarray(nan_img.dataobj).astype(np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, nan_img.affine), str(images[2]))
    proc = subprocess.run(
        [sys.executable, "-m", "app", "data", "check", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    for path in (images[0], labels[1], images[2]):
        assert str(path) in proc.stderr, proc.stderr
    assert "3 problem(s) found" in proc.stderr


def test_missing_folder_exits_1(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 1


def _training_run(run_dir):
    """A run folder as a training leaves it: command.json, history.csv and overlays.npz."""
    run_dir.mkdir()
    record = {"argv": ["train.py", "--epochs", "3"], "cwd": "/work", "seed": 7, "torch": "2.13"}
    (run_dir / "command.json").write_text(json.dumps(record))
    rows = [
        {"epoch": 1, "train_loss": 0.9, "lr": 0.01},
        {"epoch": 2, "train_loss": 0.6, "lr": 0.005, "val_mean_dice": 0.7, "val_hd95": 4.0},
        {"epoch": 3, "train_loss": 0.5, "lr": 0.0025, "val_mean_dice": 0.6, "val_hd95": 5.0},
    ]
    write_history(rows, run_dir / "history.csv")
    label = np.zeros((8, 8), np.uint8)
    label[2:6, 2:6] = 1
    view = CaseView("2D", np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), label, label)
    save_cases(
        [OverlayCase("best", "a.png", 1.0, [view]), OverlayCase("worst", "b.png", 0.0, [view])],
        run_dir / "overlays.npz",
    )


def test_report_rebuilds_the_figures_and_writes_the_summary(tmp_path):
    run_dir = tmp_path / "run"
    _training_run(run_dir)
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "curves.png").stat().st_size > 0 and (run_dir / "overlays.png").stat().st_size > 0
    report = (run_dir / "report.md").read_text()
    assert "`train.py --epochs 3` (in `/work`, seed 7)" in report
    assert "| epoch | train_loss | lr | val_mean_dice | val_hd95 |" in report
    assert "| last epoch | 3 | 0.5 | 0.0025 | 0.6 | 5 |" in report
    assert "| best validation (highest val_mean_dice) | 2 | 0.6 | 0.005 | 0.7 | 4 |" in report
    assert "| 1 | 0.9 | 0.01 |  |  |" in report  # epoch 1 did not validate
    assert "![training curves](curves.png)" in report and "(overlays.png)" in report


def test_report_of_a_bad_run_dir_is_one_line_naming_it(tmp_path, caplog):
    for bad in (tmp_path / "nowhere", tmp_path):
        caplog.clear()
        assert main(["report", str(bad)]) == 1
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and errors[0].startswith(f"{bad}: "), errors
    assert not (tmp_path / "report.md").exists()
