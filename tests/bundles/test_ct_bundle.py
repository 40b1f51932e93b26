"""The CT bundle through ``monai.bundle``: train, resume after a kill, infer, evaluate, export."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from app.engine.checkpoint import safe_load
from app.paths import REPO_ROOT

# Small patches and one sample per volume keep each epoch to seconds on CPU; the pipeline is the default one.
SMALL = {"patch_size": "[32,32,32]", "batch_size": 1, "num_samples": 1, "val_interval": 1, "sw_batch_size": 8}
TRAIN = ["bundles/ct/train.json"]


@pytest.fixture(scope="module")
def trained(run_bundle, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ct_run")
    proc = run_bundle("training", TRAIN, run_dir=run_dir, epochs=2, **SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, proc


def test_training_writes_the_run_folder(trained):
    run_dir, proc = trained
    log = proc.stdout + proc.stderr
    assert "epoch 2/2" in log and "val_mean_dice" in log and "ETA" in log
    for name in (
        "model.pt",
        "model_final.pt",
        "checkpoint.pt",
        "datalist.json",
        "config.json",
        "command.json",
    ):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").iterdir())
    state = safe_load(run_dir / "checkpoint.pt")
    assert state["trainer"]["epoch"] == 2
    assert {"network", "optimizer", "lr_scheduler", "rng"} <= state.keys()
    split = json.loads((run_dir / "datalist.json").read_text())
    assert len(split["training"]) == 8 and len(split["validation"]) == 2 and split["split"]["seed"] == 0


def test_second_run_of_the_same_command_resumes(run_bundle, trained):
    run_dir, _ = trained
    proc = run_bundle("training", TRAIN, run_dir=run_dir, epochs=3, **SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "resumed from" in log and "at epoch 2/3" in log
    assert "epoch 3/3" in log and "epoch 1/3" not in log
    state = safe_load(run_dir / "checkpoint.pt")
    assert state["trainer"]["epoch"] == 3
    # AdamW counts its steps: 8 iterations per epoch over 3 epochs only if the optimiser state was restored.
    steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {24.0}


def test_inference_writes_labels_on_the_input_grid(infer_demo_case, trained, tmp_path):
    labels = infer_demo_case("ct", trained[0], tmp_path, **SMALL)
    assert set(np.unique(labels).tolist()) <= {0, 1}


def test_evaluate_writes_per_case_csv_and_summary(run_bundle, trained):
    run_dir, _ = trained
    # with the post-processing of inference (one connected spleen), as a user would compare it
    proc = run_bundle(
        "evaluating", TRAIN + ["bundles/ct/evaluate.json"], run_dir=run_dir, largest_component=True, **SMALL
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "eval" / "summary.json").read_text())
    assert {"val_mean_dice", "val_hd95", "val_surface_dice"} <= summary["metrics"].keys()
    assert summary["classes"] == {"0": "background", "1": "spleen"}
    raw = (run_dir / "eval" / "val_mean_dice_raw.csv").read_text().splitlines()
    assert len(raw) == 1 + 2  # header + the two validation cases
    assert "ct_" in raw[1]


def test_an_ensemble_of_identical_members_evaluates_and_infers_as_one_model(
    run_bundle, infer_demo_case, trained, tmp_path
):
    run_dir, _ = trained
    scores = []
    for ensemble in ([], [str(run_dir)]):
        eval_dir = tmp_path / f"eval{len(ensemble)}"
        proc = run_bundle(
            "evaluating",
            TRAIN + ["bundles/ct/evaluate.json"],
            run_dir=run_dir,
            eval_dir=eval_dir,
            ensemble_runs=ensemble,
            **SMALL,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        scores.append(json.loads((eval_dir / "summary.json").read_text())["metrics"])
    assert "ensemble of 2 networks" in proc.stdout + proc.stderr
    assert scores[1]["val_mean_dice"] == pytest.approx(scores[0]["val_mean_dice"], abs=1e-6)
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    single = infer_demo_case("ct", run_dir, tmp_path / "one", **SMALL)
    both = infer_demo_case("ct", run_dir, tmp_path / "two", ensemble_runs=[str(run_dir)], **SMALL)
    assert np.mean(single != both) < 1e-4  # float rounding of the mean may flip a voxel at 50/50
    missing = tmp_path / "no_such_run"
    proc = run_bundle(
        "inference",
        TRAIN + ["bundles/ct/inference.json"],
        run_dir=run_dir,
        output_dir=tmp_path / "none",
        ensemble_runs=[str(missing)],
        **SMALL,
    )
    assert (
        proc.returncode != 0 and f"{missing / 'model.pt'}: ensemble member has no weights file" in proc.stderr
    )
    assert not (tmp_path / "none").exists()


def test_evaluate_takes_the_runs_saved_split_whatever_dataset_dir_says(parse_bundle, trained, tmp_path):
    run_dir, _ = trained
    saved = (run_dir / "datalist.json").read_text()
    files = TRAIN + ["bundles/ct/evaluate.json"]
    datalist = parse_bundle(files, "datalist", run_dir=str(run_dir), dataset_dir=str(tmp_path / "elsewhere"))
    assert datalist == json.loads(saved)
    assert (run_dir / "datalist.json").read_text() == saved


def test_ckpt_export_to_torchscript(trained, tmp_path):
    run_dir, _ = trained
    ts = tmp_path / "model.ts"
    cmd = [
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
        "bundles/ct/metadata.json",
        "--config_file",
        TRAIN[0],
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    extra = {"metadata.json": "", "inference.json": ""}
    scripted = torch.jit.load(str(ts), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["name"].startswith("CT spleen")
    from monai.networks.nets import UNet

    net = UNet(3, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2, norm="batch")
    net.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    net.eval()
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-4)


def test_undeclared_label_values_stop_training_before_it_starts(run_bundle, demo_root, tmp_path):
    data = tmp_path / "bad"
    (data / "imagesTr").mkdir(parents=True)
    (data / "labelsTr").mkdir()
    for case in sorted((demo_root / "ct" / "imagesTr").iterdir())[:3]:
        (data / "imagesTr" / case.name).write_bytes(case.read_bytes())
        label = nib.load(demo_root / "ct" / "labelsTr" / case.name)
        values = np.asanyarray(label.dataobj).copy()
        values[values == 1] = 2
        nib.save(nib.Nifti1Image(values, label.affine), data / "labelsTr" / case.name)
    proc = run_bundle("training", TRAIN, run_dir=tmp_path / "run", dataset_dir=data, epochs=1, **SMALL)
    assert proc.returncode != 0
    assert proc.stderr.count("label has values [0, 2] but the bundle declares [0, 1]") == 3
    assert "Traceback" not in proc.stderr.splitlines()[-1]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_inference_on_real_msd_spleen_keeps_shape_and_affine(run_bundle, trained, shared_data, tmp_path):
    """A real MSD case (512 x 512 x 32, 0.79 x 0.79 x 7.5 mm): the label lands on exactly its grid."""
    run_dir, _ = trained
    source = shared_data / "spleen_ct" / "imagesTr" / "spleen_8.nii.gz"
    proc = run_bundle(
        "inference",
        TRAIN + ["bundles/ct/inference.json"],
        run_dir=run_dir,
        input_dir=source,
        output_dir=tmp_path,
        **{**SMALL, "patch_size": "[96,96,96]"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref, out = nib.load(source), nib.load(tmp_path / "spleen_8_seg.nii.gz")
    assert out.shape == ref.shape == (512, 512, 32)
    np.testing.assert_array_equal(out.affine, ref.affine)


def test_onnx_export_gives_the_checkpoint_predictions(trained, tmp_path):
    import onnx
    import onnxruntime as ort

    run_dir, _ = trained
    out = tmp_path / "model.onnx"
    cmd = [
        sys.executable,
        "-m",
        "app",
        "export-onnx",
        "--config_file",
        TRAIN[0],
        "--ckpt",
        str(run_dir / "model.pt"),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["metadata.json"])["network_data_format"]["outputs"]["pred"]["num_channels"] == 2
    from monai.networks.nets import UNet

    net = UNet(3, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2, norm="batch")
    net.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    net.eval()
    x = torch.rand(2, 1, 32, 48, 64)  # batch and spatial axes are dynamic
    onnx_out = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.numpy()}
    )[0]
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out, net(x).numpy(), atol=1e-4, rtol=1e-4)


def test_inference_on_a_real_dicom_series_folder(run_bundle, trained, shared_data, tmp_path):
    """A DICOM series folder (20 JPEG 2000 slices) as input: the label is on the series' own grid."""
    import SimpleITK as sitk

    run_dir, _ = trained
    series = shared_data / "ct_dicom_series" / "series"
    proc = run_bundle(
        "inference",
        TRAIN + ["bundles/ct/inference.json"],
        run_dir=run_dir,
        input_dir=series,
        output_dir=tmp_path,
        **{**SMALL, "patch_size": "[96,96,96]"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = nib.load(tmp_path / "series_seg.nii.gz")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series)))
    image = reader.Execute()
    assert out.shape == image.GetSize() == (512, 512, 20)
    lps = np.eye(4)
    lps[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    np.testing.assert_allclose(out.affine, np.diag([-1, -1, 1, 1]) @ lps, atol=1e-4)
