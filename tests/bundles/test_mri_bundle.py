"""The MRI (hippocampus-like, 3 classes) bundle through ``monai.bundle``: train, infer, evaluate,
multi-channel inputs and the channel-count check."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage
import torch
from monai.bundle import ConfigParser

from app.data.demo import make_mri_demo
from app.engine.checkpoint import safe_load
from app.paths import REPO_ROOT

TRAIN = ["bundles/mri/train.json"]
SMALL = {"val_interval": 1, "sw_batch_size": 8}
FIRST_CONV = "input_block.conv1.conv.weight"
# output channels of the first convolution: the bundle's first network width
WIDTH = ConfigParser.load_config_file(str(REPO_ROOT / "bundles/mri/train.json"))["network_def"]["filters"][0]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread per bundle process: far faster than oversubscribed threads on a shared CPU."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def trained(run_bundle, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mri_run")
    proc = run_bundle("training", TRAIN, run_dir=run_dir, epochs=2, **SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


@pytest.fixture(scope="module")
def two_channel_data(tmp_path_factory):
    return make_mri_demo(tmp_path_factory.mktemp("mri2") / "data", n_cases=4, n_channels=2)


def test_training_reports_per_class_dice_and_writes_the_run_folder(trained):
    run_dir, proc = trained
    log = proc.stdout + proc.stderr
    assert "epoch 2/2" in log
    for metric in ("val_mean_dice", "val_dice_anterior", "val_dice_posterior", "val_hd95"):
        assert metric in log, metric
    files = ("model.pt", "model_final.pt", "checkpoint.pt", "datalist.json", "config.json", "command.json")
    for name in files:
        assert (run_dir / name).is_file(), name
    assert safe_load(run_dir / "checkpoint.pt")["trainer"]["epoch"] == 2
    split = json.loads((run_dir / "datalist.json").read_text())
    assert len(split["training"]) == 16 and len(split["validation"]) == 4
    model = safe_load(run_dir / "model.pt")
    assert tuple(model[FIRST_CONV].shape[:2]) == (WIDTH, 1)  # in_channels followed the one-channel datalist


def test_inference_writes_three_class_labels_on_the_input_grid(infer_demo_case, trained, tmp_path):
    labels = infer_demo_case("mri", trained[0], tmp_path, largest_component=True)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2}
    for structure in (1, 2):  # --largest_component true: one piece per structure at most (26-connected)
        assert scipy.ndimage.label(labels == structure, structure=np.ones((3, 3, 3)))[1] <= 1


def test_evaluate_writes_per_case_per_class_csv_and_summary(run_bundle, trained):
    run_dir, _ = trained
    command = (run_dir / "command.json").read_text()
    proc = run_bundle("evaluating", TRAIN + ["bundles/mri/evaluate.json"], run_dir=run_dir, **SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "eval" / "summary.json").read_text())
    metrics = {"val_mean_dice", "val_dice_anterior", "val_dice_posterior", "val_hd95"}
    assert metrics <= summary["metrics"].keys()
    assert summary["classes"] == {"0": "background", "1": "anterior", "2": "posterior"}
    for metric in ("val_mean_dice", "val_hd95"):
        with open(run_dir / "eval" / f"{metric}_raw.csv") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["filename", "class0", "class1", "mean"]  # class0 = label 1, class1 = label 2
        assert len(rows) == 1 + 4 and all("mri_" in r[0] for r in rows[1:])
    # Evaluation reads the run's saved split: the training record is left as it was.
    assert (run_dir / "command.json").read_text() == command


@pytest.mark.parametrize(
    ("files", "overrides", "axes"),
    [
        (TRAIN, {}, ()),  # validation during training: one plain pass
        (TRAIN + ["bundles/mri/evaluate.json"], {}, (0,)),
        (TRAIN + ["bundles/mri/inference.json"], {}, (0,)),
        (TRAIN + ["bundles/mri/evaluate.json"], {"flip_axes": [0, 2]}, (0, 2)),
        (TRAIN + ["bundles/mri/inference.json"], {"tta": False}, ()),
    ],
)
def test_test_time_mirroring_follows_the_training_flips(parse_bundle, files, overrides, axes):
    assert parse_bundle(files, "validate#inferer", **overrides).spatial_axes == axes
    flips = parse_bundle(files, "train#augmentation", **overrides)[2].transforms
    assert [f.flipper.spatial_axis for f in flips] == list(overrides.get("flip_axes", [0]))


def test_two_channel_data_sets_in_channels_and_trains(run_bundle, two_channel_data, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_bundle("training", TRAIN, run_dir=run_dir, dataset_dir=two_channel_data, epochs=1, **SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tuple(safe_load(run_dir / "model.pt")[FIRST_CONV].shape[:2]) == (WIDTH, 2)
    # Inference groups the case_0000/case_0001 files of a folder into two-channel cases.
    proc = run_bundle(
        "inference",
        TRAIN + ["bundles/mri/inference.json"],
        run_dir=run_dir,
        input_dir=two_channel_data / "imagesTr",
        output_dir=tmp_path / "out",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"mri_{i:03d}_0000_seg.nii.gz" for i in range(4)]


def test_channel_mismatch_stops_before_training_with_a_clear_error(run_bundle, two_channel_data, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_bundle(
        "training", TRAIN, run_dir=run_dir, dataset_dir=two_channel_data, in_channels=1, epochs=1, **SMALL
    )
    assert proc.returncode != 0
    assert "has 2 channels but the network expects 1 (in_channels)" in proc.stderr
    assert "mri_000_0000.nii.gz" in proc.stderr
    assert "Traceback" not in proc.stderr.splitlines()[-1]
    assert not (run_dir / "checkpoint.pt").exists()
    assert not (run_dir / "model.pt").exists()


def test_mri_exports_to_torchscript_and_onnx_with_the_same_predictions(trained, tmp_path):
    import onnxruntime as ort
    import torch

    run_dir, _ = trained
    ts, onnx_path = tmp_path / "model.ts", tmp_path / "model.onnx"
    export = [
        sys.executable,
        "-m",
        "monai.bundle",
        "ckpt_export",
        "network_def",
        "--filepath",
        str(ts),
        "--ckpt_file",
        str(run_dir / "model.pt"),
        "--meta_file",
        "bundles/mri/metadata.json",
        "--config_file",
        TRAIN[0],
        "--in_channels",
        "1",
        "--use_trace",
        "True",
        "--input_shape",
        "[1, 1, 40, 56, 40]",
    ]
    onnx_cmd = [
        sys.executable,
        "-m",
        "app",
        "export-onnx",
        "--config_file",
        str(REPO_ROOT / TRAIN[0]),
        "--ckpt",
        str(run_dir / "model.pt"),
        "--out",
        str(onnx_path),
    ]
    record = {name: (run_dir / name).read_text() for name in ("command.json", "config.json", "datalist.json")}
    # export-onnx runs elsewhere: it must start no run (the default run_dir, runs/mri, stays unmade there)
    for cmd, cwd in ((export, REPO_ROOT), (onnx_cmd, tmp_path)):
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    # export-onnx needs no --in_channels (the run's split has them) and leaves the run's record alone
    assert {name: (run_dir / name).read_text() for name in record} == record
    assert not (tmp_path / "runs").exists()
    x = torch.rand(1, 1, 40, 56, 40)
    scripted = torch.jit.load(str(ts))
    with torch.no_grad():
        reference = scripted(x).numpy()
    got = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.numpy()}
    )[0]
    np.testing.assert_allclose(got, reference, atol=1e-4, rtol=1e-4)


def test_bf16_training_wraps_only_the_trainers_network(run_bundle, parse_bundle, tmp_path):
    from app.engine.precision import AutocastNetwork

    trainer = parse_bundle(TRAIN, "train#trainer", precision="bf16", run_dir=str(tmp_path / "parsed"))
    assert isinstance(trainer.network, AutocastNetwork) and trainer.network.autocast_training
    run_dir = tmp_path / "run"
    proc = run_bundle("training", TRAIN, run_dir=run_dir, epochs=1, precision="bf16", **SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights = safe_load(run_dir / "model.pt")
    assert FIRST_CONV in weights and weights[FIRST_CONV].dtype == torch.float32  # no wrapper prefix


def test_split_seed_keeps_the_split_when_the_training_seed_changes(parse_bundle, tmp_path):
    base = parse_bundle(TRAIN, "datalist", run_dir=str(tmp_path / "a"))
    other_seed = parse_bundle(TRAIN, "datalist", seed=1, split_seed=0, run_dir=str(tmp_path / "b"))
    assert other_seed["validation"] == base["validation"]
    assert (
        parse_bundle(TRAIN, "datalist", seed=1, run_dir=str(tmp_path / "c"))["validation"]
        != base["validation"]
    )


def test_evaluating_an_ensemble_of_identical_members_scores_as_one_model(run_bundle, trained, tmp_path):
    run_dir, _ = trained
    files = TRAIN + ["bundles/mri/evaluate.json"]
    scores = []
    for ensemble in ([], [str(run_dir)]):
        eval_dir = tmp_path / f"eval{len(ensemble)}"
        proc = run_bundle(
            "evaluating", files, run_dir=run_dir, eval_dir=eval_dir, ensemble_runs=ensemble, **SMALL
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        scores.append(json.loads((eval_dir / "summary.json").read_text())["metrics"])
    assert "ensemble of 2 networks" in proc.stdout + proc.stderr
    assert scores[1]["val_mean_dice"] == pytest.approx(scores[0]["val_mean_dice"], abs=1e-6)


def _islands_case() -> dict:
    """Logits for a 3-class 12x12x12 volume: an anterior block, a posterior block beside it and a
    one-voxel anterior island in a far corner; the label is the two blocks alone."""
    label = torch.zeros(1, 12, 12, 12)
    label[0, 2:6, 2:8, 2:8] = 1
    label[0, 6:10, 2:8, 2:8] = 2
    predicted = label.clone()
    predicted[0, 11, 11, 11] = 1
    logits = 10.0 * torch.nn.functional.one_hot(predicted[0].long(), 3).permute(3, 0, 1, 2).float()
    return {"pred": logits, "label": label}


@pytest.mark.parametrize(("largest_component", "island"), [(False, 1.0), (True, 0.0)])
def test_evaluation_can_keep_the_largest_component_of_each_class(parse_bundle, largest_component, island):
    post = parse_bundle(
        TRAIN + ["bundles/mri/evaluate.json"], "validate#postprocessing", largest_component=largest_component
    )
    out = post(_islands_case())
    assert out["pred"].shape == (3, 12, 12, 12)
    assert out["pred"][1, 11, 11, 11].item() == island  # the stray anterior voxel
    assert out["pred"][1].sum().item() == 4 * 6 * 6 + island  # the anterior block is kept whole
    assert out["pred"][2].sum().item() == 4 * 6 * 6
    assert (
        out["label"][1].sum().item() == out["label"][2].sum().item() == 4 * 6 * 6
    )  # label one-hot, untouched


def test_validation_during_training_keeps_every_component(parse_bundle):
    assert parse_bundle(TRAIN, "keep_largest_component") == []
