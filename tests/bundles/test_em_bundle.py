"""The EM bundle through ``monai.bundle``: train one short epoch on demo data, infer, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import itk
import numpy as np
import pytest
import torch
from PIL import Image

from app.data.demo import make_em_demo

# A narrow, shallow U-Net and small tiles keep the run to seconds on CPU; the bundle logic is the same.
SMALL = {"features": 4, "depth": 2, "tile_size": 124, "epochs": 1, "val_interval": 1, "samples_per_image": 1}


def test_em_train_infer_evaluate(run_bundle, tmp_path):
    run_dir = tmp_path / "run"
    # not the default folder: evaluation must take the run's split, not make one from the default data
    dataset_dir = make_em_demo(tmp_path / "em", n_train=6, n_test=2, size=256)
    proc = run_bundle(
        "training", ["bundles/em/train.json"], run_dir=run_dir, dataset_dir=dataset_dir, **SMALL
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "val_mean_dice" in proc.stdout + proc.stderr
    for name in ("model.pt", "model_final.pt", "checkpoint.pt", "datalist.json", "config.json"):
        assert (run_dir / name).is_file(), name
    for name in ("history.csv", "curves.png", "overlays.png"):  # the run's figures, without extra flags
        assert (run_dir / name).is_file(), name
    datalist = json.loads((run_dir / "datalist.json").read_text())
    assert datalist["training"] and datalist["validation"]
    assert json.loads((run_dir / "config.json").read_text())["tile_size"] == 124

    test_dir = dataset_dir / "test"
    # no network options: inference and evaluation build the network the run recorded (4 features, depth 2)
    proc = run_bundle(
        "inference",
        ["bundles/em/train.json", "bundles/em/inference.json"],
        run_dir=run_dir,
        input_dir=test_dir,
        tile_size=124,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"network as trained, from {run_dir / 'config.json'}" in proc.stdout + proc.stderr
    for image in sorted(test_dir.glob("*.png")):
        mask = np.array(Image.open(run_dir / "predictions" / f"{image.stem}_mask.png"))
        prob = np.array(Image.open(run_dir / "predictions" / f"{image.stem}_prob.tif"))
        assert mask.shape == prob.shape == np.array(Image.open(image)).shape
        assert set(np.unique(mask)) <= {0, 255}
        assert 0.0 <= prob.min() and prob.max() <= 1.0
        cells = np.asarray(itk.imread(str(run_dir / "predictions" / f"{image.stem}_cells.tif")))
        assert cells.shape == mask.shape and cells.dtype == np.int32
        if (mask == 255).any():  # a partition into the mask's cells, numbered from 1
            assert cells.min() >= 1 and len(np.unique(cells[mask == 255])) == cells.max()
            # on the mask's grid: two cell pixels side by side always belong to the same cell
            for axis in (0, 1):
                differ = np.diff(cells.astype(np.int64), axis=axis) != 0
                both_cell = (np.diff((mask == 255).astype(np.int8), axis=axis) == 0) & (
                    np.take(mask, range(mask.shape[axis] - 1), axis=axis) == 255
                )
                assert not (differ & both_cell).any()

    def evaluate(**options):
        """The evaluation command on this run, without network options; its process, checked for success."""
        files = ["bundles/em/train.json", "bundles/em/evaluate.json"]
        proc = run_bundle("evaluating", files, run_dir=run_dir, tile_size=124, **options)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    def scored(eval_dir: Path) -> list[str]:
        """The image names of an evaluation's per-image ``metrics.csv``, sorted."""
        return sorted(line.split(",")[0] for line in (eval_dir / "metrics.csv").read_text().splitlines()[1:])

    evaluate()
    assert json.loads((run_dir / "datalist.json").read_text()) == datalist  # the training record is untouched
    summary = json.loads((run_dir / "eval" / "summary.json").read_text())
    assert summary["num_images"] == len(datalist["validation"])
    assert scored(run_dir / "eval") == sorted(Path(item["image"]).name for item in datalist["validation"])
    assert all(str(dataset_dir) in item["image"] for item in datalist["validation"])
    assert 0.0 <= summary["metrics"]["pixel_error"]["mean"] <= 1.0
    # the challenge's pixel error (1 - best cell F-score over thresholds) is at most 1 - Dice at t = 0.5
    dice = summary["metrics"]["dice"]["mean"]
    assert 0.0 <= summary["metrics"]["isbi_pixel_error"]["mean"] <= 1.0 - dice + 1e-6
    assert summary["stack"]["threshold"] in [i / 10 for i in range(11)]

    # an ensemble of the run with itself averages equal probabilities: the same scores as the run alone
    proc = evaluate(ensemble_runs=f"['{run_dir}']", eval_dir=tmp_path / "eval_ensemble")
    assert "ensemble of 2 networks" in proc.stdout + proc.stderr
    ensemble = json.loads((tmp_path / "eval_ensemble" / "summary.json").read_text())["metrics"]
    for name in ("pixel_error", "dice"):
        assert ensemble[name]["mean"] == pytest.approx(summary["metrics"][name]["mean"], abs=1e-6)

    # a held-out labelled set: every slice scored, in its own folder, the split's scores left alone
    held_out = make_em_demo(tmp_path / "held_out", n_train=3, n_test=1, size=256, seed=5)
    split_scores = (run_dir / "eval" / "metrics.csv").read_text()
    evaluate(eval_dataset_dir=held_out)
    assert scored(run_dir / "eval_held_out") == ["0.png", "1.png", "2.png"]
    assert (run_dir / "eval" / "metrics.csv").read_text() == split_scores
    assert json.loads((run_dir / "datalist.json").read_text()) == datalist


def test_em_missing_dataset_dir_is_a_clear_error(run_bundle, tmp_path):
    proc = run_bundle(
        "training",
        ["bundles/em/train.json"],
        run_dir=tmp_path / "r",
        dataset_dir=tmp_path / "does_not_exist",
        **SMALL,
    )
    assert proc.returncode != 0
    assert f"{tmp_path / 'does_not_exist'}: dataset_dir does not exist" in proc.stderr
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_precision_and_channels_last_reach_the_trainers_network(parse_bundle, tmp_path):
    from app.engine.precision import AutocastNetwork

    trainer, evaluator = parse_bundle(
        ["bundles/em/train.json"],
        ["train#trainer", "validate#evaluator"],
        precision="bf16",
        run_dir=str(tmp_path / "run"),
        **SMALL,
    )
    assert isinstance(trainer.network, AutocastNetwork) and trainer.network.autocast_training
    network = trainer.network.network
    assert evaluator.network is network  # validation and checkpoints use the float32 network
    conv = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_flips_rotations_and_tta_follow_the_choices_given_as_words(parse_bundle, tmp_path):
    from monai.transforms import RandFlipd, RandRotate90d

    common = {"run_dir": str(tmp_path / "run"), **SMALL}
    # default: the 8 symmetries of the square (images are shifted onto their labels' grid first)
    augmentation, inferer = parse_bundle(
        ["bundles/em/train.json"], ["train#augmentation", "validate#inferer"], **common
    )
    flips = [t.flipper.spatial_axis for t in augmentation[0].transforms if isinstance(t, RandFlipd)]
    rotate = next(t for t in augmentation if isinstance(t, RandRotate90d))
    assert flips == [0, 1] and rotate.prob == 0.5
    assert inferer.tta is False and inferer.tta_flip_axes is None
    # as typed on the command line: the strings 'false' / 'true' are read as booleans
    augmentation, inferer = parse_bundle(
        ["bundles/em/train.json"],
        ["train#augmentation", "validate#inferer"],
        rotate90="false",
        tta="true",
        flip_axes=[0],
        **common,
    )
    flips = [t.flipper.spatial_axis for t in augmentation[0].transforms if isinstance(t, RandFlipd)]
    assert flips == [0] and next(t for t in augmentation if isinstance(t, RandRotate90d)).prob == 0.0
    assert inferer.tta is True and inferer.tta_flip_axes == (0,)  # TTA mirrors what training mirrored
    assert parse_bundle(["bundles/em/train.json"], "validate#inferer", tta="false", **common).tta is False
    # evaluation and inference average the symmetries by default (validation during training does not)
    for delta in ("evaluate", "inference"):
        configs = ["bundles/em/train.json", f"bundles/em/{delta}.json"]
        assert parse_bundle(configs, "validate#inferer", **common).tta is True
    with pytest.raises(Exception) as info:
        parse_bundle(["bundles/em/train.json"], "train#augmentation", rotate90="ture", **common)
    assert "rotate90 must be true or false, got 'ture'" in _causes(info.value)


def _causes(error: BaseException) -> list[str]:
    """The messages of ``error`` and of its chain of causes (the bundle parser wraps the original)."""
    causes = [error]
    while causes[-1].__cause__ is not None:
        causes.append(causes[-1].__cause__)
    return [str(c) for c in causes]


def _shifts(transforms) -> list[list[float]]:
    """The translations of the ``Affined`` transforms in a list or ``Compose``."""
    from monai.transforms import Affined

    return [
        [float(v) for v in t.affine.affine_grid.translate_params]
        for t in getattr(transforms, "transforms", transforms)
        if isinstance(t, Affined)
    ]


def test_the_image_shift_training_records_is_the_one_evaluation_and_inference_apply(parse_bundle, tmp_path):
    from app.data.alignment import SHIFT_FILE

    run_dir = tmp_path / "run"
    dataset_dir = make_em_demo(tmp_path / "em", n_train=4, n_test=1, size=128)
    common = {"run_dir": str(run_dir), "dataset_dir": str(dataset_dir), **SMALL}
    # the demo labels are aligned with their images: "auto" measures no shift and adds no transform
    assert _shifts(parse_bundle(["bundles/em/train.json"], "train#preprocessing", **common)) == []
    assert json.loads((run_dir / SHIFT_FILE).read_text())["image_shift"] == [0.0, 0.0]
    # a given shift translates the images of training and validation, and is recorded for the run
    train, val = parse_bundle(
        ["bundles/em/train.json"],
        ["train#preprocessing", "validate#preprocessing"],
        image_shift=[0.25, -0.5],
        **common,
    )
    assert _shifts(train) == _shifts(val) == [[0.25, -0.5]]
    # evaluation and inference read the run's record, not this command's image_shift
    evaluate = parse_bundle(
        ["bundles/em/train.json", "bundles/em/evaluate.json"], "validate#preprocessing", **common
    )
    infer = parse_bundle(
        ["bundles/em/train.json", "bundles/em/inference.json"],
        "infer#preprocessing",
        input_dir=str(dataset_dir / "test"),
        **common,
    )
    assert _shifts(evaluate) == _shifts(infer) == [[0.25, -0.5]]
    with pytest.raises(Exception) as info:
        parse_bundle(["bundles/em/train.json"], "train#preprocessing", image_shift="sideways", **common)
    assert "image_shift must be 'auto' or 2 numbers (pixels per axis), got 'sideways'" in _causes(info.value)
