"""Run folders: the merged config record, seeding, and the one-line input-error exit."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from app.engine.run import bundle_cli_options, merged_bundle_config, place_network, start_run


def test_merged_config_applies_overrides_of_a_monai_bundle_command_line():
    argv = [
        "monai/bundle/__main__.py",
        "run",
        "training",
        "--config_file",
        "['bundles/ct/train.json','bundles/ct/evaluate.json']",
        "--epochs",
        "3",
        "--run_dir",
        "/tmp/x",
        "--patch_size",
        "[32,32,32]",
    ]
    config = merged_bundle_config(argv)
    assert config["epochs"] == 3 and config["run_dir"] == "/tmp/x" and config["patch_size"] == [32, 32, 32]
    assert "evaluating" in config and "network_def" in config  # both files merged
    assert merged_bundle_config(["pytest"]) is None


def test_bundle_cli_options_reads_both_option_forms_and_skips_positional_words():
    argv = ["bundle/__main__.py", "run", "training", "--config_file", "a.json", "--epochs=3", "--res_block",
            "--patch_size", "[32, 32]", "--tta"]
    assert bundle_cli_options(argv) == {
        "config_file": "a.json", "epochs": "3", "res_block": "", "patch_size": "[32, 32]", "tta": ""
    }
    assert bundle_cli_options(["pytest", "-q"]) == {}


def test_start_run_seeds_and_records(tmp_path):
    start_run(tmp_path / "run", seed=7)
    a = torch.rand(3)
    start_run(tmp_path / "run", seed=7)
    assert torch.equal(a, torch.rand(3))
    record = json.loads((tmp_path / "run" / "command.json").read_text())
    assert record["seed"] == 7 and "argv" in record


def test_uncaught_input_error_is_one_line_per_problem(tmp_path):
    code = (
        "import app.engine\n"
        "from app.errors import InputError, InputErrors\n"
        "try:\n"
        "    raise InputErrors([InputError('/d/a.nii.gz', 'broken'), InputError('/d/b.nii.gz', 'empty')])\n"
        "except InputErrors as e:\n"
        "    raise RuntimeError('Failed to evaluate ConfigExpression') from e\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    # the last lines: with the deploy extra installed, importing holoscan may print a stack notice first
    assert proc.stderr.splitlines()[-3:] == [
        "ERROR /d/a.nii.gz: broken",
        "ERROR /d/b.nii.gz: empty",
        "stopped: 2 input problem(s) found before anything was written",
    ]


def test_other_uncaught_errors_end_with_their_root_cause(tmp_path):
    code = (
        "import app.engine\n"
        "try:\n"
        "    raise ValueError('stack expects each tensor to be equal size')\n"
        "except ValueError as e:\n"
        "    raise RuntimeError('Failed to evaluate ConfigExpression') from e\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr  # the traceback is kept for a real bug
    assert proc.stderr.splitlines()[-1] == "ERROR ValueError: stack expects each tensor to be equal size"


def test_place_network_in_channels_last_keeps_outputs_and_checkpoints():
    torch.manual_seed(0)
    net3d = torch.nn.Sequential(
        torch.nn.Conv3d(2, 4, 3), torch.nn.BatchNorm3d(4), torch.nn.Conv3d(4, 2, 1)
    ).eval()
    reference = {k: v.clone() for k, v in net3d.state_dict().items()}
    x = torch.rand(2, 2, 6, 7, 5)
    expected = net3d(x)
    placed = place_network(net3d, "cpu", channels_last=True)
    assert placed is net3d and net3d[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not net3d[0].weight.is_contiguous()
    torch.testing.assert_close(placed(x), expected, atol=1e-5, rtol=1e-5)
    fresh = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3), torch.nn.BatchNorm3d(4), torch.nn.Conv3d(4, 2, 1))
    fresh.load_state_dict(placed.state_dict())  # a channels-last checkpoint loads into the default layout
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in reference.items())

    net2d = place_network(torch.nn.Conv2d(2, 2, 3), "cpu", channels_last=True)
    assert net2d.weight.is_contiguous(memory_format=torch.channels_last)
    assert place_network(torch.nn.Conv2d(2, 2, 3), "cpu").weight.is_contiguous()
