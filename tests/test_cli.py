"""``python -m app``: subcommands, help, exit codes 0/1/2."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from app.cli import main


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
