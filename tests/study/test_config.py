"""Study files: loading and checks, the merge order of overrides, the run commands, and every arm's
config resolving to a network, loss and schedule (the arms a tiny study does not run included)."""

from __future__ import annotations

import json

import pytest
import torch
from monai.bundle import ConfigParser

from app.errors import InputError
from app.paths import REPO_ROOT, shared_data_dir
from app.study.config import PRESETS, available_studies, load_study, plan_study

STUDIES = available_studies()


def test_the_six_experiments_are_study_files():
    assert STUDIES == [
        "augmentation",
        "deep_supervision_dropout",
        "losses_em",
        "losses_mri",
        "optimizers",
        "tile_size",
        "weight_maps",
    ]


def test_unknown_study_lists_the_available_ones():
    with pytest.raises(
        InputError, match="unknown study 'nope'; available: augmentation, deep_supervision_dropout"
    ):
        load_study("nope")


def test_plan_layers_overrides_and_lays_out_run_folders(tmp_path):
    plan = plan_study(load_study("tile_size"), "gpu", tmp_path)
    assert plan.arms == ("1_tile", "4_tiles", "16_tiles")
    assert [(r.arm, r.seed) for r in plan.runs[:2]] == [("1_tile", 0), ("1_tile", 1)]
    assert len(plan.runs) == 3 * 5
    run = plan.runs[0]
    assert run.run_dir == tmp_path / "tile_size" / "gpu" / "1_tile" / "seed0"
    # study < arm < preset < preset's arm_overrides
    assert run.overrides == {
        "dataset_dir": str(shared_data_dir() / "isbi2012"),
        "validate#inferer#roi_size": [700, 700],
        "tile_size": 572,
        "samples_per_image": 1,
        "preset": "unet2015",
        "epochs": 100,
        "val_interval": 5,
    }


@pytest.mark.parametrize(("preset", "channels"), [("cpu", [16, 32, 64, 128]), ("tiny", [4, 8, 16, 32])])
def test_a_presets_overlay_comes_before_the_arms_and_its_keys_after(preset, channels, tmp_path):
    """losses_mri's CPU presets train MONAI's UNet (one overlay) under the loss overlay of each arm."""
    plan = plan_study(load_study("losses_mri"), preset, tmp_path)
    run = next(r for r in plan.runs if r.arm == "bce")
    assert run.config_files == (
        "bundles/mri/train.json",
        "configs/studies/overlays/mri_unet_16_128.json",
        "configs/losses/bce.json",
    )
    network = _parser(run).get_parsed_content("network")
    assert type(network).__name__ == "UNet" and list(network.channels) == channels
    gpu = next(r for r in plan_study(load_study("losses_mri"), "gpu", tmp_path).runs if r.arm == "bce")
    assert gpu.config_files == ("bundles/mri/train.json", "configs/losses/bce.json")  # the bundle's network


def test_command_is_the_users_bundle_command(tmp_path):
    plan = plan_study(load_study("optimizers"), "tiny", tmp_path)
    cmd = plan.runs[0].command(python="python")
    files = "['bundles/em/train.json', 'configs/studies/overlays/constant_lr.json']"
    assert cmd[:7] == ["python", "-m", "monai.bundle", "run", "training", "--config_file", files]
    args = dict(zip(cmd[7::2], cmd[8::2], strict=True))
    assert args["--run_dir"] == str(tmp_path / "optimizers" / "tiny" / "sgd_0.99" / "seed0")
    assert args["--seed"] == "0"
    assert "--dataset_dir" not in args  # tiny: the bundle's demo data
    # Python literals, which Fire (monai.bundle's command line) reads back to the same values
    assert (args["--validate#inferer#roi_size"], args["--optimizer_name"], args["--momentum"]) == (
        "[700, 700]",
        "sgd",
        "0.99",
    )
    single = plan_study(load_study("weight_maps"), "tiny", tmp_path).runs[0].command()
    assert single[5:7] == ["--config_file", "bundles/em/train.json"]


def _write(tmp_path, **changes) -> str:
    study = json.loads((REPO_ROOT / "configs" / "studies" / "weight_maps.json").read_text())
    for key, value in changes.items():
        study[key] = value
    (tmp_path / "bad.json").write_text(json.dumps(study))
    return "bad"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"arms": {"only": {}}}, "at least two arms"),
        ({"metrics": {"val_iou": "up"}}, "direction must be one of"),
        ({"overrides": {"seed": 3}}, "are set by the study runner"),
        ({"colour": "red"}, "unknown key(s) ['colour']"),
        ({"verdict": [{"rule": "guess"}]}, "verdict rule 'guess' unknown"),
        (
            {"verdict": [{"rule": "best", "metric": "val_vi"}]},
            "metric 'val_vi' is not in the study's metrics",
        ),
        (
            {
                "verdict": [
                    {"rule": "better", "metric": "val_iou", "arm": "x", "than": "plain_ce", "claim": "c"}
                ]
            },
            "arm 'x' is not an arm",
        ),
        ({"presets": {"cpu": {"seeds": [0]}, "gpu": {"seeds": [0]}}}, "missing preset(s) ['tiny']"),
        (
            {"presets": {p: {"seeds": [0], "overrides": {"w0": 1.0}} for p in PRESETS}},
            "which the arms vary (plain_ce, weight_map set 'w0')",
        ),
        ({"presets": {p: {"seeds": [0], "arms": ["plain_ce"]} for p in PRESETS}}, "must name at least two"),
        ({"bundle": "bundles/em/missing.json"}, "'bundles/em/missing.json' not found"),
        (
            {"presets": {p: {"seeds": [0], "config_files": ["configs/nope.json"]} for p in PRESETS}},
            "'configs/nope.json' not found",
        ),
    ],
)
def test_invalid_study_files_are_named_with_the_problem(tmp_path, changes, message):
    with pytest.raises(InputError) as e:
        load_study(_write(tmp_path, **changes), tmp_path)
    assert str(tmp_path / "bad.json") in str(e.value)
    assert message in str(e.value)


def test_unknown_preset_lists_the_valid_ones(tmp_path):
    with pytest.raises(InputError, match="no preset 'fast'; valid: cpu, gpu, tiny"):
        plan_study(load_study("weight_maps"), "fast", tmp_path)


def _parser(run) -> ConfigParser:
    """A run's merged config the way ``monai.bundle run`` builds it (on the CPU, without data)."""
    parser = ConfigParser()
    parser.read_meta(REPO_ROOT / run.config_files[0].replace("train.json", "metadata.json"))
    parser.read_config([str(REPO_ROOT / f) for f in run.config_files])
    for name, value in run.overrides.items():
        parser[name] = value
    parser["device"] = "cpu"
    parser["in_channels"] = 1  # the MRI bundle counts them from the datalist, which would need the data
    return parser


@pytest.mark.parametrize("name", STUDIES)
def test_every_arm_builds_its_network_loss_and_schedule(name, tmp_path):
    """The tiny preset runs two arms per study; this resolves every arm of the CPU preset (the GPU preset
    changes only sizes and budgets) so that a broken overlay or key fails here, in seconds."""
    plan = plan_study(load_study(name), "cpu", tmp_path)
    for run in (r for r in plan.runs if r.seed == plan.preset.seeds[0]):
        parser = _parser(run)
        network = parser.get_parsed_content("network")
        loss = parser.get_parsed_content("train#trainer#loss_function")
        scheduler = parser.get_parsed_content("lr_scheduler")
        assert isinstance(network, torch.nn.Module), run.arm
        assert callable(loss), run.arm
        assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler), run.arm
        if "deep_supervision" in run.arm or run.arm == "ds_dropout":
            assert type(loss).__name__ == "DeepSupervisionLoss"
            assert network.deep_supervision
        if run.arm == "adam_cosine":
            assert type(scheduler).__name__ == "CosineAnnealingLR"
            assert type(scheduler.optimizer).__name__ == "Adam"
        if run.arm == "adam_plateau":
            assert type(scheduler).__name__ == "ReduceLROnPlateau" and scheduler.patience == 3
        if run.arm == "sgd_0.99":
            assert scheduler.optimizer.param_groups[0]["momentum"] == 0.99
    assert not any(tmp_path.iterdir())  # resolving these items starts no run
